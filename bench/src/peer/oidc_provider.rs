//! `--peer oidc-provider`: panva's `oidc-provider`, installed from npm into
//! `bench/peer/oidc-provider` (committed `package.json` and lock file) and started by its
//! `server.mjs` on loopback. The script mints one refresh token per connection through
//! the provider's authorization-code flow and prints its endpoints and credentials.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Deserialize;

use super::{Context, Endpoints, Peer, PeerProcess, RefreshClient, Startup};

const NOTE: &str = "oidc-provider keeps tokens in its in-memory adapter (lost on restart, not shared \
between processes); Latchkey writes every refresh rotation durably to its database in one transaction";

/// What `server.mjs` prints once it is ready.
#[derive(Debug, Clone, Deserialize)]
struct PeerInfo {
    base: String,
    ready_ms: f64,
    client_id: String,
    client_secret: String,
    refresh_client_id: String,
    refresh_client_secret: String,
    refresh_tokens: Vec<String>,
}

fn peer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peer").join("oidc-provider")
}

/// Installs the pinned packages (`npm ci`) unless they are there already.
fn install(dir: &Path) -> anyhow::Result<()> {
    if dir.join("node_modules").join("oidc-provider").join("package.json").exists() {
        return Ok(());
    }
    println!("installing oidc-provider with npm ci in {}…", dir.display());
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .context("running npm (is Node.js installed?)")?;
    if !status.success() {
        bail!("npm ci failed in {}", dir.display());
    }
    Ok(())
}

fn node_version() -> String {
    Command::new("node")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Starts the peer with one refresh token per connection ready to rotate.
pub async fn start(ctx: &Context<'_>) -> anyhow::Result<Peer> {
    let dir = peer_dir();
    install(&dir)?;
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        dir.join("node_modules").join("oidc-provider").join("package.json"),
    )?)?;
    let version = manifest["version"].as_str().unwrap_or("?").to_string();
    let log = ctx.dir.join("oidc-provider.log");
    let mut command = Command::new("node");
    command
        .arg("server.mjs")
        .arg(ctx.concurrency.to_string())
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?);
    let mut process = PeerProcess::with_log("oidc-provider", command, &log)?;
    let stdout = process.stdout().context("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with('{') {
                let _ = tx.send(line);
            }
        }
    });
    let line = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(120)))
        .await?
        .with_context(|| format!("oidc-provider did not start; the end of its log:\n{}", process.log_tail()))?;
    let info: PeerInfo = serde_json::from_str(&line).context("reading the peer's start-up line")?;
    Ok(Peer {
        version: format!("oidc-provider {version} on Node.js {}", node_version()),
        note: NOTE,
        endpoints: Endpoints {
            token_url: format!("{}/token", info.base),
            jwks_url: format!("{}/jwks", info.base),
            service: (info.client_id, info.client_secret),
            refresh_client: RefreshClient::Confidential {
                id: info.refresh_client_id,
                secret: info.refresh_client_secret,
            },
            // The grant holds `openid`; narrowing the refresh to the other scopes (RFC 6749
            // §6) keeps oidc-provider from signing an id_token beside the access token, so
            // both servers sign once per refresh.
            refresh_scope: Some("offline_access api".into()),
        },
        refresh_tokens: info.refresh_tokens,
        // In memory: every start is a fresh one.
        startup: Startup { fresh: Some(Duration::from_secs_f64(info.ready_ms / 1000.0)), existing: None },
        process,
        database: None,
    })
}

//! The side-by-side peer: panva's `oidc-provider`, installed from npm into
//! `bench/peer/oidc-provider` (committed `package.json` and lock file) and started by its
//! `server.mjs` on loopback. The script mints one refresh token per connection through
//! the provider's authorization-code flow and prints its endpoints and credentials.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

/// What `server.mjs` prints once it is ready.
#[derive(Debug, Clone, Deserialize)]
pub struct PeerInfo {
    pub base: String,
    pub client_id: String,
    pub client_secret: String,
    pub refresh_client_id: String,
    pub refresh_client_secret: String,
    pub refresh_tokens: Vec<String>,
}

pub struct PeerProcess {
    pub child: Child,
    pub info: PeerInfo,
    pub version: String,
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn peer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peer").join("oidc-provider")
}

/// Installs the pinned packages (`npm ci`) unless they are there already.
fn install(dir: &std::path::Path) -> anyhow::Result<()> {
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

/// Starts the peer with `refresh_tokens` sessions ready to rotate.
pub async fn start(refresh_tokens: usize) -> anyhow::Result<PeerProcess> {
    let dir = peer_dir();
    install(&dir)?;
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        dir.join("node_modules").join("oidc-provider").join("package.json"),
    )?)?;
    let version = manifest["version"].as_str().unwrap_or("?").to_string();
    let mut child = Command::new("node")
        .arg("server.mjs")
        .arg(refresh_tokens.to_string())
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting node")?;
    let stdout = child.stdout.take().context("no stdout")?;
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
        .context("oidc-provider did not start (run `node server.mjs 1` in bench/peer/oidc-provider to see why)")?;
    let info: PeerInfo = serde_json::from_str(&line).context("reading the peer's start-up line")?;
    Ok(PeerProcess { child, info, version })
}

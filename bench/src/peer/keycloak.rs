//! `--peer keycloak`: Keycloak's Quarkus distribution, fetched from Maven Central and built
//! once for PostgreSQL by `bench/peer/keycloak/prepare.sh` (cached under ~/.cache), run with
//! `start --optimized` on the Temurin JDK, HTTP on loopback, a database of its own on the
//! run's PostgreSQL, and the committed realm `bench/peer/keycloak/realm.json` imported on
//! the first start: a confidential client with a service account (client_credentials), a
//! public client with direct access grants and one user, whose password grants mint the
//! refresh tokens; the realm revokes a refresh token on use (rotation, as Latchkey does).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::{
    Context, Endpoints, Peer, PeerKind, PeerProcess, RefreshClient, Startup, free_port, prepare, setup_client,
};
use crate::postgres::Database;

const REALM: &str = "bench";
const SERVICE: (&str, &str) = ("bench-svc", "bench-svc-secret-for-the-side-by-side-run");
const PUBLIC_CLIENT: &str = "bench-web";
const USER: (&str, &str) = ("bench-user", "bench password 123");
/// The first start migrates an empty schema and imports the realm on a JVM that is still cold.
const READY_LIMIT: Duration = Duration::from_secs(300);

const NOTE: &str = "Keycloak keeps user sessions in its PostgreSQL database (persistent sessions, written \
through an in-process cache; local cache, no cluster); its refresh tokens are HS512-signed JWTs, so a refresh \
signs one RS256 access token and one HMAC refresh token; 16 database connections, as Latchkey";

/// What `prepare.sh` prints: the Keycloak home and the JDK to run it on.
struct Installation {
    home: PathBuf,
    java_home: PathBuf,
}

fn install() -> anyhow::Result<Installation> {
    let out = prepare("keycloak/prepare.sh")?;
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|l| l.strip_prefix('=')))
            .map(PathBuf::from)
            .with_context(|| format!("prepare.sh printed no {name}"))
    };
    Ok(Installation { home: field("KEYCLOAK_HOME")?, java_home: field("JAVA_HOME")? })
}

fn java_version(java_home: &std::path::Path) -> String {
    let Ok(out) = Command::new(java_home.join("bin").join("java")).arg("-version").output() else {
        return "?".into();
    };
    // `openjdk version "25.0.1" 2025-10-21 LTS` on stderr; the runtime's name is on the next line.
    let text = String::from_utf8_lossy(&out.stderr);
    let version = text.lines().next().and_then(|l| l.split('"').nth(1)).unwrap_or("?");
    let vendor = if text.contains("Temurin") { "Temurin" } else { "OpenJDK" };
    format!("{vendor} {version}")
}

struct Instance {
    process: PeerProcess,
    base: String,
}

/// Starts Keycloak on `database` and waits for the realm's discovery document.
async fn launch(
    ctx: &Context<'_>,
    install: &Installation,
    database: &Database,
    import: bool,
) -> anyhow::Result<(Instance, Duration)> {
    let (http_port, management_port) = (free_port()?, free_port()?);
    let mut command = Command::new(install.home.join("bin").join("kc.sh"));
    command.args(["start", "--optimized"]);
    if import {
        command.arg("--import-realm");
    }
    command
        .env("JAVA_HOME", &install.java_home)
        .env("KC_DB_URL", format!("jdbc:postgresql://{}:{}/{}", database.host(), database.port(), database.name))
        .env("KC_DB_USERNAME", database.user())
        .env("KC_DB_PASSWORD", database.password())
        .env("KC_DB_POOL_MAX_SIZE", "16")
        .env("KC_HTTP_ENABLED", "true")
        .env("KC_HTTP_HOST", "127.0.0.1")
        .env("KC_HTTP_PORT", http_port.to_string())
        .env("KC_HTTP_MANAGEMENT_PORT", management_port.to_string())
        .env("KC_HOSTNAME_STRICT", "false")
        .env("KC_CACHE", "local")
        .env("KC_LOG_LEVEL", "warn");
    let started = Instant::now();
    let mut process = PeerProcess::spawn("keycloak", command, &ctx.dir.join("keycloak.log"))?;
    let base = format!("http://127.0.0.1:{http_port}");
    let http = setup_client()?;
    process.wait_ready(&http, &format!("{base}/realms/{REALM}/.well-known/openid-configuration"), READY_LIMIT).await?;
    let ready = started.elapsed();
    process.follow_child()?;
    Ok((Instance { process, base }, ready))
}

/// A password grant of the public client: one user session, one refresh token.
async fn mint_refresh_token(http: &reqwest::Client, token_url: &str) -> anyhow::Result<String> {
    // No `openid` scope: no id_token is signed, here or on refresh.
    let resp = http
        .post(token_url)
        .form(&[("grant_type", "password"), ("client_id", PUBLIC_CLIENT), ("username", USER.0), ("password", USER.1)])
        .send()
        .await?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await?;
    match body["refresh_token"].as_str() {
        Some(token) if status.is_success() => Ok(token.to_string()),
        _ => bail!("Keycloak's password grant answered {status}: {body}"),
    }
}

pub async fn start(ctx: &Context<'_>) -> anyhow::Result<Peer> {
    let postgres = ctx.postgres(PeerKind::Keycloak)?;
    let install = install()?;
    let import_dir = install.home.join("data").join("import");
    std::fs::create_dir_all(&import_dir)?;
    std::fs::copy(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peer").join("keycloak").join("realm.json"),
        import_dir.join("bench-realm.json"),
    )?;
    let database = postgres.create_database("keycloak_bench").await?;
    println!("  first start: schema migration and realm import…");
    let (first, fresh) = launch(ctx, &install, &database, true).await?;
    drop(first);
    println!("  second start, on the prepared database…");
    let (instance, existing) = launch(ctx, &install, &database, false).await?;
    let token_url = format!("{}/realms/{REALM}/protocol/openid-connect/token", instance.base);
    let http = setup_client()?;
    let mut refresh_tokens = Vec::with_capacity(ctx.concurrency);
    for _ in 0..ctx.concurrency {
        refresh_tokens.push(mint_refresh_token(&http, &token_url).await?);
    }
    let version = std::fs::read_to_string(install.home.join("version.txt"))
        .ok()
        .and_then(|v| v.split_whitespace().last().map(str::to_string))
        .unwrap_or_else(|| "26".into());
    Ok(Peer {
        version: format!("Keycloak {version} on {}", java_version(&install.java_home)),
        note: NOTE,
        endpoints: Endpoints {
            jwks_url: format!("{}/realms/{REALM}/protocol/openid-connect/certs", instance.base),
            token_url,
            service: (SERVICE.0.into(), SERVICE.1.into()),
            refresh_client: RefreshClient::Public { id: PUBLIC_CLIENT.into() },
            refresh_scope: None,
        },
        refresh_tokens,
        startup: Startup { fresh: Some(fresh), existing: Some(existing) },
        process: instance.process,
        database: Some(database),
    })
}

//! The side-by-side peers of `--peer`, one module each. A peer module starts its server on
//! loopback (on the run's PostgreSQL where it has a database), measures its start-up, sets
//! up a confidential client for client_credentials and one refresh token per connection,
//! and hands back a [`Peer`]: the endpoints the shared scenarios call, and the process
//! whose CPU and memory are read. What a peer does differently from Latchkey is its `note`.

pub mod hydra;
pub mod keycloak;
pub mod oidc_provider;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::ValueEnum;

use crate::postgres::{Database, Postgres};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PeerKind {
    /// panva's oidc-provider (Node.js), from bench/peer/oidc-provider.
    OidcProvider,
    /// Keycloak (Quarkus distribution from Maven Central) on PostgreSQL, bench/peer/keycloak.
    Keycloak,
    /// Ory Hydra v2.3.0 (built with Go from bench/peer/hydra) on PostgreSQL.
    Hydra,
}

impl PeerKind {
    pub fn name(self) -> &'static str {
        match self {
            PeerKind::OidcProvider => "oidc-provider",
            PeerKind::Keycloak => "keycloak",
            PeerKind::Hydra => "hydra",
        }
    }

    /// Whether the peer keeps its state in PostgreSQL (then Latchkey runs on it too).
    pub fn uses_postgres(self) -> bool {
        matches!(self, PeerKind::Keycloak | PeerKind::Hydra)
    }
}

/// How the peer's refresh grant authenticates its client.
#[derive(Debug, Clone)]
pub enum RefreshClient {
    /// `client_secret_basic`.
    Confidential { id: String, secret: String },
    /// A public client: `client_id` in the form.
    Public { id: String },
}

/// What the shared scenarios call on a peer.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub token_url: String,
    pub jwks_url: String,
    /// The confidential client of client_credentials (`client_secret_basic`).
    pub service: (String, String),
    pub refresh_client: RefreshClient,
    /// `scope` sent with each refresh, where the grant holds more than the access token needs.
    pub refresh_scope: Option<String>,
}

/// Spawn-to-ready times.
#[derive(Debug, Clone, Copy, Default)]
pub struct Startup {
    /// On an empty database: migrations (and, for Keycloak, the realm import) included.
    pub fresh: Option<Duration>,
    /// Restarted on the database the first start prepared.
    pub existing: Option<Duration>,
}

/// A running peer; stopping it (drop) kills the process and drops its database.
pub struct Peer {
    /// Name and version of the peer and of its runtime, e.g. "Keycloak 26.7.3 on Temurin 25".
    pub version: String,
    pub note: &'static str,
    pub endpoints: Endpoints,
    pub refresh_tokens: Vec<String>,
    pub startup: Startup,
    pub process: PeerProcess,
    pub database: Option<Database>,
}

impl Peer {
    /// The process whose CPU and memory are the peer's.
    pub fn pid(&self) -> u32 {
        self.process.pid
    }

    pub async fn stop(mut self, postgres: Option<&Postgres>) -> anyhow::Result<()> {
        self.process.kill();
        if let (Some(pg), Some(db)) = (postgres, self.database.take()) {
            pg.drop_database(&db).await?;
        }
        Ok(())
    }
}

/// What the peer modules need from the run.
pub struct Context<'a> {
    pub concurrency: usize,
    pub postgres: Option<&'a Postgres>,
    /// Where the peers keep their configuration and logs for this run.
    pub dir: &'a Path,
}

impl Context<'_> {
    fn postgres(&self, kind: PeerKind) -> anyhow::Result<&Postgres> {
        self.postgres.with_context(|| format!("{} needs the run's PostgreSQL server", kind.name()))
    }
}

pub async fn start(kind: PeerKind, ctx: &Context<'_>) -> anyhow::Result<Peer> {
    let started = match kind {
        PeerKind::OidcProvider => oidc_provider::start(ctx).await,
        PeerKind::Keycloak => keycloak::start(ctx).await,
        PeerKind::Hydra => hydra::start(ctx).await,
    };
    started.with_context(|| format!("the {} peer could not be started", kind.name()))
}

/// A child process, in a process group of its own, with its output in a log file; the
/// whole group is killed on drop (a launcher script's children go with it).
pub struct PeerProcess {
    child: Child,
    /// The server itself: the child, or the process a launcher script started.
    pid: u32,
    log: PathBuf,
    name: &'static str,
}

impl PeerProcess {
    /// Spawns `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &'static str, mut command: Command, log: &Path) -> anyhow::Result<Self> {
        let out = File::options().create(true).append(true).open(log)?;
        command.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        Self::with_log(name, command, log)
    }

    /// Spawns `command` as configured (its stdout may be a pipe); `log` is where its output goes.
    pub fn with_log(name: &'static str, mut command: Command, log: &Path) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt;
        let child = command.process_group(0).spawn().with_context(|| format!("starting {name}"))?;
        let pid = child.id();
        Ok(Self { child, pid, log: log.to_path_buf(), name })
    }

    pub fn stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// Measures the launcher's only child from now on (`kc.sh` runs java as a child).
    pub fn follow_child(&mut self) -> anyhow::Result<()> {
        let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.child.id()))?;
        let mut pids = children.split_whitespace().filter_map(|p| p.parse::<u32>().ok());
        match (pids.next(), pids.next()) {
            (Some(pid), None) => {
                self.pid = pid;
                Ok(())
            }
            (None, _) => Ok(()), // the launcher exec'd the server itself
            _ => bail!("{} started more than one process: {children}", self.name),
        }
    }

    /// Fails with the end of the log if the process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}); the end of its log:\n{}", self.name, self.log_tail());
        }
        Ok(())
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Polls `url` until it answers 200, the process exits, or `limit` passes.
    pub async fn wait_ready(&mut self, http: &reqwest::Client, url: &str, limit: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if http.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            self.check_alive()?;
            if started.elapsed() > limit {
                bail!("{} was not ready at {url} after {limit:?}; the end of its log:\n{}", self.name, self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn kill(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // The group is the child's own (process_group(0)): its id is the child's.
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free loopback port (bound, then released for the peer to bind).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs a preparation script under `bench/peer/` (a build or a download, cached); its
/// progress goes to our stderr, and its stdout is returned.
pub fn prepare(script: &str) -> anyhow::Result<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peer").join(script);
    let out = Command::new("bash")
        .arg(&path)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", path.display()))?;
    if !out.status.success() {
        bail!("{} failed ({}); its messages are above", path.display(), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An HTTP client for setting a peer up (not the load generator's).
pub fn setup_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()?)
}

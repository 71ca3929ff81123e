//! `latchkey-bench`: drives load at a real Latchkey server and prints every figure beside
//! the limit this machine showed in the same run (RS256 signatures and Argon2id hashes per
//! second). It never fails on speed; `--smoke` fails only on request errors.
//!
//! ```text
//! cargo run --release -p latchkey-bench -- [--scenario S]… [--duration 20s] [--concurrency N]
//!                                          [--database sqlite|postgres] [--target URL] [--json FILE]
//! ```

mod ceilings;
mod load;
mod peer;
mod scale;
mod server;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use serde::Serialize;

use crate::ceilings::Ceilings;
use crate::load::{Outcome, Scenario};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DatabaseKind {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Peer {
    /// panva's oidc-provider (Node.js), from bench/peer/oidc-provider.
    OidcProvider,
}

#[derive(Debug, Parser)]
#[command(name = "latchkey-bench", about = "Load benchmark for Latchkey against this machine's own limits")]
struct Args {
    /// Scenarios to run (repeatable); all by default.
    #[arg(long = "scenario", value_enum)]
    scenarios: Vec<Scenario>,
    /// Measured time per scenario, e.g. 20s, 500ms, 1m.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    duration: Duration,
    /// Warm-up before each scenario.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// SQLite's `synchronous` for the server under test: `normal` (its default) or `full`.
    #[arg(long, default_value = "normal", value_parser = ["normal", "full"])]
    sqlite_synchronous: String,
    #[arg(long, value_enum, default_value_t = DatabaseKind::Sqlite)]
    database: DatabaseKind,
    /// PostgreSQL server for --database postgres (a fresh database is created on it).
    #[arg(long, env = "BENCH_DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres_url: String,
    /// Benchmark an already running server instead of starting one (no CPU/RSS figures).
    #[arg(long)]
    target: Option<String>,
    /// Confidential client for client-credentials against --target.
    #[arg(long, requires = "target")]
    client_id: Option<String>,
    #[arg(long, requires = "target")]
    client_secret: Option<String>,
    /// Write the figures as JSON too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Scale run instead of the scenarios: refresh and login rates with this many users
    /// (comma-separated, e.g. 1000,100000,1000000) and ten rotated tokens per user.
    #[arg(long, value_delimiter = ',')]
    scale: Vec<usize>,
    /// Run client-credentials, refresh and jwks side by side with a peer server,
    /// alternating between the two (A B A B …) for --rounds rounds.
    #[arg(long, value_enum, conflicts_with_all = ["target", "scale"])]
    peer: Option<Peer>,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Short pass for CI: 2 s per scenario, no warm-up, exit 1 on any request error.
    #[arg(long)]
    smoke: bool,
    /// Argon2id memory (KiB) for the server and the ceiling (OWASP default).
    #[arg(long, default_value_t = 19_456)]
    argon2_memory_kib: u32,
    #[arg(long, default_value_t = 2)]
    argon2_iterations: u32,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let value: u64 = number.parse().map_err(|_| format!("not a duration: {text:?}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "s" | "" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value * 60)),
        _ => Err(format!("unknown unit in {text:?} (use ms, s or m)")),
    }
}

#[derive(Debug, Serialize)]
struct Report {
    machine: String,
    database: String,
    concurrency: usize,
    ceilings: Ceilings,
    startup_fresh_ms: Option<f64>,
    startup_existing_ms: Option<f64>,
    idle_rss_mib: Option<f64>,
    scenarios: Vec<Outcome>,
    /// Scenarios that could not run against this server, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    skipped: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<PeerComparison>,
}

impl Report {
    fn new(args: &Args, ceilings: Ceilings) -> Self {
        Self {
            machine: format!("{} cores, {}", ceilings.cores, cpu_model()),
            database: format!("{:?}", args.database).to_lowercase(),
            concurrency: args.concurrency,
            ceilings,
            startup_fresh_ms: None,
            startup_existing_ms: None,
            idle_rss_mib: None,
            scenarios: Vec::new(),
            skipped: Vec::new(),
            peer: None,
        }
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.duration = Duration::from_secs(2);
        args.warmup = Duration::ZERO;
        args.concurrency = args.concurrency.min(8);
    }
    if args.scenarios.is_empty() && args.peer.is_none() {
        args.scenarios = Scenario::ALL.to_vec();
    }
    println!("Measuring this machine's ceilings…");
    let window = if args.smoke { Duration::from_millis(300) } else { Duration::from_secs(2) };
    let workloads = ceilings::Workloads::new(args.argon2_memory_kib, args.argon2_iterations)?;
    let ceilings = workloads.measure(window);
    print_ceilings(&ceilings);
    if args.target.is_some() {
        println!(
            "  (--target: these ceilings use this bench's Argon2id settings, m = {} KiB, t = {}, and 2048-bit \
             RSA; the target's own settings are not known here, so its ratios hold only if they match)",
            args.argon2_memory_kib, args.argon2_iterations
        );
    }
    let probe = Probe { workloads: &workloads, window: if args.smoke { window } else { Duration::from_secs(1) } };

    // The load generator gets its own runtime, as a separate client would.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let report = if args.peer.is_some() {
        runtime.block_on(run_peer(&args, ceilings))?
    } else if args.scale.is_empty() {
        runtime.block_on(run(&args, ceilings, &probe))?
    } else {
        runtime.block_on(run_scale(&args, ceilings, &probe))?
    };
    if !report.scenarios.is_empty() {
        load::print_table(&report.scenarios);
    }
    if let Some(ms) = report.startup_existing_ms {
        println!(
            "start-up to ready: {:.0} ms on a fresh database (migrations, key generation), {ms:.0} ms on an existing one",
            report.startup_fresh_ms.unwrap_or_default()
        );
    }
    if let Some(rss) = report.idle_rss_mib {
        println!("server RSS when idle: {rss:.1} MiB");
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let peer_errors = report.peer.iter().flat_map(|c| &c.pairs).map(|p| p.latchkey.errors + p.peer.errors);
    let errors: u64 = report.scenarios.iter().map(|s| s.errors).chain(peer_errors).sum();
    if args.smoke && errors > 0 {
        bail!("{errors} request(s) failed during the smoke pass");
    }
    if args.smoke && !report.skipped.is_empty() {
        bail!("the smoke pass skipped: {}", report.skipped.join("; "));
    }
    Ok(())
}

fn print_ceilings(c: &Ceilings) {
    println!("machine: {} cores ({})", c.cores, cpu_model());
    println!(
        "  RS256 sign    {:>9.0}/s on one core, {:>9.0}/s on {} cores",
        c.rs256_sign_per_sec.one_core, c.rs256_sign_per_sec.all_cores, c.cores
    );
    println!(
        "  RS256 verify  {:>9.0}/s on one core, {:>9.0}/s on {} cores",
        c.rs256_verify_per_sec.one_core, c.rs256_verify_per_sec.all_cores, c.cores
    );
    println!(
        "  Argon2id hash {:>9.1}/s on one core, {:>9.1}/s on {} cores",
        c.argon2id_hash_per_sec.one_core, c.argon2id_hash_per_sec.all_cores, c.cores
    );
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

async fn fresh_postgres_database(admin_url: &str) -> anyhow::Result<String> {
    use sea_orm::ConnectionTrait;
    let name = format!("latchkey_bench_{}", uuid::Uuid::new_v4().simple());
    let admin = sea_orm::Database::connect(admin_url).await.context("connecting to PostgreSQL")?;
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await?;
    admin.close().await?;
    let mut url = url::Url::parse(admin_url)?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

async fn drop_postgres_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    use sea_orm::ConnectionTrait;
    let admin = sea_orm::Database::connect(admin_url).await?;
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
    Ok(())
}

/// Our server under test: started here with a fresh database, or `--target`.
struct Ours {
    server: Option<server::ServerProcess>,
    base: String,
    client: Option<(String, String)>,
    bench_database: Option<String>,
    _dir: tempfile::TempDir,
}

impl Ours {
    fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(|s| s.child.id())
    }

    /// Starts the server (recording start-up times and idle RSS in `report`).
    async fn start(args: &Args, report: &mut Report) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        if let Some(target) = &args.target {
            let client = args.client_id.clone().zip(args.client_secret.clone());
            let base = target.trim_end_matches('/').to_string();
            return Ok(Self { server: None, base, client, bench_database: None, _dir: dir });
        }
        let binary = server::server_binary()?;
        let mut bench_database = None;
        let database_url = match args.database {
            DatabaseKind::Sqlite => format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display()),
            DatabaseKind::Postgres => {
                let url = fresh_postgres_database(&args.postgres_url).await?;
                bench_database = url::Url::parse(&url)?.path().strip_prefix('/').map(str::to_string);
                url
            }
        };
        let mut env = server::base_env(dir.path(), &database_url);
        env.push(("LATCHKEY_PASSWORDS__ARGON2_MEMORY_KIB".into(), args.argon2_memory_kib.to_string()));
        env.push(("LATCHKEY_PASSWORDS__ARGON2_ITERATIONS".into(), args.argon2_iterations.to_string()));
        env.push(("LATCHKEY_SQLITE_SYNCHRONOUS".into(), args.sqlite_synchronous.clone()));
        let first = server::start(&binary, &env).await?;
        report.startup_fresh_ms = Some(first.startup.as_secs_f64() * 1000.0);
        drop(first);
        let out = server::run_cli(
            &binary,
            &env,
            &["client", "create", "--client-id", "bench-svc", "--confidential", "--grant", "client_credentials"],
            None,
        )?;
        let secret = out
            .lines()
            .find_map(|l| l.strip_prefix("client_secret: "))
            .context("no client secret printed")?
            .to_string();
        let server = server::start(&binary, &env).await?;
        report.startup_existing_ms = Some(server.startup.as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(200)).await;
        report.idle_rss_mib = Some(server::memory_mib(server.child.id()).0);
        let base = server.base.clone();
        Ok(Self {
            server: Some(server),
            base,
            client: Some(("bench-svc".to_string(), secret)),
            bench_database,
            _dir: dir,
        })
    }

    async fn stop(mut self, args: &Args) -> anyhow::Result<()> {
        drop(self.server.take());
        if let Some(name) = self.bench_database.take() {
            drop_postgres_database(&args.postgres_url, &name).await?;
        }
        Ok(())
    }
}

/// Re-measures a scenario's ceilings just before it runs.
struct Probe<'a> {
    workloads: &'a ceilings::Workloads,
    window: Duration,
}

impl Probe<'_> {
    /// Runs the scenario with its ceilings measured right before, and labels its rows.
    async fn run(
        &self,
        scenario: Scenario,
        fixture: &load::Fixture,
        args: &Args,
        pid: Option<u32>,
    ) -> anyhow::Result<Vec<Outcome>> {
        let measured: Vec<(ceilings::Bound, f64)> = load::bounds_of(scenario)
            .iter()
            .map(|&bound| (bound, tokio::task::block_in_place(|| self.workloads.measure_all_cores(bound, self.window))))
            .collect();
        let mut outcomes =
            load::run_scenario(scenario, fixture, args.concurrency, args.warmup, args.duration, pid).await?;
        load::attach_bounds(&mut outcomes, &measured, self.workloads.cores());
        Ok(outcomes)
    }
}

async fn run(args: &Args, ceilings: Ceilings, probe: &Probe<'_>) -> anyhow::Result<Report> {
    let mut report = Report::new(args, ceilings);
    let ours = Ours::start(args, &mut report).await?;
    let fixture = load::Fixture::seed(&ours.base, args.concurrency, ours.client.clone()).await?;
    if !args.smoke {
        // Let the server give back the seeding logins' Argon2 memory, so the first
        // scenario's peak RSS is its own.
        tokio::time::sleep(latchkey_server::security::password::RELEASE_IDLE_MEMORY_AFTER + Duration::from_secs(1))
            .await;
    }
    for scenario in &args.scenarios {
        println!("running {scenario:?} for {:?}…", args.duration);
        match probe.run(*scenario, &fixture, args, ours.pid()).await {
            Ok(outcomes) => report.scenarios.extend(outcomes),
            Err(e) if e.downcast_ref::<load::Skipped>().is_some() => report.skipped.push(format!("{scenario:?}: {e}")),
            Err(e) => return Err(e),
        }
    }
    ours.stop(args).await?;
    Ok(report)
}

/// One pair of the side-by-side run: the same scenario against us, then the peer.
#[derive(Debug, Serialize)]
struct PeerPair {
    scenario: String,
    round: usize,
    latchkey: Outcome,
    peer: Outcome,
    /// Our req/s divided by the peer's.
    ratio: f64,
}

#[derive(Debug, Serialize)]
struct PeerComparison {
    peer: String,
    note: String,
    peer_idle_rss_mib: f64,
    pairs: Vec<PeerPair>,
}

const PEER_NOTE: &str = "oidc-provider keeps tokens in its in-memory adapter (lost on restart, not shared \
between processes); Latchkey writes every refresh rotation durably to its database in one transaction";

/// `--peer oidc-provider`: both servers up, the shared scenarios run alternately
/// (A B A B …) for `--rounds` rounds with the same connection count, neither pinned.
async fn run_peer(args: &Args, ceilings: Ceilings) -> anyhow::Result<Report> {
    let mut report = Report::new(args, ceilings);
    let ours = Ours::start(args, &mut report).await?;
    let fixture = load::Fixture::seed(&ours.base, args.concurrency, ours.client.clone()).await?;
    println!("starting oidc-provider…");
    let peer = peer::start(args.concurrency).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peer_pid = Some(peer.child.id());
    let peer_idle_rss_mib = server::memory_mib(peer.child.id()).0;
    let peer_fixture = load::Fixture::peer(&peer.info, args.concurrency)?;
    let shared = [Scenario::ClientCredentials, Scenario::Refresh, Scenario::Jwks];
    let scenarios: Vec<Scenario> =
        shared.into_iter().filter(|s| args.scenarios.is_empty() || args.scenarios.contains(s)).collect();
    let mut pairs = Vec::new();
    for scenario in scenarios {
        for round in 1..=args.rounds {
            // A B in odd rounds, B A in even ones, so neither always runs on a warmer machine.
            let peer_first = round % 2 == 0;
            let order = if peer_first { "oidc-provider, then latchkey" } else { "latchkey, then oidc-provider" };
            println!("{scenario:?}, round {round}/{}: {order}…", args.rounds);
            let run_ours =
                || load::run_scenario(scenario, &fixture, args.concurrency, args.warmup, args.duration, ours.pid());
            let run_peer =
                || load::run_scenario(scenario, &peer_fixture, args.concurrency, args.warmup, args.duration, peer_pid);
            let (latchkey, peer) = if peer_first {
                let peer = run_peer().await?;
                (run_ours().await?, peer)
            } else {
                let latchkey = run_ours().await?;
                (latchkey, run_peer().await?)
            };
            let latchkey = latchkey.into_iter().next().context("no outcome")?;
            let peer = peer.into_iter().next().context("no outcome")?;
            let ratio = if peer.per_sec > 0.0 { latchkey.per_sec / peer.per_sec } else { f64::NAN };
            pairs.push(PeerPair { scenario: latchkey.scenario.clone(), round, latchkey, peer, ratio });
        }
    }
    let comparison = PeerComparison {
        peer: format!("oidc-provider {} on Node.js {}", peer.version, node_version()),
        note: PEER_NOTE.into(),
        peer_idle_rss_mib,
        pairs,
    };
    drop(peer);
    ours.stop(args).await?;
    print_peer(&comparison);
    report.peer = Some(comparison);
    Ok(report)
}

fn node_version() -> String {
    std::process::Command::new("node")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

fn print_peer(c: &PeerComparison) {
    println!();
    println!("Side by side with {} (same connections, neither pinned):", c.peer);
    println!(
        "{:<20} {:>5} {:>10} {:>8} {:>4} {:>6} {:>9}   {:>10} {:>8} {:>4} {:>6} {:>9}   {:>6}",
        "scenario",
        "round",
        "ours r/s",
        "p99 ms",
        "err",
        "CPU",
        "peak RSS",
        "peer r/s",
        "p99 ms",
        "err",
        "CPU",
        "peak RSS",
        "ratio"
    );
    let cpu = |o: &Outcome| o.server_cpu_pct.map_or("-".into(), |c| format!("{c:.0}%"));
    let rss = |o: &Outcome| o.server_peak_rss_mib.map_or("-".into(), |r| format!("{r:.1} MiB"));
    for p in &c.pairs {
        println!(
            "{:<20} {:>5} {:>10.0} {:>8.2} {:>4} {:>6} {:>9}   {:>10.0} {:>8.2} {:>4} {:>6} {:>9}   {:>5.2}×",
            p.scenario,
            p.round,
            p.latchkey.per_sec,
            p.latchkey.p99_ms,
            p.latchkey.errors,
            cpu(&p.latchkey),
            rss(&p.latchkey),
            p.peer.per_sec,
            p.peer.p99_ms,
            p.peer.errors,
            cpu(&p.peer),
            rss(&p.peer),
            p.ratio
        );
    }
    let mut names: Vec<&str> = c.pairs.iter().map(|p| p.scenario.as_str()).collect();
    names.dedup();
    for name in names {
        let mut ratios: Vec<f64> = c.pairs.iter().filter(|p| p.scenario == name).map(|p| p.ratio).collect();
        ratios.sort_by(f64::total_cmp);
        println!("  {name}: median ratio {:.2}× over {} rounds", ratios[ratios.len() / 2], ratios.len());
    }
    println!("  peer RSS when idle: {:.1} MiB", c.peer_idle_rss_mib);
    println!("  note: {}", c.note);
}

/// One fresh server per size: migrate, bulk-seed, start, then refresh and login.
async fn run_scale(args: &Args, ceilings: Ceilings, probe: &Probe<'_>) -> anyhow::Result<Report> {
    let binary = server::server_binary()?;
    let mut report = Report::new(args, ceilings);
    let hasher = latchkey_server::security::password::PasswordHasher::new(
        latchkey_server::config::Argon2Settings {
            memory_kib: args.argon2_memory_kib,
            iterations: args.argon2_iterations,
            parallelism: 1,
        },
        1,
        1,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let shared_hash = hasher
        .hash(&latchkey_server::security::Secret::new("scale password".to_string()))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for &users in &args.scale {
        let dir = tempfile::tempdir()?;
        let (database_url, pg_name) = match args.database {
            DatabaseKind::Sqlite => (format!("sqlite://{}?mode=rwc", dir.path().join("scale.db").display()), None),
            DatabaseKind::Postgres => {
                let url = fresh_postgres_database(&args.postgres_url).await?;
                let name = url::Url::parse(&url)?.path().strip_prefix('/').map(str::to_string);
                (url, name)
            }
        };
        let mut env = server::base_env(dir.path(), &database_url);
        env.push(("LATCHKEY_PASSWORDS__ARGON2_MEMORY_KIB".into(), args.argon2_memory_kib.to_string()));
        env.push(("LATCHKEY_PASSWORDS__ARGON2_ITERATIONS".into(), args.argon2_iterations.to_string()));
        server::run_cli(&binary, &env, &["migrate"], None)?;
        let seeding = std::time::Instant::now();
        scale::seed(&database_url, users, &shared_hash).await?;
        println!("seeded {users} users and {} rotated tokens in {:.1} s", users * 10, seeding.elapsed().as_secs_f64());
        let server = server::start(&binary, &env).await?;
        let pid = Some(server.child.id());
        let fixture = load::Fixture::seed(&server.base, args.concurrency, None).await?;
        for scenario in [Scenario::Refresh, Scenario::Login] {
            println!("running {scenario:?} with {users} users for {:?}…", args.duration);
            let mut outcomes = probe.run(scenario, &fixture, args, pid).await?;
            for outcome in &mut outcomes {
                outcome.scenario = format!("{} @ {users} users", outcome.scenario);
            }
            report.scenarios.extend(outcomes);
        }
        drop(server);
        if let Some(name) = pg_name {
            drop_postgres_database(&args.postgres_url, &name).await?;
        }
    }
    Ok(report)
}

//! `latchkey-bench`: drives load at a real Latchkey server and prints every figure beside
//! the limit this machine showed in the same run (RS256 signatures and Argon2id hashes per
//! second). It never fails on speed; `--smoke` fails only on request errors.
//!
//! ```text
//! cargo run --release -p latchkey-bench -- [--scenario S]… [--duration 20s] [--concurrency N]
//!                                          [--database sqlite|postgres] [--target URL] [--json FILE]
//!                                          [--peer oidc-provider,keycloak,hydra] [--rounds 3]
//! ```
//!
//! This file owns the command line, the runs (scenarios, scale, side by side with peers)
//! and their printed tables; `load` drives requests, `server` starts Latchkey, `peer` the
//! peers, `postgres` the run's PostgreSQL server, `ceilings` the machine's limits.

mod ceilings;
mod load;
mod peer;
mod pgbench;
mod postgres;
mod scale;
mod server;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use serde::Serialize;

use crate::ceilings::Ceilings;
use crate::load::{Outcome, Scenario};
use crate::peer::PeerKind;
use crate::postgres::Postgres;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DatabaseKind {
    Sqlite,
    Postgres,
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
    /// Latchkey's database: SQLite by default, PostgreSQL when a peer keeps its state there.
    #[arg(long, value_enum)]
    database: Option<DatabaseKind>,
    /// PostgreSQL server for --database postgres and the PostgreSQL peers (a fresh database
    /// each); without it the bench starts a private cluster with .ci/postgres.sh.
    #[arg(long, env = "BENCH_DATABASE_URL")]
    postgres_url: Option<String>,
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
    /// Run client-credentials, refresh and jwks side by side with peer servers (comma-separated,
    /// one after another), alternating between Latchkey and the peer (A B A B …) for --rounds rounds.
    #[arg(long = "peer", value_enum, value_delimiter = ',', conflicts_with_all = ["target", "scale"])]
    peers: Vec<PeerKind>,
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

impl Args {
    /// Latchkey's database: PostgreSQL when asked for or when a peer keeps its state there
    /// (all of them then share one PostgreSQL server).
    fn database(&self) -> anyhow::Result<DatabaseKind> {
        let wants_postgres = self.peers.iter().any(|p| p.uses_postgres());
        match self.database {
            Some(DatabaseKind::Sqlite) if wants_postgres => {
                bail!("--peer keycloak and --peer hydra run on PostgreSQL, and Latchkey runs on the same server")
            }
            Some(kind) => Ok(kind),
            None if wants_postgres => Ok(DatabaseKind::Postgres),
            None => Ok(DatabaseKind::Sqlite),
        }
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
    #[serde(skip_serializing_if = "Vec::is_empty")]
    peers: Vec<PeerComparison>,
    /// On PostgreSQL: pgbench's rate for the statements of one refresh, on the same
    /// database and connection count, measured after the scenarios.
    #[serde(skip_serializing_if = "Option::is_none")]
    pgbench_refresh_per_sec: Option<f64>,
}

impl Report {
    fn new(args: &Args, ceilings: Ceilings, database: String) -> Self {
        Self {
            machine: format!("{} cores, {}", ceilings.cores, cpu_model()),
            database,
            concurrency: args.concurrency,
            ceilings,
            startup_fresh_ms: None,
            startup_existing_ms: None,
            idle_rss_mib: None,
            scenarios: Vec::new(),
            skipped: Vec::new(),
            peers: Vec::new(),
            pgbench_refresh_per_sec: None,
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
    if args.scenarios.is_empty() && args.peers.is_empty() {
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
    let database = args.database()?;
    let postgres = match database {
        DatabaseKind::Postgres if args.target.is_none() => Some(Postgres::open(args.postgres_url.as_deref())?),
        _ => None,
    };
    let database_name = match (&postgres, &args.target) {
        (Some(pg), _) => runtime.block_on(pg.version())?,
        (None, Some(_)) => "the target's own".to_string(),
        (None, None) => "sqlite".to_string(),
    };
    let setup = Setup { postgres: postgres.as_ref(), report: Report::new(&args, ceilings, database_name) };
    let report = if !args.peers.is_empty() {
        runtime.block_on(run_peers(&args, setup))?
    } else if args.scale.is_empty() {
        runtime.block_on(run(&args, setup, &probe))?
    } else {
        runtime.block_on(run_scale(&args, setup, &probe))?
    };
    drop(postgres);
    if !report.scenarios.is_empty() {
        load::print_table(&report.scenarios);
        load::print_dpop_overhead(&report.scenarios, &report.ceilings);
    }
    if let Some(ceiling) = report.pgbench_refresh_per_sec {
        let refresh = report.scenarios.iter().find(|o| o.scenario == "refresh");
        println!(
            "PostgreSQL ceiling: pgbench runs one refresh's statement (the read and the rotation in one) at {ceiling:.0}/s \
             on {} connections; refresh is {}",
            report.concurrency,
            refresh.map_or("not measured".into(), |r| format!(
                "{:.0}/s = {:.0}% of it ({} of the signing ceiling)",
                r.per_sec,
                r.per_sec / ceiling * 100.0,
                r.ratio_to_bound.map_or("-".into(), |b| format!("{:.0}%", b * 100.0))
            )),
        );
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
    let peer_errors = report.peers.iter().flat_map(|c| &c.pairs).map(|p| p.latchkey.errors + p.peer.errors);
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
    println!(
        "  ES256 sign    {:>9.0}/s on one core, {:>9.0}/s on {} cores",
        c.es256_sign_per_sec.one_core, c.es256_sign_per_sec.all_cores, c.cores
    );
    println!(
        "  ES256 verify  {:>9.0}/s on one core, {:>9.0}/s on {} cores (key parsed each time)",
        c.es256_verify_per_sec.one_core, c.es256_verify_per_sec.all_cores, c.cores
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

/// What every run starts from: the PostgreSQL server (when Latchkey runs on it) and the
/// report with the machine's ceilings.
struct Setup<'a> {
    postgres: Option<&'a Postgres>,
    report: Report,
}

/// Our server under test: started here with a fresh database, or `--target`.
struct Ours {
    server: Option<server::ServerProcess>,
    base: String,
    client: Option<(String, String)>,
    bench_database: Option<postgres::Database>,
    _dir: tempfile::TempDir,
}

impl Ours {
    fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(|s| s.child.id())
    }

    /// Starts the server (recording start-up times and idle RSS in `report`).
    async fn start(args: &Args, setup: &mut Setup<'_>) -> anyhow::Result<Self> {
        let report = &mut setup.report;
        let dir = tempfile::tempdir()?;
        if let Some(target) = &args.target {
            let client = args.client_id.clone().zip(args.client_secret.clone());
            let base = target.trim_end_matches('/').to_string();
            return Ok(Self { server: None, base, client, bench_database: None, _dir: dir });
        }
        let binary = server::server_binary()?;
        let mut bench_database = None;
        let database_url = match setup.postgres {
            None => format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display()),
            Some(pg) => {
                let database = pg.create_database("latchkey_bench").await?;
                let url = database.url();
                bench_database = Some(database);
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
        let relying_party = [
            "client",
            "create",
            "--client-id",
            load::BENCH_RP,
            "--grant",
            "authorization_code",
            "--redirect-uri",
            load::BENCH_RP_REDIRECT,
            "--scope",
            "openid",
            "--scope",
            "profile",
            "--first-party",
        ];
        server::run_cli(&binary, &env, &relying_party, None)?;
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

    async fn stop(mut self, postgres: Option<&Postgres>) -> anyhow::Result<()> {
        drop(self.server.take());
        if let (Some(pg), Some(database)) = (postgres, self.bench_database.take()) {
            pg.drop_database(&database).await?;
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

async fn run(args: &Args, mut setup: Setup<'_>, probe: &Probe<'_>) -> anyhow::Result<Report> {
    let ours = Ours::start(args, &mut setup).await?;
    let mut report = setup.report;
    let code_flow = ours.server.is_some();
    let fixture = load::Fixture::seed_with(&ours.base, args.concurrency, ours.client.clone(), code_flow).await?;
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
    // Last: pgbench rotates the accounts' tokens, which no scenario may meet again.
    if let Some(database) = ours.bench_database.as_ref().filter(|_| args.scenarios.contains(&Scenario::Refresh)) {
        println!("running pgbench with one refresh's statements for {:?}…", args.duration);
        let tps = pgbench::refresh_statements(database, args.concurrency, args.duration).await?;
        report.pgbench_refresh_per_sec = Some(tps);
    }
    ours.stop(setup.postgres).await?;
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

/// The medians of one scenario's rounds, each figure on its own.
#[derive(Debug, Serialize)]
struct PeerSummary {
    scenario: String,
    latchkey: Medians,
    peer: Medians,
    /// The median of the rounds' ratios (our req/s over the peer's).
    ratio: f64,
}

#[derive(Debug, Serialize)]
struct Medians {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    server_cpu_pct: Option<f64>,
    server_peak_rss_mib: Option<f64>,
}

#[derive(Debug, Serialize)]
struct PeerComparison {
    peer: String,
    note: String,
    peer_idle_rss_mib: f64,
    /// Spawn to ready on an empty database (migrations included) and on an existing one.
    peer_startup_fresh_ms: Option<f64>,
    peer_startup_existing_ms: Option<f64>,
    pairs: Vec<PeerPair>,
    summary: Vec<PeerSummary>,
}

/// The median of `values` (the mean of the middle two for an even count); NaN when empty.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn medians<'a>(outcomes: impl Iterator<Item = &'a Outcome> + Clone) -> Medians {
    let of = |f: fn(&Outcome) -> f64| median(outcomes.clone().map(f).collect());
    let of_some = |f: fn(&Outcome) -> Option<f64>| {
        let values: Vec<f64> = outcomes.clone().filter_map(f).collect();
        (!values.is_empty()).then(|| median(values))
    };
    Medians {
        per_sec: of(|o| o.per_sec),
        p50_ms: of(|o| o.p50_ms),
        p99_ms: of(|o| o.p99_ms),
        server_cpu_pct: of_some(|o| o.server_cpu_pct),
        server_peak_rss_mib: of_some(|o| o.server_peak_rss_mib),
    }
}

fn summarise(pairs: &[PeerPair]) -> Vec<PeerSummary> {
    let mut names: Vec<&str> = pairs.iter().map(|p| p.scenario.as_str()).collect();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let rounds = || pairs.iter().filter(move |p| p.scenario == name);
            PeerSummary {
                scenario: name.to_string(),
                latchkey: medians(rounds().map(|p| &p.latchkey)),
                peer: medians(rounds().map(|p| &p.peer)),
                ratio: median(rounds().map(|p| p.ratio).collect()),
            }
        })
        .collect()
}

/// `--peer …`: Latchkey up once, each peer started in turn; the shared scenarios run
/// alternately (A B in odd rounds, B A in even ones) for `--rounds` rounds with the same
/// connection count, neither server pinned.
async fn run_peers(args: &Args, mut setup: Setup<'_>) -> anyhow::Result<Report> {
    let ours = Ours::start(args, &mut setup).await?;
    let fixture = load::Fixture::seed(&ours.base, args.concurrency, ours.client.clone()).await?;
    let dir = tempfile::tempdir()?;
    let ctx = peer::Context { concurrency: args.concurrency, postgres: setup.postgres, dir: dir.path() };
    let shared = [Scenario::ClientCredentials, Scenario::Refresh, Scenario::Jwks];
    let scenarios: Vec<Scenario> =
        shared.into_iter().filter(|s| args.scenarios.is_empty() || args.scenarios.contains(s)).collect();
    let mut report = setup.report;
    for &kind in &args.peers {
        let name = kind.name();
        println!("starting {name}…");
        let peer = peer::start(kind, &ctx).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let peer_pid = Some(peer.pid());
        let peer_idle_rss_mib = server::memory_mib(peer.pid()).0;
        let peer_fixture = load::Fixture::peer(&peer, args.concurrency)?;
        let mut pairs = Vec::new();
        for &scenario in &scenarios {
            for round in 1..=args.rounds {
                // A B in odd rounds, B A in even ones, so neither always runs on a warmer machine.
                let peer_first = round % 2 == 0;
                let order =
                    if peer_first { format!("{name}, then latchkey") } else { format!("latchkey, then {name}") };
                println!("{scenario:?}, round {round}/{}: {order}…", args.rounds);
                let run_ours =
                    || load::run_scenario(scenario, &fixture, args.concurrency, args.warmup, args.duration, ours.pid());
                let run_peer = || {
                    load::run_scenario(scenario, &peer_fixture, args.concurrency, args.warmup, args.duration, peer_pid)
                };
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
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        let comparison = PeerComparison {
            peer: peer.version.clone(),
            note: peer.note.into(),
            peer_idle_rss_mib,
            peer_startup_fresh_ms: ms(peer.startup.fresh),
            peer_startup_existing_ms: ms(peer.startup.existing),
            summary: summarise(&pairs),
            pairs,
        };
        peer.stop(setup.postgres).await?;
        print_peer(&comparison, &report);
        report.peers.push(comparison);
    }
    ours.stop(setup.postgres).await?;
    if report.peers.len() > 1 {
        print_peer_overview(&report);
    }
    Ok(report)
}

fn print_peer(c: &PeerComparison, ours: &Report) {
    println!();
    println!("Side by side with {} (same connections, neither pinned; Latchkey on {}):", c.peer, ours.database);
    println!(
        "{:<20} {:>5} {:>10} {:>7} {:>7} {:>4} {:>6} {:>9}   {:>10} {:>7} {:>7} {:>4} {:>6} {:>9}   {:>6}",
        "scenario",
        "round",
        "ours r/s",
        "p50 ms",
        "p99 ms",
        "err",
        "CPU",
        "peak RSS",
        "peer r/s",
        "p50 ms",
        "p99 ms",
        "err",
        "CPU",
        "peak RSS",
        "ratio"
    );
    let cpu = |c: Option<f64>| c.map_or("-".into(), |c| format!("{c:.0}%"));
    let rss = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.1} MiB"));
    for p in &c.pairs {
        println!(
            "{:<20} {:>5} {:>10.0} {:>7.2} {:>7.2} {:>4} {:>6} {:>9}   {:>10.0} {:>7.2} {:>7.2} {:>4} {:>6} {:>9}   {:>5.2}×",
            p.scenario,
            p.round,
            p.latchkey.per_sec,
            p.latchkey.p50_ms,
            p.latchkey.p99_ms,
            p.latchkey.errors,
            cpu(p.latchkey.server_cpu_pct),
            rss(p.latchkey.server_peak_rss_mib),
            p.peer.per_sec,
            p.peer.p50_ms,
            p.peer.p99_ms,
            p.peer.errors,
            cpu(p.peer.server_cpu_pct),
            rss(p.peer.server_peak_rss_mib),
            p.ratio
        );
    }
    for s in &c.summary {
        println!(
            "{:<20} {:>5} {:>10.0} {:>7.2} {:>7.2} {:>4} {:>6} {:>9}   {:>10.0} {:>7.2} {:>7.2} {:>4} {:>6} {:>9}   {:>5.2}×",
            s.scenario,
            "med.",
            s.latchkey.per_sec,
            s.latchkey.p50_ms,
            s.latchkey.p99_ms,
            "",
            cpu(s.latchkey.server_cpu_pct),
            rss(s.latchkey.server_peak_rss_mib),
            s.peer.per_sec,
            s.peer.p50_ms,
            s.peer.p99_ms,
            "",
            cpu(s.peer.server_cpu_pct),
            rss(s.peer.server_peak_rss_mib),
            s.ratio
        );
    }
    let ours_idle = ours.idle_rss_mib.unwrap_or(f64::NAN);
    println!(
        "  RSS when idle: latchkey {ours_idle:.1} MiB, peer {:.1} MiB (latchkey/peer {:.3})",
        c.peer_idle_rss_mib,
        ours_idle / c.peer_idle_rss_mib
    );
    let startup = |fresh: Option<f64>, existing: Option<f64>| {
        let show = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0} ms"));
        format!("{} fresh, {} existing", show(fresh), show(existing))
    };
    println!(
        "  start-up to ready: latchkey {}; peer {}",
        startup(ours.startup_fresh_ms, ours.startup_existing_ms),
        startup(c.peer_startup_fresh_ms, c.peer_startup_existing_ms)
    );
    if let (Some(ours), Some(peer)) = (ours.startup_existing_ms, c.peer_startup_existing_ms.or(c.peer_startup_fresh_ms))
    {
        println!("  start-up ratio (peer/latchkey, existing database): {:.1}×", peer / ours);
    }
    println!("  note: {}", c.note);
}

/// One line per peer and scenario: the median ratios side by side.
fn print_peer_overview(report: &Report) {
    println!();
    println!("Median ratios, latchkey/peer (req/s), over {} peers:", report.peers.len());
    for c in &report.peers {
        let ratios: Vec<String> = c.summary.iter().map(|s| format!("{} {:.2}×", s.scenario, s.ratio)).collect();
        println!("  {:<48} {}", c.peer, ratios.join(", "));
    }
}

/// One fresh server per size: migrate, bulk-seed, start, then refresh and login.
async fn run_scale(args: &Args, setup: Setup<'_>, probe: &Probe<'_>) -> anyhow::Result<Report> {
    let binary = server::server_binary()?;
    let mut report = setup.report;
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
        let (database_url, pg_database) = match setup.postgres {
            None => (format!("sqlite://{}?mode=rwc", dir.path().join("scale.db").display()), None),
            Some(pg) => {
                let database = pg.create_database("latchkey_scale").await?;
                (database.url(), Some(database))
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
        if let (Some(pg), Some(database)) = (setup.postgres, pg_database) {
            pg.drop_database(&database).await?;
        }
    }
    Ok(report)
}

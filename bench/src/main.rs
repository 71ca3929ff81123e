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
    if args.scenarios.is_empty() {
        args.scenarios = Scenario::ALL.to_vec();
    }
    println!("Measuring this machine's ceilings…");
    let window = if args.smoke { Duration::from_millis(300) } else { Duration::from_secs(2) };
    let ceilings = ceilings::measure(args.argon2_memory_kib, args.argon2_iterations, window)?;
    print_ceilings(&ceilings);

    // The load generator gets its own runtime, as a separate client would.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut report = if args.scale.is_empty() {
        runtime.block_on(run(&args, ceilings))?
    } else {
        runtime.block_on(run_scale(&args, ceilings))?
    };
    for row in &mut report.scenarios {
        let (bound, value) = load::bound_of(&row.scenario, &ceilings);
        row.ratio_to_bound = value.map(|v| row.per_sec / v);
        row.bound = value.is_some().then_some(bound);
    }
    load::print_table(&report.scenarios, &ceilings);
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
    let errors: u64 = report.scenarios.iter().map(|s| s.errors).sum();
    if args.smoke && errors > 0 {
        bail!("{errors} request(s) failed during the smoke pass");
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

async fn run(args: &Args, ceilings: Ceilings) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir()?;
    let mut report = Report::new(args, ceilings);

    let mut bench_database = None;
    let (server, client) = if args.target.is_some() {
        let client = match (&args.client_id, &args.client_secret) {
            (Some(id), Some(secret)) => Some((id.clone(), secret.clone())),
            _ => None,
        };
        (None, client)
    } else {
        let binary = server::server_binary()?;
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
        (Some(server), Some(("bench-svc".to_string(), secret)))
    };
    let base = match (&server, &args.target) {
        (Some(server), _) => server.base.clone(),
        (None, Some(target)) => target.trim_end_matches('/').to_string(),
        (None, None) => unreachable!(),
    };
    let pid = server.as_ref().map(|s| s.child.id());

    let fixture = load::Fixture::seed(&base, args.concurrency, client).await?;
    for scenario in &args.scenarios {
        println!("running {scenario:?} for {:?}…", args.duration);
        let outcomes =
            load::run_scenario(*scenario, &fixture, args.concurrency, args.warmup, args.duration, pid).await?;
        report.scenarios.extend(outcomes);
    }
    drop(server);
    if let Some(name) = bench_database {
        drop_postgres_database(&args.postgres_url, &name).await?;
    }
    Ok(report)
}

/// One fresh server per size: migrate, bulk-seed, start, then refresh and login.
async fn run_scale(args: &Args, ceilings: Ceilings) -> anyhow::Result<Report> {
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
            let mut outcomes =
                load::run_scenario(scenario, &fixture, args.concurrency, args.warmup, args.duration, pid).await?;
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

//! Starts the release server as a child process with a fresh database, and reads its
//! CPU time and memory from /proc.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub struct ServerProcess {
    pub child: Child,
    pub base: String,
    pub startup: Duration,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `latchkey` binary next to this one (both live in target/release), built on demand.
pub fn server_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("no parent directory")?;
    let candidate = dir.join("latchkey");
    // Always ask cargo (a no-op when nothing changed): a `latchkey` left over from an
    // older build would measure code that is no longer the code.
    let release = dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-q", "--locked", "-p", "latchkey-server", "--bin", "latchkey"]);
    cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    if release {
        cmd.arg("--release");
    }
    match cmd.status() {
        Ok(status) if status.success() => Ok(candidate),
        Ok(_) => bail!("building the server failed"),
        Err(e) => bail!("cannot run cargo to build the server ({e}); the bench refuses a binary it cannot check"),
    }
}

const UNLIMITED: &str = "{per_minute=100000000,burst=10000000}";

pub fn base_env(dir: &Path, database_url: &str) -> Vec<(String, String)> {
    let mut env = vec![
        ("LATCHKEY_LISTEN".into(), "127.0.0.1:0".into()),
        // A domain, not an address: passkeys (WebAuthn) are bound to one.
        ("LATCHKEY_PUBLIC_URL".into(), "http://localhost".into()),
        ("LATCHKEY_DATABASE_URL".into(), database_url.into()),
        ("LATCHKEY_MASTER_KEY_FILE".into(), dir.join("master.key").display().to_string()),
        ("LATCHKEY_LOG_FORMAT".into(), "json".into()),
        ("RUST_LOG".into(), "warn,latchkey_server=info".into()),
        // Every request comes from 127.0.0.1: per-IP buckets would measure the limiter.
        ("LATCHKEY_RATE_LIMITS__LOGIN".into(), UNLIMITED.into()),
        ("LATCHKEY_RATE_LIMITS__REGISTER".into(), UNLIMITED.into()),
        ("LATCHKEY_RATE_LIMITS__TOKEN".into(), UNLIMITED.into()),
        ("LATCHKEY_RATE_LIMITS__REFRESH".into(), UNLIMITED.into()),
        ("LATCHKEY_RATE_LIMITS__USERNAME".into(), UNLIMITED.into()),
        // Seeding registers a passkey per account (the TOTP bucket guards registrations).
        ("LATCHKEY_RATE_LIMITS__TOTP".into(), UNLIMITED.into()),
        // The sign-in page scenario renders sign-ins the seeding left open.
        ("LATCHKEY_SSO__SIGN_IN_TIMEOUT_SECS".into(), "86400".into()),
    ];
    // PostgreSQL serves 32 connections' queries in parallel; on SQLite the hot paths
    // do not use the pool and writes take turns, so the default is left alone.
    if database_url.starts_with("postgres") {
        env.push(("LATCHKEY_DB_POOL_SIZE".into(), "16".into()));
    }
    env
}

/// Runs a `latchkey` subcommand to completion with the same settings; returns stdout.
pub fn run_cli(binary: &Path, env: &[(String, String)], args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    use std::io::Write;
    let mut child = Command::new(binary)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(mut pipe), Some(input)) = (child.stdin.take(), stdin) {
        pipe.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("latchkey {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts the server and waits until `/readyz` answers; `startup` is spawn → ready.
pub async fn start(binary: &Path, env: &[(String, String)]) -> anyhow::Result<ServerProcess> {
    let started = Instant::now();
    let mut child = Command::new(binary)
        .arg("serve")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent
                && let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                && event["fields"]["message"] == "listening"
                && let Some(addr) = event["fields"]["addr"].as_str()
            {
                let _ = tx.send(addr.to_string());
                sent = true;
            } else if line.contains("ERROR") || line.contains("latchkey:") {
                eprintln!("server: {line}");
            }
        }
    });
    let addr = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)))
        .await?
        .context("the server did not start")?;
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    while !http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(ServerProcess { child, base, startup: started.elapsed() })
}

/// CPU seconds (user + system) the process has used so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0 // USER_HZ is 100 on Linux
}

/// (current RSS, peak RSS) in MiB.
pub fn memory_mib(pid: u32) -> (f64, f64) {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return (0.0, 0.0) };
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak-RSS counter so each scenario reports its own peak.
pub fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

//! A ceiling for the database itself: `pgbench` (from the PostgreSQL packages) running
//! the statement one refresh sends PostgreSQL — the joined read of token, session, user
//! and roles with the rotation, one round trip (the client comes from the server's
//! cache) — taken from the server's own code,
//! on Latchkey's own database, over as many connections as the load used. Refresh's
//! rate beside this one tells how much of a refresh is PostgreSQL's (its durable commit
//! above all) and how much is ours.
//!
//! Each pgbench client rotates a token chain of its own: the rotation's answer says
//! whether it rotated, and the script carries the child on to its next transaction (the
//! child's id and hash are a random number, the stored hash of a token the load never
//! presents). A client whose token is gone (its first transaction, or one another
//! client rotated first) takes the next token in the table the statement may rotate
//! (a `spa` session's, unbound, live, of an active user) — a query a real
//! refresh does not make, so it runs only then.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use latchkey_server::store::postgres::READ_AND_ROTATE;
use sea_orm::ConnectionTrait;

use crate::postgres::Database;

/// The newest pgbench the machine's PostgreSQL packages installed.
fn pgbench() -> anyhow::Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no /usr/lib/postgresql: install PostgreSQL's packages (.ci/postgres.sh does)")?
        .filter_map(|entry| Some(entry.ok()?.path().join("bin").join("pgbench")))
        .filter(|path| path.exists())
        .collect();
    found.sort();
    found.pop().context("no pgbench under /usr/lib/postgresql/*/bin")
}

/// The session lifetimes the rotation writes (the server's defaults).
const IDLE_SECS: i64 = 14 * 24 * 3600;
/// A sealed child is this long in the server (base64 of nonce, token and tag).
const SEALED: &str = "pgbench-sealed-child-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123";

/// The script: one refresh's statement, with pgbench variables where the server binds
/// parameters. (The client is read from the server's cache, so nothing is sent for it.)
fn script() -> String {
    // See `READ_AND_ROTATE` for the parameters. Replaced from the highest number down,
    // so `$1` does not eat the front of `$10`.
    let params = [
        ("$14", "'active'".to_string()),
        ("$13", "'active'".to_string()),
        ("$12", "'rotated'".to_string()),
        ("$11", "ARRAY['mfa', 'swk', 'hwk']::text[]".to_string()),
        ("$10", "ARRAY[]::text[]".to_string()),
        ("$9", "NULL".to_string()),
        ("$8", "NULL".to_string()),
        ("$7", format!("'{SEALED}'")),
        ("$6", ":child".to_string()),
        ("$5", ":child".to_string()),
        ("$4", IDLE_SECS.to_string()),
        ("$3", "'spa'".to_string()),
        ("$2", ":now".to_string()),
        ("$1", ":hash".to_string()),
    ];
    let statement = params.iter().fold(READ_AND_ROTATE.to_string(), |sql, (from, to)| sql.replace(from, to));
    // pgbench's \gset needs exactly one row, and the server's statement answers none for
    // an unknown token (a client's first transaction): the same statement, answering
    // only whether it rotated.
    let statement = statement.replace(SERVER_ANSWER, "SELECT (SELECT count(*) FROM inserted) AS rotated");
    format!(
        "\\set child random(1000000000000, 9000000000000000000)\n\
         {statement} \\gset\n\
         \\if :rotated = 1\n\
         \\set hash :child\n\
         \\else\n\
         SELECT t.token_hash AS hash FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id \
         JOIN users u ON u.id = s.user_id WHERE t.state = 'active' AND t.expires_at > :now \
         AND s.client_id = 'spa' AND s.dpop_jkt IS NULL AND s.revoked_at IS NULL \
         AND s.idle_expires_at > :now AND s.absolute_expires_at > :now AND u.status = 'active' \
         ORDER BY t.id OFFSET :client_id LIMIT 1 \\gset\n\
         \\endif\n"
    )
}

/// How the server's statement ends (replaced in the script, see there).
const SERVER_ANSWER: &str = "SELECT r.*, (SELECT count(*) FROM inserted) AS rotated FROM r";

/// Transactions per second of [`script`] over `connections` for `window`, after checking
/// that nearly every transaction did rotate a token (else it measured something cheaper).
pub async fn refresh_statements(database: &Database, connections: usize, window: Duration) -> anyhow::Result<f64> {
    let (tps, transactions) = tokio::task::block_in_place(|| run(database, connections, window))?;
    let db = sea_orm::Database::connect(database.url()).await?;
    // The children pgbench made have a number for an id; the server's are UUIDs.
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) AS made FROM refresh_tokens WHERE id ~ '^[0-9]+$'",
        ))
        .await?
        .context("no count")?;
    let made: i64 = row.try_get("", "made")?;
    db.close().await?;
    if (made as f64) < transactions as f64 * 0.9 {
        bail!("pgbench rotated {made} tokens in {transactions} transactions: its script does not do a refresh's work");
    }
    Ok(tps)
}

/// Runs pgbench: (transactions per second, transactions).
fn run(database: &Database, connections: usize, window: Duration) -> anyhow::Result<(f64, u64)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("refresh.sql");
    std::fs::write(&path, script())?;
    let now = chrono::Utc::now().timestamp();
    let out = Command::new(pgbench()?)
        .args(["--no-vacuum", "--protocol=prepared", "--client", &connections.to_string(), "--jobs", "2"])
        .args(["--time", &window.as_secs().max(1).to_string()])
        .args(["--define", &format!("now={now}"), "--define", "hash=none", "--file"])
        .arg(&path)
        .arg(database.url())
        .output()
        .context("running pgbench")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("pgbench failed: {}{}", String::from_utf8_lossy(&out.stderr).trim(), stdout.trim());
    }
    let tps = stdout
        .lines()
        .find_map(|line| line.strip_prefix("tps = ")?.split_whitespace().next()?.parse::<f64>().ok())
        .with_context(|| format!("no tps in pgbench's output: {stdout}"))?;
    let transactions = stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix("number of transactions actually processed: ")?.split('/').next()?.parse().ok()
        })
        .with_context(|| format!("no transaction count in pgbench's output: {stdout}"))?;
    Ok((tps, transactions))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_binds_every_parameter_of_the_servers_statements() {
        let script = script();
        assert!(!script.contains('$'), "a parameter left unbound: {script}");
        assert!(script.contains("FOR UPDATE"), "the rotation is the server's own statement");
        assert!(script.contains("string_agg"), "and so is the joined read");
        assert!(READ_AND_ROTATE.ends_with(SERVER_ANSWER), "the answer replaced is the server's");
        assert!(!script.contains("SELECT r.*"), "and it was replaced");
    }
}

//! Attempt buckets kept in the database, so a limit holds across every node rather than
//! once per node: the per-username bucket on password and TOTP attempts. Each key holds
//! one number, its GCRA "theoretical arrival time" (Unix milliseconds); taking a token is
//! one conditional upsert, which is cheap next to the Argon2 hash it guards.

use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};

use super::{Db, StoreResult};

/// A bucket's shape: one token per `interval_ms`, up to `burst` at once.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub interval_ms: i64,
    pub burst: i64,
}

impl Shape {
    pub fn per_minute(per_minute: u32, burst: u32) -> Self {
        Self { interval_ms: 60_000 / i64::from(per_minute.max(1)), burst: i64::from(burst.max(1)) }
    }

    /// How far ahead of now the arrival time may run before requests are refused.
    fn tolerance_ms(&self) -> i64 {
        self.interval_ms * (self.burst - 1)
    }
}

/// Takes one token from `key`'s bucket: `Ok(Ok(()))` when there was one, `Ok(Err(secs))`
/// with the seconds until the next one otherwise. Concurrent takers on any node are
/// serialised by the row, so a burst gets exactly `burst` tokens.
pub async fn take(db: &Db, key: &str, now_ms: i64, shape: Shape) -> StoreResult<Result<(), u64>> {
    let backend = db.get_database_backend();
    let (greatest, p) = match backend {
        DbBackend::Postgres => ("GREATEST", ["$1", "$2", "$3", "$4"]),
        _ => ("MAX", ["?1", "?2", "?3", "?4"]),
    };
    let [key_p, now_p, interval_p, tolerance_p] = p;
    let sql = format!(
        "INSERT INTO attempt_buckets (\"key\", tat) VALUES ({key_p}, {now_p} + {interval_p}) \
         ON CONFLICT (\"key\") DO UPDATE SET tat = {greatest}(attempt_buckets.tat, {now_p}) + {interval_p} \
         WHERE attempt_buckets.tat <= {now_p} + {tolerance_p} RETURNING tat"
    );
    let values: [Value; 4] = [key.into(), now_ms.into(), shape.interval_ms.into(), shape.tolerance_ms().into()];
    let txn = super::begin_write(db, super::Starts::WithWrite).await?.changes_no_cached_rows();
    let taken = txn.query_one_raw(Statement::from_sql_and_values(backend, sql, values)).await?.is_some();
    let verdict = if taken {
        Ok(())
    } else {
        let read = format!("SELECT tat FROM attempt_buckets WHERE \"key\" = {key_p}");
        let row = txn.query_one_raw(Statement::from_sql_and_values(backend, read, [key.into()])).await?;
        let tat: i64 = match row {
            Some(row) => row.try_get("", "tat")?,
            None => now_ms,
        };
        let wait_ms = (tat - shape.tolerance_ms() - now_ms).max(1);
        Err(u64::try_from((wait_ms + 999) / 1000).unwrap_or(1).max(1))
    };
    txn.commit().await?;
    Ok(verdict)
}

/// Deletes buckets that are full again (their arrival time has passed): they hold
/// nothing a fresh bucket would not.
pub async fn purge_full(db: &Db, now_ms: i64) -> StoreResult<u64> {
    let backend = db.get_database_backend();
    let p = if backend == DbBackend::Postgres { "$1" } else { "?1" };
    let sql = format!("DELETE FROM attempt_buckets WHERE tat < {p}");
    let txn = super::begin_write(db, super::Starts::WithWrite).await?.changes_no_cached_rows();
    let deleted = txn.execute_raw(Statement::from_sql_and_values(backend, sql, [now_ms.into()])).await?.rows_affected();
    txn.commit().await?;
    Ok(deleted)
}

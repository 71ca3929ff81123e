//! Persistence: the only module that runs queries. Every function takes a
//! `ConnectionTrait` so it works on a pool or inside a transaction, and every
//! multi-step change is one transaction here, not scattered across callers.

pub mod attempts;
pub mod audit;
pub mod authorization;
pub mod clients;
pub mod columns;
pub mod dpop;
pub mod entities;
pub mod keys;
pub mod mail;
pub mod mfa;
pub mod outbox;
pub mod passkeys;
pub mod postgres;
pub mod purge;
pub mod roles;
pub mod sessions;
pub mod sqlite;
pub mod token_store;
pub mod users;

pub use token_store::{Engine, RefreshAttempt, RefreshRead, RotateOutcome, Rotation, TokenStore};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use latchkey_migration::{Migrator, MigratorTrait};
use sea_orm::prelude::async_trait::async_trait;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, ExecResult, QueryResult,
    RuntimeErr, SqlErr, Statement,
};

use crate::config::Config;

/// The database pool, and on SQLite the lock its writers queue on (one per database
/// opened, shared with the inline connections of [`sqlite`], never process-wide, so
/// two servers in one process do not wait on each other). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    conn: DatabaseConnection,
    sqlite_writer: Option<Arc<tokio::sync::Mutex<()>>>,
    /// Writes this process committed through this pool: PostgreSQL's caches empty
    /// themselves when it moves, so this node's own changes are seen by its next read
    /// at once, before their notification comes back (`postgres::cache`).
    local_writes: Arc<AtomicU64>,
}

impl Db {
    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    pub async fn close(self) -> Result<(), DbErr> {
        self.conn.close().await
    }

    /// The writer lock of a SQLite database (`None` on PostgreSQL).
    pub(crate) fn sqlite_writer(&self) -> Option<&Arc<tokio::sync::Mutex<()>>> {
        self.sqlite_writer.as_ref()
    }

    pub(crate) fn connection(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// The count of writes committed through this pool (see the field).
    pub(crate) fn local_writes(&self) -> Arc<AtomicU64> {
        self.local_writes.clone()
    }

    /// Counts a committed write that may change a cached row, or passes an error through.
    fn counted<T>(&self, sql: &str, result: Result<T, DbErr>) -> Result<T, DbErr> {
        if result.is_ok() && writes(sql) && may_change_cached_rows(sql) {
            self.local_writes.fetch_add(1, Ordering::Release);
        }
        result
    }
}

/// Reads go straight to the pool. On SQLite a write sent on its own (not inside a
/// [`WriteTxn`]) first queues on the writer lock like a transaction does: left to
/// SQLite, it would take the file's write lock behind the queue's back, and the writer
/// at the head of the queue would then wait in SQLite's busy handler while holding the
/// lock everyone else queues on.
#[async_trait]
impl ConnectionTrait for Db {
    fn get_database_backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let sql = stmt.sql.clone();
        let _writer = self.queue_if_write(&sql).await?;
        let result = self.conn.execute_raw(stmt).await;
        self.counted(&sql, result)
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let _writer = self.queue_if_write(sql).await?;
        let result = self.conn.execute_unprepared(sql).await;
        self.counted(sql, result)
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let sql = stmt.sql.clone();
        let _writer = self.queue_if_write(&sql).await?;
        let result = self.conn.query_one_raw(stmt).await;
        self.counted(&sql, result)
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let sql = stmt.sql.clone();
        let _writer = self.queue_if_write(&sql).await?;
        let result = self.conn.query_all_raw(stmt).await;
        self.counted(&sql, result)
    }

    fn support_returning(&self) -> bool {
        self.conn.support_returning()
    }
}

impl Db {
    /// On SQLite, for a statement that writes (`INSERT`, `UPDATE`, `DELETE`, `REPLACE`,
    /// with or without `RETURNING`), waits for the writer lock — for at most the busy
    /// timeout, as SQLite itself would wait for another writer, so a write issued while
    /// the same task holds a transaction fails as `SQLITE_BUSY` would instead of hanging.
    async fn queue_if_write(&self, sql: &str) -> Result<Option<tokio::sync::MutexGuard<'_, ()>>, DbErr> {
        let Some(lock) = self.sqlite_writer.as_ref() else { return Ok(None) };
        if !writes(sql) {
            return Ok(None);
        }
        match tokio::time::timeout(SQLITE_BUSY_TIMEOUT, lock.lock()).await {
            Ok(guard) => Ok(Some(guard)),
            // The pool's own time-out error: the store reports it as "unavailable" (503).
            Err(_) => Err(DbErr::ConnectionAcquire(sea_orm::error::ConnAcquireErr::Timeout)),
        }
    }
}

/// Whether a statement may change a row PostgreSQL's caches hold (sessions, users,
/// clients, roles and their links — `role` covers `roles`, `user_roles`, `client_roles`
/// and `role_permissions`), judged by the table names it mentions: a superset
/// (`sso_sessions` counts too), so a false match only costs the node its caches.
fn may_change_cached_rows(sql: &str) -> bool {
    ["sessions", "users", "clients", "role"].iter().any(|table| sql.contains(table))
}

/// Whether a statement changes rows, judged by its first keyword.
fn writes(sql: &str) -> bool {
    let first = sql.trim_start().split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or_default();
    ["INSERT", "UPDATE", "DELETE", "REPLACE"].iter().any(|verb| first.eq_ignore_ascii_case(verb))
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint rejected the write.
    #[error("a record with the same key already exists")]
    Conflict,
    /// A record the write refers to does not exist (e.g. an unknown role name).
    #[error("unknown {0}")]
    Missing(String),
    /// The change would leave no active user holding the `admin` role.
    #[error("the last active admin cannot be removed, disabled or lose the admin role")]
    LastAdmin,
    /// The database could not be reached (down, restarting, pool exhausted).
    #[error("database unavailable: {0}")]
    Unavailable(DbErr),
    #[error("database error: {0}")]
    Db(DbErr),
}

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
            return StoreError::Conflict;
        }
        match &err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => StoreError::Unavailable(err),
            DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))
                if matches!(
                    e.as_ref(),
                    sea_orm::sqlx::Error::Io(_) | sea_orm::sqlx::Error::PoolTimedOut | sea_orm::sqlx::Error::PoolClosed
                ) =>
            {
                StoreError::Unavailable(err)
            }
            _ => StoreError::Db(err),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A write transaction. On SQLite, which allows one writer at a time, it also holds
/// the database's writer lock ([`Db`]), so concurrent writers queue fairly on an async mutex
/// instead of spinning in SQLite's busy handler (whose sleeps of up to 100 ms made the
/// refresh p99 ten times the median). Other processes on the same file still meet the
/// busy timeout. On PostgreSQL it is a plain transaction.
pub struct WriteTxn {
    txn: sea_orm::DatabaseTransaction,
    _writer: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// Counted at commit, unless the transaction says it changes no cached row.
    local_writes: Option<Arc<AtomicU64>>,
}

/// How a write transaction begins, which decides whether SQLite's write lock must be
/// taken explicitly before the first statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Starts {
    /// Its first statement writes, which takes the lock by itself.
    WithWrite,
    /// It reads first; the lock is taken up front.
    WithRead,
}

pub async fn begin_write(db: &Db, starts: Starts) -> Result<WriteTxn, DbErr> {
    use sea_orm::TransactionTrait;
    let writer = match db.sqlite_writer() {
        Some(lock) => Some(lock.clone().lock_owned().await),
        None => None,
    };
    let txn = db.conn.begin().await?;
    if writer.is_some() && starts == Starts::WithRead {
        // Take SQLite's write lock now (a write statement takes it even when it changes
        // nothing), so the transaction never upgrades a read snapshot that another
        // connection has since overtaken — which fails at once with SQLITE_BUSY_SNAPSHOT.
        txn.execute_unprepared("UPDATE seaql_migrations SET version = version WHERE 1 = 0").await?;
    }
    Ok(WriteTxn { txn, _writer: writer, local_writes: Some(db.local_writes()) })
}

impl WriteTxn {
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await?;
        if let Some(local_writes) = &self.local_writes {
            local_writes.fetch_add(1, Ordering::Release);
        }
        Ok(())
    }

    /// Declares that this transaction changes none of the rows PostgreSQL's caches hold
    /// (it writes audit events, the outbox, signing keys): its commit leaves this node's
    /// caches as they are. (A wrong declaration would only delay this node's own view of
    /// its change until the change's notification comes back.)
    pub fn changes_no_cached_rows(mut self) -> Self {
        self.local_writes = None;
        self
    }

    pub async fn rollback(self) -> Result<(), DbErr> {
        self.txn.rollback().await
    }
}

impl std::ops::Deref for WriteTxn {
    type Target = sea_orm::DatabaseTransaction;

    fn deref(&self) -> &Self::Target {
        &self.txn
    }
}

/// How long a SQLite statement waits for another process's write lock.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the pool. SQLite runs in WAL mode with `synchronous = NORMAL` by default, or
/// `FULL` with `sqlite_synchronous = "full"` (`NORMAL` is durable across
/// application crashes; the WAL is fsynced at checkpoints) and waits up to five seconds
/// for a competing writer instead of failing with `SQLITE_BUSY`.
pub async fn connect(config: &Config) -> Result<Db, DbErr> {
    let conn = connect_pool(config).await?;
    let sqlite_writer = (conn.get_database_backend() == DbBackend::Sqlite).then(Default::default);
    Ok(Db { conn, sqlite_writer, local_writes: Arc::default() })
}

async fn connect_pool(config: &Config) -> Result<DatabaseConnection, DbErr> {
    if let Some(dir) = config.sqlite_parent_dir() {
        crate::security::create_private_dir(&dir)
            .map_err(|e| DbErr::Custom(format!("cannot create data directory {}: {e}", dir.display())))?;
    }
    if let Some(file) = config.sqlite_file() {
        crate::security::create_private_file(&file)
            .map_err(|e| DbErr::Custom(format!("cannot create database file {}: {e}", file.display())))?;
    }
    let synchronous = match config.sqlite_synchronous {
        crate::config::SqliteSynchronousMode::Normal => SqliteSynchronous::Normal,
        crate::config::SqliteSynchronousMode::Full => SqliteSynchronous::Full,
    };
    let mut options = ConnectOptions::new(config.database_url.clone());
    options
        .max_connections(config.db_pool_size)
        .min_connections(1)
        // Fail fast while the database is away: callers answer 503 and retry.
        .acquire_timeout(Duration::from_secs(3))
        .connect_timeout(Duration::from_secs(3))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(move |opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(synchronous)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                // Deleted or overwritten secrets are zeroed in their page where that costs
                // no extra I/O (a wiped private key does not linger in free space).
                .pragma("secure_delete", "FAST")
                .foreign_keys(true)
                .create_if_missing(true)
        });
    Database::connect(options).await
}

pub async fn migrate_up(db: &Db) -> Result<(), DbErr> {
    Migrator::up(&db.conn, None).await
}

/// Applies the first `count` migrations only: a test of a migration's data step starts
/// from the schema before it.
pub async fn migrate_up_first(db: &Db, count: u32) -> Result<(), DbErr> {
    Migrator::up(&db.conn, Some(count)).await
}

pub async fn migrate_down_all(db: &Db) -> Result<(), DbErr> {
    Migrator::down(&db.conn, None).await
}

/// Migrations known to the binary but not yet applied.
pub async fn pending_migrations(db: &Db) -> Result<usize, DbErr> {
    Ok(Migrator::get_pending_migrations(&db.conn).await?.len())
}

/// Copies the whole WAL into the database file and truncates it (SQLite only), holding
/// the database's writer lock so no commit keeps it from completing.
pub async fn checkpoint_truncate(db: &Db) -> StoreResult<()> {
    let _writer = match db.sqlite_writer() {
        Some(lock) => Some(lock.lock().await),
        None => None,
    };
    db.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)").await?;
    Ok(())
}

/// A cheap round trip for readiness checks.
pub async fn ping(db: &Db) -> StoreResult<()> {
    db.execute_unprepared("SELECT 1").await?;
    Ok(())
}

/// A page request: 1-based page number and page size (already validated).
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub number: u64,
    pub size: u64,
}

impl Page {
    /// Rows to skip, saturating: a page past the end is simply empty, never an overflow.
    pub fn offset(&self) -> u64 {
        self.number.saturating_sub(1).saturating_mul(self.size).min(i64::MAX as u64)
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` substring search.
pub fn like_pattern(text: &str) -> String {
    let mut out = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

pub fn is_postgres(db: &impl ConnectionTrait) -> bool {
    db.get_database_backend() == sea_orm::DbBackend::Postgres
}

/// (open connections, idle connections) of the pool, for metrics.
pub fn pool_usage(db: &Db) -> (u32, u32) {
    // The accessors panic on the other engine, so dispatch on the backend first.
    match db.backend() {
        DbBackend::Sqlite => {
            let pool = db.conn.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle() as u32)
        }
        DbBackend::Postgres => {
            let pool = db.conn.get_postgres_connection_pool();
            (pool.size(), pool.num_idle() as u32)
        }
        _ => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sea_orm::{ConnectionTrait, Database};

    use super::{Db, writes};

    #[test]
    fn writes_are_told_by_their_first_keyword() {
        for sql in ["INSERT INTO t VALUES (1)", "  update t SET x = 1", "DELETE FROM t", "REPLACE INTO t VALUES (1)"] {
            assert!(writes(sql), "{sql}");
        }
        for sql in ["SELECT 1", "PRAGMA wal_checkpoint(TRUNCATE)", "", "select * from updates"] {
            assert!(!writes(sql), "{sql}");
        }
    }

    /// A write sent on its own waits for the SQLite writer lock; a read does not.
    #[tokio::test]
    async fn a_standalone_write_queues_on_the_sqlite_writer_lock() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("lock.db").display());
        let db = Db {
            conn: Database::connect(&url).await.unwrap(),
            sqlite_writer: Some(Default::default()),
            local_writes: std::sync::Arc::default(),
        };
        db.execute_unprepared("CREATE TABLE t (x INTEGER)").await.unwrap();

        let held = db.sqlite_writer().unwrap().clone().lock_owned().await;
        let writer = tokio::spawn({
            let db = db.clone();
            async move { db.execute_unprepared("INSERT INTO t VALUES (1)").await.map(|r| r.rows_affected()) }
        });
        assert_eq!(
            db.query_all_raw(sea_orm::Statement::from_string(db.backend(), "SELECT x FROM t")).await.unwrap().len(),
            0
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!writer.is_finished(), "the write went ahead while the writer lock was held");

        drop(held);
        assert_eq!(writer.await.unwrap().unwrap(), 1, "the write runs once the lock is free");
    }
}

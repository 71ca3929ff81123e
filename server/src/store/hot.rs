//! The queries on the hot paths — the bearer check of every authenticated request,
//! refresh-token rotation and the client lookup of every token request — and where
//! they run.
//!
//! On PostgreSQL they go through sea-orm like every other query. On SQLite they run on
//! this process's own rusqlite connections, inline on the calling task. sqlx's SQLite
//! driver runs each connection on a worker thread, and the channel send plus futex
//! wake-up each way cost more than the indexed lookup itself: profiled under the `me`
//! load, about 40% of the server's CPU went to switching threads. A read in WAL mode
//! never waits for a writer, so an indexed lookup done inline is as short as the other
//! CPU work a request does inline (verifying a signature takes longer); a page missing
//! from the OS cache costs a disk read, which then holds the worker instead of sqlx's
//! thread (the hot tables' index pages stay cached in practice). The rotation
//! transaction runs while holding this process's SQLite writer lock (the one
//! [`super::begin_write`] takes), so it does not wait on this process's other writers;
//! only another process holding the file's write lock (a CLI command) can make it
//! wait, for at most the busy timeout.
//!
//! The SQL here mirrors the sea-orm queries in [`super::sessions`], [`super::users`]
//! and [`super::clients`]; the integration suite runs on both engines, so each path is
//! exercised by the same tests.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use sea_orm::DbErr;

use super::clients::{self, ClientRow};
use super::sessions::{self, NewRefreshToken, RefreshTokenRow, RotateOutcome, SessionRow, TOKEN_ACTIVE, TOKEN_ROTATED};
use super::users::{self, UserRow};
use super::{Db, StoreError, StoreResult};

/// This process's inline SQLite connections: a few readers and one writer, and a
/// thread that checkpoints the writer's commits into the database file.
pub struct InlineSqlite {
    readers: Box<[Mutex<Connection>]>,
    next_reader: AtomicUsize,
    writer: Mutex<Connection>,
    commits: AtomicUsize,
    checkpoint: std::sync::mpsc::SyncSender<()>,
}

/// Inline commits between two checkpoints (a few MiB of WAL at most).
const COMMITS_PER_CHECKPOINT: usize = 256;

impl std::fmt::Debug for InlineSqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineSqlite").field("readers", &self.readers.len()).finish_non_exhaustive()
    }
}

impl InlineSqlite {
    /// Opens connections to the database file sqlx already opened (and migrated).
    /// `None` for an in-memory database, which other connections cannot see.
    pub fn open_for(
        db: &Db,
        readers: usize,
        busy_timeout: Duration,
        synchronous: crate::config::SqliteSynchronousMode,
    ) -> Result<Option<Self>, DbErr> {
        if db.get_database_backend() != sea_orm::DbBackend::Sqlite {
            return Ok(None);
        }
        let options = db.get_sqlite_connection_pool().connect_options();
        let path = options.get_filename();
        if path.as_os_str().is_empty() || path == Path::new(":memory:") {
            return Ok(None);
        }
        let open = || -> rusqlite::Result<Connection> {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
            )?;
            // The same settings sqlx gives its connections (journal_mode is the file's).
            conn.busy_timeout(busy_timeout)?;
            conn.pragma_update(None, "synchronous", synchronous.pragma())?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            conn.set_prepared_statement_cache_capacity(32);
            Ok(conn)
        };
        let sqlite = |e: rusqlite::Error| DbErr::Custom(format!("opening the inline SQLite connections: {e}"));
        let readers = (0..readers.max(1)).map(|_| open().map(Mutex::new)).collect::<Result<Box<[_]>, _>>();
        let writer = open().map_err(sqlite)?;
        // A commit that crosses the auto-checkpoint threshold would checkpoint (and
        // fsync) on the committing connection, blocking an async worker. The writer
        // leaves that to a thread of its own instead.
        writer.pragma_update(None, "wal_autocheckpoint", 0).map_err(sqlite)?;
        let checkpointer = open().map_err(sqlite)?;
        let (checkpoint, requests) = std::sync::mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                // Ends when the connections are dropped (the sender goes with them).
                while requests.recv().is_ok() {
                    // Holding this process's writer lock, so no commit lands while the
                    // checkpoint runs: it then copies the whole WAL back, and the next
                    // writer starts the WAL over instead of appending to it (checkpoints
                    // racing a steady stream of commits never caught up, and the WAL grew
                    // without bound). Writers wait for it on the async lock, not on a
                    // blocked worker thread.
                    let _writer = super::SQLITE_WRITER.blocking_lock();
                    if let Err(e) = checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::warn!(error = %e, "SQLite checkpoint failed");
                    }
                }
            })
            .map_err(|e| DbErr::Custom(format!("starting the SQLite checkpoint thread: {e}")))?;
        Ok(Some(Self {
            readers: readers.map_err(sqlite)?,
            next_reader: AtomicUsize::new(0),
            writer: Mutex::new(writer),
            commits: AtomicUsize::new(0),
            checkpoint,
        }))
    }

    /// Runs `query` on a free reader (or waits for one; each is held only for the
    /// duration of one synchronous query, never across an await).
    fn read<T>(&self, query: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> StoreResult<T> {
        let count = self.readers.len();
        let first = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let conn = (0..count)
            .find_map(|i| self.readers[(first + i) % count].try_lock().ok())
            .unwrap_or_else(|| lock(&self.readers[first % count]));
        query(&conn).map_err(store_error)
    }

    /// The writer connection's `synchronous` setting (1 = NORMAL, 2 = FULL), which decides
    /// whether a committed rotation survives a power cut.
    pub fn writer_synchronous(&self) -> StoreResult<i64> {
        lock(&self.writer).query_row("PRAGMA synchronous", [], |row| row.get(0)).map_err(store_error)
    }

    fn write<T>(&self, change: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> StoreResult<T> {
        let result = change(&mut lock(&self.writer)).map_err(store_error);
        if self.commits.fetch_add(1, Ordering::Relaxed) % COMMITS_PER_CHECKPOINT == COMMITS_PER_CHECKPOINT - 1 {
            // Full means a checkpoint is already due; nothing is lost by skipping.
            let _ = self.checkpoint.try_send(());
        }
        result
    }
}

/// A poisoned connection mutex only means a query panicked; the connection is fine.
fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn store_error(err: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match err.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) if err.to_string().contains("UNIQUE") => StoreError::Conflict,
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::CannotOpen) => {
            StoreError::Unavailable(DbErr::Custom(err.to_string()))
        }
        _ => StoreError::Db(DbErr::Custom(err.to_string())),
    }
}

/// What a refresh reads: the presented token, its session, the session's user (gone
/// if deleted) and that user's roles.
#[derive(Debug)]
pub struct RefreshRead {
    pub token: RefreshTokenRow,
    pub session: SessionRow,
    pub user: Option<UserRow>,
    pub roles: Vec<String>,
}

/// The hot-path queries of one process, on whichever engine it runs.
#[derive(Clone, Copy)]
pub struct Hot<'a> {
    db: &'a Db,
    inline: Option<&'a InlineSqlite>,
}

const USER_COLUMNS: &str = "u.id, u.username, u.username_normalized, u.email, u.password_hash, u.status, \
     u.created_at, u.updated_at, u.failed_logins, u.locked_until, u.totp_failures, u.totp_locked_until, \
     u.totp_secret_encrypted, u.totp_pending_encrypted, u.totp_enabled, u.totp_last_step";
const SESSION_COLUMNS: &str = "s.id, s.user_id, s.client_id, s.created_at, s.last_used_at, s.idle_expires_at, \
     s.absolute_expires_at, s.revoked_at, s.revoked_reason, s.ip, s.user_agent, s.amr, s.auth_time, s.scope";
const TOKEN_COLUMNS: &str =
    "t.id, t.session_id, t.parent_id, t.token_hash, t.state, t.created_at, t.used_at, t.expires_at";
const SESSION_WIDTH: usize = 14;
const TOKEN_WIDTH: usize = 8;
const USER_WIDTH: usize = 16;

/// `t.id, …` as `t.id AS t_id, …`: the prefixes sea-orm's `FromQueryResult` reads.
fn aliased(columns: &str) -> String {
    columns.split(", ").map(|c| format!("{c} AS {}", c.replace('.', "_"))).collect::<Vec<_>>().join(", ")
}

/// Token, session, user and the user's roles by token hash. `$1` is a positional
/// parameter on PostgreSQL and a named one that binds first on SQLite; the engines
/// differ only in the name of the string aggregate.
fn token_for_refresh_sql(aggregate: &str) -> String {
    format!(
        "SELECT {}, {}, {}, (SELECT {aggregate}(r.role_name, ' ') FROM user_roles r WHERE r.user_id = s.user_id) \
         AS roles FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id \
         LEFT JOIN users u ON u.id = s.user_id WHERE t.token_hash = $1",
        aliased(TOKEN_COLUMNS),
        aliased(SESSION_COLUMNS),
        aliased(USER_COLUMNS)
    )
}
// The statement texts are built once: they key the prepared-statement cache, and the
// bearer check runs one on every request.
static SESSION_WITH_USER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {SESSION_COLUMNS}, {USER_COLUMNS} FROM sessions s LEFT JOIN users u ON u.id = s.user_id WHERE s.id = ?1"
    )
});
static TOKEN_WITH_SESSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {TOKEN_COLUMNS}, {SESSION_COLUMNS} FROM refresh_tokens t \
         JOIN sessions s ON s.id = t.session_id WHERE t.token_hash = ?1"
    )
});
static TOKEN_FOR_REFRESH_SQLITE: LazyLock<String> = LazyLock::new(|| token_for_refresh_sql("group_concat"));
static TOKEN_FOR_REFRESH_POSTGRES: LazyLock<String> = LazyLock::new(|| token_for_refresh_sql("string_agg"));

/// Role names are single words (see `rbac`), so a space separates them; sorted here
/// because neither aggregate promises an order.
fn split_roles(joined: Option<String>) -> Vec<String> {
    let mut roles: Vec<String> = joined.unwrap_or_default().split_ascii_whitespace().map(str::to_string).collect();
    roles.sort_unstable();
    roles
}

fn user_at(row: &Row<'_>, at: usize) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        id: row.get(at)?,
        username: row.get(at + 1)?,
        username_normalized: row.get(at + 2)?,
        email: row.get(at + 3)?,
        password_hash: row.get(at + 4)?,
        status: row.get(at + 5)?,
        created_at: row.get(at + 6)?,
        updated_at: row.get(at + 7)?,
        failed_logins: row.get(at + 8)?,
        locked_until: row.get(at + 9)?,
        totp_failures: row.get(at + 10)?,
        totp_locked_until: row.get(at + 11)?,
        totp_secret_encrypted: row.get(at + 12)?,
        totp_pending_encrypted: row.get(at + 13)?,
        totp_enabled: row.get(at + 14)?,
        totp_last_step: row.get(at + 15)?,
    })
}

/// The user of a `LEFT JOIN users`: absent when its id column is NULL.
fn joined_user_at(row: &Row<'_>, at: usize) -> rusqlite::Result<Option<UserRow>> {
    let user_id: Option<String> = row.get(at)?;
    user_id.map(|_| user_at(row, at)).transpose()
}

fn session_at(row: &Row<'_>, at: usize) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: row.get(at)?,
        user_id: row.get(at + 1)?,
        client_id: row.get(at + 2)?,
        created_at: row.get(at + 3)?,
        last_used_at: row.get(at + 4)?,
        idle_expires_at: row.get(at + 5)?,
        absolute_expires_at: row.get(at + 6)?,
        revoked_at: row.get(at + 7)?,
        revoked_reason: row.get(at + 8)?,
        ip: row.get(at + 9)?,
        user_agent: row.get(at + 10)?,
        amr: row.get(at + 11)?,
        auth_time: row.get(at + 12)?,
        scope: row.get(at + 13)?,
    })
}

fn token_at(row: &Row<'_>, at: usize) -> rusqlite::Result<RefreshTokenRow> {
    Ok(RefreshTokenRow {
        id: row.get(at)?,
        session_id: row.get(at + 1)?,
        parent_id: row.get(at + 2)?,
        token_hash: row.get(at + 3)?,
        state: row.get(at + 4)?,
        created_at: row.get(at + 5)?,
        used_at: row.get(at + 6)?,
        expires_at: row.get(at + 7)?,
    })
}

fn role_names(conn: &Connection, sql: &str, owner: &str) -> rusqlite::Result<Vec<String>> {
    let mut statement = conn.prepare_cached(sql)?;
    let names = statement.query_map([owner], |row| row.get(0))?;
    names.collect()
}

impl<'a> Hot<'a> {
    pub fn new(db: &'a Db, inline: Option<&'a InlineSqlite>) -> Self {
        Self { db, inline }
    }

    /// A session and its user (the bearer-token check of every request).
    pub async fn session_with_user(&self, id: &str) -> StoreResult<Option<(SessionRow, Option<UserRow>)>> {
        let Some(inline) = self.inline else { return sessions::find_session_with_user(self.db, id).await };
        inline.read(|conn| {
            conn.prepare_cached(&SESSION_WITH_USER)?
                .query_row([id], |row| Ok((session_at(row, 0)?, joined_user_at(row, SESSION_WIDTH)?)))
                .optional()
        })
    }

    /// Everything a refresh reads before it rotates, in one query on either engine.
    pub async fn token_for_refresh(&self, token_hash: &str) -> StoreResult<Option<RefreshRead>> {
        let Some(inline) = self.inline else {
            use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult};
            let backend = self.db.get_database_backend();
            let sql = match backend {
                DbBackend::Postgres => TOKEN_FOR_REFRESH_POSTGRES.as_str(),
                _ => TOKEN_FOR_REFRESH_SQLITE.as_str(),
            };
            let statement = sea_orm::Statement::from_sql_and_values(backend, sql, [token_hash.into()]);
            let Some(row) = self.db.query_one_raw(statement).await? else { return Ok(None) };
            return Ok(Some(RefreshRead {
                token: RefreshTokenRow::from_query_result(&row, "t_")?,
                session: SessionRow::from_query_result(&row, "s_")?,
                user: UserRow::from_query_result_optional(&row, "u_")?,
                roles: split_roles(row.try_get("", "roles")?),
            }));
        };
        inline.read(|conn| {
            conn.prepare_cached(TOKEN_FOR_REFRESH_SQLITE.as_str())?
                .query_row([token_hash], |row| {
                    let at_user = TOKEN_WIDTH + SESSION_WIDTH;
                    Ok(RefreshRead {
                        token: token_at(row, 0)?,
                        session: session_at(row, TOKEN_WIDTH)?,
                        user: joined_user_at(row, at_user)?,
                        roles: split_roles(row.get(at_user + USER_WIDTH)?),
                    })
                })
                .optional()
        })
    }

    /// The refresh token with this hash and its session.
    pub async fn token_with_session(&self, token_hash: &str) -> StoreResult<Option<(RefreshTokenRow, SessionRow)>> {
        let Some(inline) = self.inline else { return sessions::find_token(self.db, token_hash).await };
        inline.read(|conn| {
            conn.prepare_cached(&TOKEN_WITH_SESSION)?
                .query_row([token_hash], |row| Ok((token_at(row, 0)?, session_at(row, TOKEN_WIDTH)?)))
                .optional()
        })
    }

    /// The user's role names, sorted.
    pub async fn user_role_names(&self, user_id: &str) -> StoreResult<Vec<String>> {
        let Some(inline) = self.inline else { return users::role_names(self.db, user_id).await };
        inline.read(|conn| {
            role_names(conn, "SELECT role_name FROM user_roles WHERE user_id = ?1 ORDER BY role_name", user_id)
        })
    }

    pub async fn client(&self, client_id: &str) -> StoreResult<Option<ClientRow>> {
        let Some(inline) = self.inline else { return clients::find(self.db, client_id).await };
        inline.read(|conn| {
            conn.prepare_cached(
                "SELECT client_id, name, client_type, secret_hash, grant_types, scopes, audience, created_at, \
                 updated_at FROM clients WHERE client_id = ?1",
            )?
            .query_row([client_id], |row| {
                Ok(ClientRow {
                    client_id: row.get(0)?,
                    name: row.get(1)?,
                    client_type: row.get(2)?,
                    secret_hash: row.get(3)?,
                    grant_types: row.get(4)?,
                    scopes: row.get(5)?,
                    audience: row.get(6)?,
                    created_at: row.get(7)?,
                    updated_at: row.get(8)?,
                })
            })
            .optional()
        })
    }

    /// The client's role names (carried by its `client_credentials` tokens), sorted.
    pub async fn client_role_names(&self, client_id: &str) -> StoreResult<Vec<String>> {
        let Some(inline) = self.inline else { return clients::role_names(self.db, client_id).await };
        inline.read(|conn| {
            role_names(conn, "SELECT role_name FROM client_roles WHERE client_id = ?1 ORDER BY role_name", client_id)
        })
    }

    /// Rotates `token_id` into `child` and touches the session, all or nothing, as
    /// compare-and-swap updates (see [`sessions::rotate`]).
    pub async fn rotate(
        &self,
        token_id: &str,
        session_id: &str,
        now: i64,
        idle_expires_at: i64,
        child: NewRefreshToken,
    ) -> StoreResult<RotateOutcome> {
        let Some(inline) = self.inline else {
            return sessions::rotate(self.db, token_id, session_id, now, idle_expires_at, child).await;
        };
        let writer = super::SQLITE_WRITER.lock().await;
        let outcome = inline.write(|conn| {
            // IMMEDIATE: take the file's write lock before the first read.
            let txn = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let swapped = txn
                .prepare_cached("UPDATE refresh_tokens SET state = ?1, used_at = ?2 WHERE id = ?3 AND state = ?4")?
                .execute(params![TOKEN_ROTATED, now, token_id, TOKEN_ACTIVE])?;
            if swapped != 1 {
                return Ok(RotateOutcome::TokenNotActive); // dropping `txn` rolls back
            }
            let touched = txn
                .prepare_cached(
                    "UPDATE sessions SET last_used_at = ?1, idle_expires_at = ?2 WHERE id = ?3 \
                     AND revoked_at IS NULL AND idle_expires_at > ?1 AND absolute_expires_at > ?1",
                )?
                .execute(params![now, idle_expires_at, session_id])?;
            if touched != 1 {
                return Ok(RotateOutcome::SessionNotActive);
            }
            txn.prepare_cached(
                "INSERT INTO refresh_tokens (id, session_id, parent_id, token_hash, state, created_at, used_at, \
                 expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7)",
            )?
            .execute(params![
                child.id,
                session_id,
                child.parent_id,
                child.token_hash,
                TOKEN_ACTIVE,
                now,
                child.expires_at
            ])?;
            txn.commit()?;
            Ok(RotateOutcome::Rotated)
        });
        drop(writer);
        // The writer lock now belongs to the next waiting task, but tokio runs that
        // task only once this one yields. Yield here, or each rotation would wait for
        // the previous request to sign its token and answer.
        tokio::task::yield_now().await;
        outcome
    }
}

//! The SQLite engine of the token paths ([`TokenStore`]): the queries run on this
//! process's own rusqlite connections, inline on the calling task. sqlx's SQLite
//! driver runs each connection on a worker thread, and the channel send plus futex
//! wake-up each way cost more than the indexed lookup itself: profiled under the `me`
//! load, about 40% of the server's CPU went to switching threads. A read in WAL mode
//! never waits for a writer, so an indexed lookup done inline is as short as the other
//! CPU work a request does inline (verifying a signature takes longer); a page missing
//! from the OS cache costs a disk read, which then holds the worker instead of sqlx's
//! thread (the hot tables' index pages stay cached in practice). The rotation
//! transaction runs while holding the database's writer lock (the one
//! [`super::begin_write`] takes), so it does not wait on this process's other writers;
//! only another process holding the file's write lock (a CLI command) can make it
//! wait, for at most the busy timeout.
//!
//! Column lists come from the sea-orm entities ([`super::columns`]); the row mappers
//! ([`FromRow`]) are checked against them, so a new column cannot be misread by
//! position.

use crate::store::entities::TokenState;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use sea_orm::DbErr;

use super::audit::StoredEvent;
use super::authorization::{CodeIssue, CodeRow, Grant, InteractionRow, Redemption, SsoSessionRow};
use super::clients::ClientRow;
use super::columns;
use super::entities::{
    authorization_codes, authorization_requests, clients, refresh_tokens, sessions, sso_sessions, users,
};
use super::sessions::{NewRefreshToken, NewSession};
use super::sessions::{RefreshTokenRow, SessionRow};
use super::token_store::{RefreshAttempt, RefreshRead, RotateOutcome, Rotation, TokenStore};
use super::users::UserRow;
use super::{Db, StoreError, StoreResult};

/// This process's inline SQLite connections to one database file: a few readers and
/// one writer, and a thread that checkpoints the writer's commits into the file.
pub struct SqliteTokens {
    /// The database's writer lock, shared with sea-orm's write transactions.
    writer_lock: Arc<tokio::sync::Mutex<()>>,
    readers: Box<[Mutex<Connection>]>,
    next_reader: AtomicUsize,
    writer: Mutex<Connection>,
    commits: AtomicUsize,
    checkpoint: std::sync::mpsc::SyncSender<()>,
    /// DPoP proofs waiting for the writer (see [`super::dpop`]).
    proofs: super::dpop::ProofQueue,
}

/// Inline commits between two checkpoints (a few MiB of WAL at most).
const COMMITS_PER_CHECKPOINT: usize = 256;

impl std::fmt::Debug for SqliteTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteTokens").field("readers", &self.readers.len()).finish_non_exhaustive()
    }
}

impl SqliteTokens {
    /// Opens connections to the database file sqlx already opened (and migrated). An
    /// in-memory database, which other connections cannot see, is refused (config
    /// validation refuses it first).
    pub fn open(db: &Db, readers: usize, synchronous: crate::config::SqliteSynchronousMode) -> StoreResult<Self> {
        let not_a_file = || StoreError::Db(DbErr::Custom("the SQLite engine needs a database file".into()));
        let writer_lock = db.sqlite_writer().cloned().ok_or_else(not_a_file)?;
        let options = db.connection().get_sqlite_connection_pool().connect_options();
        let path = options.get_filename();
        if path.as_os_str().is_empty() || path == Path::new(":memory:") {
            return Err(not_a_file());
        }
        let busy_timeout = super::SQLITE_BUSY_TIMEOUT;
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
        let sqlite =
            |e: rusqlite::Error| StoreError::Db(DbErr::Custom(format!("opening the inline SQLite connections: {e}")));
        let readers = (0..readers.max(1)).map(|_| open().map(Mutex::new)).collect::<Result<Box<[_]>, _>>();
        let writer = open().map_err(sqlite)?;
        // A commit that crosses the auto-checkpoint threshold would checkpoint (and
        // fsync) on the committing connection, blocking an async worker. The writer
        // leaves that to a thread of its own instead.
        writer.pragma_update(None, "wal_autocheckpoint", 0).map_err(sqlite)?;
        let checkpointer = open().map_err(sqlite)?;
        let checkpoint_lock = writer_lock.clone();
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
                    let _writer = checkpoint_lock.blocking_lock();
                    if let Err(e) = checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::warn!(error = %e, "SQLite checkpoint failed");
                    }
                }
            })
            .map_err(|e| StoreError::Db(DbErr::Custom(format!("starting the SQLite checkpoint thread: {e}"))))?;
        Ok(Self {
            writer_lock,
            readers: readers.map_err(sqlite)?,
            next_reader: AtomicUsize::new(0),
            writer: Mutex::new(writer),
            commits: AtomicUsize::new(0),
            checkpoint,
            proofs: super::dpop::ProofQueue::default(),
        })
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

/// A row of an entity read from positional columns, in the entity's column order (the
/// order [`columns::aliased`] selects them in). Each implementation names the entity's
/// fields once, in [`from_row!`]: the struct literal makes the compiler check that
/// every field is read exactly once, and a test checks the order against the entity.
/// (Filling a sea-orm `ActiveModel` column by column did the same generically but cost
/// the bearer check about a tenth of its throughput in conversions.)
trait FromRow: Sized {
    const COLUMNS: &'static [&'static str];

    fn at(row: &Row<'_>, at: usize) -> rusqlite::Result<Self>;

    /// The entity of a `LEFT JOIN`: absent when its first (key) column is NULL.
    fn joined_at(row: &Row<'_>, at: usize) -> rusqlite::Result<Option<Self>> {
        match row.get_ref(at)? {
            rusqlite::types::ValueRef::Null => Ok(None),
            _ => Self::at(row, at).map(Some),
        }
    }
}

macro_rules! from_row {
    ($model:ty { $($field:ident),+ $(,)? }) => {
        impl FromRow for $model {
            const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),+];

            #[allow(unused_assignments)] // the last field's increment is never read
            fn at(row: &Row<'_>, at: usize) -> rusqlite::Result<Self> {
                let mut index = at;
                Ok(Self {
                    $($field: {
                        let value = row.get(index)?;
                        index += 1;
                        value
                    },)+
                })
            }
        }
    };
}

from_row!(RefreshTokenRow {
    id,
    session_id,
    parent_id,
    token_hash,
    state,
    created_at,
    used_at,
    expires_at,
    child_sealed
});
from_row!(SessionRow {
    id,
    user_id,
    client_id,
    created_at,
    last_used_at,
    idle_expires_at,
    absolute_expires_at,
    revoked_at,
    revoked_reason,
    ip,
    user_agent,
    amr,
    auth_time,
    scope,
    sso_session_id,
    dpop_jkt,
});
from_row!(UserRow {
    id,
    username,
    username_normalized,
    email,
    password_hash,
    status,
    created_at,
    updated_at,
    failed_logins,
    locked_until,
    totp_failures,
    totp_locked_until,
    totp_secret_encrypted,
    totp_pending_encrypted,
    totp_enabled,
    totp_last_step,
    email_verified,
    self_registered,
});
from_row!(ClientRow {
    client_id,
    name,
    client_type,
    secret_hash,
    grant_types,
    scopes,
    audience,
    created_at,
    updated_at,
    redirect_uris,
    post_logout_redirect_uris,
    first_party,
    allowed_origins,
    role_filter,
    token_endpoint_auth_method,
    backchannel_logout_uri,
    backchannel_logout_session_required,
    dpop_bound_access_tokens,
});

from_row!(SsoSessionRow {
    id,
    token_hash,
    user_id,
    created_at,
    last_seen_at,
    idle_expires_at,
    absolute_expires_at,
    auth_time,
    amr,
    ip,
    user_agent,
    revoked_at,
    revoked_reason,
});
from_row!(InteractionRow {
    id,
    browser_hash,
    client_id,
    params,
    user_id,
    amr,
    auth_time,
    stage,
    notice,
    created_at,
    expires_at,
});
from_row!(CodeRow {
    code_hash,
    client_id,
    user_id,
    sso_session_id,
    redirect_uri,
    code_challenge,
    scope,
    nonce,
    auth_time,
    amr,
    created_at,
    expires_at,
    used_at,
    session_id,
    dpop_jkt,
});

// The statement texts are built once: they key the prepared-statement cache, and the
// bearer check runs one on every request.
static SESSION_WITH_USER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, {} FROM sessions s LEFT JOIN users u ON u.id = s.user_id WHERE s.id = ?1",
        columns::aliased::<sessions::Entity>("s"),
        columns::aliased::<users::Entity>("u"),
    )
});
static TOKEN_WITH_SESSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, {} FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id WHERE t.token_hash = ?1",
        columns::aliased::<refresh_tokens::Entity>("t"),
        columns::aliased::<sessions::Entity>("s"),
    )
});
static CHILD_OF: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {} FROM refresh_tokens t WHERE t.parent_id = ?1", columns::aliased::<refresh_tokens::Entity>("t"))
});
static TOKEN_FOR_REFRESH: LazyLock<String> = LazyLock::new(|| columns::token_for_refresh_sql("group_concat"));
static CLIENT: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {} FROM clients c WHERE c.client_id = ?1", columns::aliased::<clients::Entity>("c"))
});

static USER_WITH_ROLES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, (SELECT group_concat(r.role_name, ' ') FROM user_roles r WHERE r.user_id = u.id) AS roles \
         FROM users u WHERE u.id = ?1",
        columns::aliased::<users::Entity>("u"),
    )
});
static SSO_SESSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, {} FROM sso_sessions s LEFT JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?1",
        columns::aliased::<sso_sessions::Entity>("s"),
        columns::aliased::<users::Entity>("u"),
    )
});
static SPEND_CODE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE authorization_codes SET used_at = ?1, session_id = ?2 WHERE code_hash = ?3 \
         AND used_at IS NULL RETURNING {}",
        columns::names::<authorization_codes::Entity>(),
    )
});
static INTERACTION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM authorization_requests a WHERE a.id = ?1",
        columns::aliased::<authorization_requests::Entity>("a"),
    )
});
static CODE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM authorization_codes c WHERE c.code_hash = ?1",
        columns::aliased::<authorization_codes::Entity>("c"),
    )
});

fn insert_code(conn: &Connection, code: &CodeRow) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO authorization_codes (code_hash, client_id, user_id, sso_session_id, redirect_uri, \
         code_challenge, scope, nonce, auth_time, amr, created_at, expires_at, used_at, session_id, dpop_jkt) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        code.code_hash,
        code.client_id,
        code.user_id,
        code.sso_session_id,
        code.redirect_uri,
        code.code_challenge,
        code.scope,
        code.nonce,
        code.auth_time,
        code.amr,
        code.created_at,
        code.expires_at,
        code.used_at,
        code.session_id,
        code.dpop_jkt,
    ])?;
    Ok(())
}

fn insert_session(conn: &Connection, session: &NewSession) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO sessions (id, user_id, client_id, created_at, last_used_at, idle_expires_at, \
         absolute_expires_at, revoked_at, revoked_reason, ip, user_agent, amr, auth_time, scope, sso_session_id, \
         dpop_jkt) VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, NULL, NULL, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        session.id,
        session.user_id,
        session.client_id,
        session.now,
        session.idle_expires_at,
        session.absolute_expires_at,
        session.ip,
        session.user_agent,
        session.amr,
        session.auth_time,
        session.scope,
        session.sso_session_id,
        session.dpop_jkt,
    ])?;
    Ok(())
}

fn insert_refresh_token(
    conn: &Connection,
    session_id: &str,
    now: i64,
    token: &NewRefreshToken,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO refresh_tokens (id, session_id, parent_id, token_hash, state, created_at, used_at, \
         expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7)",
    )?
    .execute(params![
        token.id,
        session_id,
        token.parent_id,
        token.token_hash,
        TokenState::Active.as_str(),
        now,
        token.expires_at
    ])?;
    Ok(())
}

/// The inline twin of [`super::audit::record`]: the event, linked into the chain after
/// the head, which it advances (the writer lock held by the caller serialises it).
fn insert_audit_event(conn: &Connection, event: StoredEvent) -> rusqlite::Result<()> {
    let (seq, previous): (i64, String) = conn
        .prepare_cached("UPDATE audit_chain SET seq = seq + 1 WHERE name = ?1 RETURNING seq, hash")?
        .query_row(params![super::audit::HEAD], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let link = event.content(seq).link(&previous);
    conn.prepare_cached(
        "INSERT INTO audit_events (occurred_at, actor, action, target, ip, outcome, details, chain_seq, chain_hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        event.occurred_at,
        event.actor,
        event.action,
        event.target,
        event.ip,
        event.outcome,
        event.details,
        seq,
        link
    ])?;
    conn.prepare_cached("UPDATE audit_chain SET hash = ?1 WHERE name = ?2")?
        .execute(params![link, super::audit::HEAD])?;
    Ok(())
}

fn role_names(conn: &Connection, sql: &str, owner: &str) -> rusqlite::Result<Vec<String>> {
    let mut statement = conn.prepare_cached(sql)?;
    let names = statement.query_map([owner], |row| row.get(0))?;
    names.collect()
}

impl TokenStore for SqliteTokens {
    async fn session_with_user(&self, session_id: &str) -> StoreResult<Option<(SessionRow, Option<UserRow>)>> {
        let at_user = SessionRow::COLUMNS.len();
        self.read(|conn| {
            conn.prepare_cached(&SESSION_WITH_USER)?
                .query_row([session_id], |row| Ok((SessionRow::at(row, 0)?, UserRow::joined_at(row, at_user)?)))
                .optional()
        })
    }

    async fn read_and_rotate(
        &self,
        token_hash: &str,
        _attempt: &RefreshAttempt,
    ) -> StoreResult<Option<(RefreshRead, bool)>> {
        Ok(self.token_for_refresh(token_hash).await?.map(|read| (read, false)))
    }

    async fn live_session_with_user(
        &self,
        session_id: &str,
        now: i64,
    ) -> StoreResult<Option<(SessionRow, Option<UserRow>)>> {
        Ok(self.session_with_user(session_id).await?.filter(|(session, _)| session.is_live(now)))
    }

    async fn token_for_refresh(&self, token_hash: &str) -> StoreResult<Option<RefreshRead>> {
        let at_session = RefreshTokenRow::COLUMNS.len();
        let at_user = at_session + SessionRow::COLUMNS.len();
        let at_roles = at_user + UserRow::COLUMNS.len();
        self.read(|conn| {
            conn.prepare_cached(&TOKEN_FOR_REFRESH)?
                .query_row([token_hash], |row| {
                    Ok(RefreshRead {
                        token: RefreshTokenRow::at(row, 0)?,
                        session: SessionRow::at(row, at_session)?,
                        user: UserRow::joined_at(row, at_user)?,
                        roles: columns::split_roles(row.get(at_roles)?),
                    })
                })
                .optional()
        })
    }

    async fn token_with_session(&self, token_hash: &str) -> StoreResult<Option<(RefreshTokenRow, SessionRow)>> {
        let at_session = RefreshTokenRow::COLUMNS.len();
        self.read(|conn| {
            conn.prepare_cached(&TOKEN_WITH_SESSION)?
                .query_row([token_hash], |row| Ok((RefreshTokenRow::at(row, 0)?, SessionRow::at(row, at_session)?)))
                .optional()
        })
    }

    async fn child_of(&self, parent_id: &str) -> StoreResult<Option<RefreshTokenRow>> {
        self.read(|conn| {
            conn.prepare_cached(&CHILD_OF)?.query_row([parent_id], |row| RefreshTokenRow::at(row, 0)).optional()
        })
    }

    async fn user_role_names(&self, user_id: &str) -> StoreResult<Vec<String>> {
        self.read(|conn| {
            role_names(conn, "SELECT role_name FROM user_roles WHERE user_id = ?1 ORDER BY role_name", user_id)
        })
    }

    async fn client(&self, client_id: &str) -> StoreResult<Option<ClientRow>> {
        self.read(|conn| conn.prepare_cached(&CLIENT)?.query_row([client_id], |row| ClientRow::at(row, 0)).optional())
    }

    async fn client_role_names(&self, client_id: &str) -> StoreResult<Vec<String>> {
        self.read(|conn| {
            role_names(conn, "SELECT role_name FROM client_roles WHERE client_id = ?1 ORDER BY role_name", client_id)
        })
    }

    async fn permissions_of(&self, role_names: &[String]) -> StoreResult<BTreeSet<String>> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached("SELECT permission FROM role_permissions WHERE role_name = ?1")?;
            let mut permissions = BTreeSet::new();
            for role in role_names {
                for permission in statement.query_map([role], |row| row.get(0))? {
                    permissions.insert(permission?);
                }
            }
            Ok(permissions)
        })
    }

    async fn rotate(&self, rotation: &Rotation) -> StoreResult<RotateOutcome> {
        let writer = self.writer_lock.lock().await;
        let outcome = self.write(|conn| {
            // IMMEDIATE: take the file's write lock before the first read.
            let txn = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let swapped = txn
                .prepare_cached(
                    "UPDATE refresh_tokens SET state = ?1, used_at = ?2, child_sealed = ?5 WHERE id = ?3 AND state = ?4",
                )?
                .execute(params![
                    TokenState::Rotated.as_str(),
                    rotation.now,
                    rotation.token_id,
                    TokenState::Active.as_str(),
                    rotation.child_sealed
                ])?;
            if swapped != 1 {
                return Ok(RotateOutcome::TokenNotActive); // dropping `txn` rolls back
            }
            let touched = txn
                .prepare_cached(
                    "UPDATE sessions SET last_used_at = ?1, idle_expires_at = ?2, dpop_jkt = coalesce(dpop_jkt, ?4) \
                     WHERE id = ?3 AND revoked_at IS NULL AND idle_expires_at > ?1 AND absolute_expires_at > ?1",
                )?
                .execute(params![rotation.now, rotation.idle_expires_at, rotation.session_id, rotation.binds_dpop_jkt])?;
            if touched != 1 {
                return Ok(RotateOutcome::SessionNotActive);
            }
            let child = NewRefreshToken {
                id: rotation.child_id.clone(),
                parent_id: Some(rotation.token_id.clone()),
                token_hash: rotation.child_hash.clone(),
                expires_at: rotation.child_expires_at,
            };
            insert_refresh_token(&txn, &rotation.session_id, rotation.now, &child)?;
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

    async fn user_with_roles(&self, user_id: &str) -> StoreResult<Option<(UserRow, Vec<String>)>> {
        let at_roles = UserRow::COLUMNS.len();
        self.read(|conn| {
            conn.prepare_cached(&USER_WITH_ROLES)?
                .query_row([user_id], |row| Ok((UserRow::at(row, 0)?, columns::split_roles(row.get(at_roles)?))))
                .optional()
        })
    }

    async fn sso_session(&self, token_hash: &str) -> StoreResult<Option<(SsoSessionRow, Option<UserRow>)>> {
        let at_user = SsoSessionRow::COLUMNS.len();
        self.read(|conn| {
            conn.prepare_cached(&SSO_SESSION)?
                .query_row([token_hash], |row| Ok((SsoSessionRow::at(row, 0)?, UserRow::joined_at(row, at_user)?)))
                .optional()
        })
    }

    async fn interaction(&self, id: &str) -> StoreResult<Option<InteractionRow>> {
        self.read(|conn| {
            conn.prepare_cached(&INTERACTION)?.query_row([id], |row| InteractionRow::at(row, 0)).optional()
        })
    }

    async fn first_use_of_proof(&self, proof_key: &str, expires_at: i64) -> StoreResult<bool> {
        let answer = self.proofs.enqueue(proof_key, expires_at);
        let writer = self.writer_lock.lock().await;
        // Every proof queued while this task waited for the writer goes into one
        // transaction (see `store::dpop`). Written and answered without an await in
        // between, so each proof taken is answered before the lock is released; an
        // empty queue means an earlier holder took (and answered) this one.
        let batch = self.proofs.take();
        if !batch.is_empty() {
            let recorded = self.write(|conn| {
                let txn = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let mut inserted = std::collections::HashSet::new();
                for (key, expires_at) in batch.rows() {
                    let added = txn
                        .prepare_cached(
                            "INSERT INTO dpop_proofs (proof_key, expires_at) VALUES (?1, ?2) \
                             ON CONFLICT (proof_key) DO NOTHING",
                        )?
                        .execute(params![key, expires_at])?;
                    if added == 1 {
                        inserted.insert(key.to_string());
                    }
                }
                txn.commit()?;
                Ok(inserted)
            });
            batch.answer(recorded);
        }
        drop(writer);
        tokio::task::yield_now().await; // as in `rotate`
        super::dpop::verdict(answer).await
    }

    async fn issue_code(&self, issue: CodeIssue) -> StoreResult<bool> {
        let writer = self.writer_lock.lock().await;
        let issued = self.write(|conn| {
            let txn = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if let Some(interaction) = &issue.finishes {
                let deleted =
                    txn.prepare_cached("DELETE FROM authorization_requests WHERE id = ?1")?.execute([interaction])?;
                if deleted != 1 {
                    return Ok(false);
                }
            }
            insert_code(&txn, &issue.code)?;
            if let Some(touch) = &issue.touch {
                txn.prepare_cached(
                    "UPDATE sso_sessions SET last_seen_at = ?1, idle_expires_at = ?2 \
                     WHERE id = ?3 AND revoked_at IS NULL",
                )?
                .execute(params![touch.now, touch.idle_expires_at, touch.id])?;
            }
            insert_audit_event(&txn, issue.event.into())?;
            txn.commit()?;
            Ok(true)
        });
        drop(writer);
        tokio::task::yield_now().await; // as in `rotate`
        issued
    }

    async fn redeem_code(
        &self,
        code_hash: &str,
        now: i64,
        session_id: &str,
        judge: impl FnOnce(&CodeRow) -> Option<Grant> + Send,
    ) -> StoreResult<Redemption> {
        let writer = self.writer_lock.lock().await;
        let redemption = self.write(|conn| {
            let txn = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let spent = txn
                .prepare_cached(&SPEND_CODE)?
                .query_row(params![now, session_id, code_hash], |row| CodeRow::at(row, 0))
                .optional()?;
            let Some(row) = spent else {
                let earlier =
                    txn.prepare_cached(&CODE)?.query_row([code_hash], |row| CodeRow::at(row, 0)).optional()?;
                return Ok(earlier.map_or(Redemption::Unknown, Redemption::Reused));
            };
            let Some(grant) = judge(&row) else {
                txn.prepare_cached("UPDATE authorization_codes SET session_id = NULL WHERE code_hash = ?1")?
                    .execute([code_hash])?;
                txn.commit()?;
                return Ok(Redemption::Refused(CodeRow { session_id: None, ..row }));
            };
            let session = NewSession { id: session_id.to_string(), ..grant.session };
            insert_session(&txn, &session)?;
            if let Some(token) = &grant.refresh_token {
                insert_refresh_token(&txn, session_id, session.now, token)?;
            }
            insert_audit_event(&txn, grant.event.into())?;
            txn.commit()?;
            Ok(Redemption::Redeemed(row))
        });
        drop(writer);
        tokio::task::yield_now().await; // as in `rotate`
        redemption
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{EntityTrait, IdenStatic, Iterable};

    use super::*;

    fn entity_columns<E: EntityTrait>() -> Vec<&'static str> {
        E::Column::iter().map(|c| c.as_str()).collect()
    }

    #[test]
    fn every_row_mapper_reads_its_entitys_columns_in_the_entitys_order() {
        assert_eq!(RefreshTokenRow::COLUMNS, entity_columns::<refresh_tokens::Entity>());
        assert_eq!(SessionRow::COLUMNS, entity_columns::<sessions::Entity>());
        assert_eq!(UserRow::COLUMNS, entity_columns::<users::Entity>());
        assert_eq!(ClientRow::COLUMNS, entity_columns::<clients::Entity>());
        assert_eq!(SsoSessionRow::COLUMNS, entity_columns::<sso_sessions::Entity>());
        assert_eq!(CodeRow::COLUMNS, entity_columns::<authorization_codes::Entity>());
        assert_eq!(InteractionRow::COLUMNS, entity_columns::<authorization_requests::Entity>());
    }
}

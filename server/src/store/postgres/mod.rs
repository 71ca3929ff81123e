//! The PostgreSQL engine of the token paths ([`TokenStore`]), through sea-orm's pool.
//! Reads are one query each; a refresh is one statement (one round trip) that reads
//! and, when the read allows it, rotates ([`READ_AND_ROTATE`]); a rotation judged after
//! a read is one statement too ([`ROTATE`]). Sessions (for the bearer check), clients, role names and
//! permissions are read through this node's [`cache`], which every change invalidates
//! on every node through `LISTEN/NOTIFY`.

pub mod cache;

use crate::store::entities::{TokenState, UserStatus};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, Statement};
use std::collections::BTreeSet;

use super::authorization::{self, CodeIssue, CodeRow, Grant, InteractionRow, Redemption, SsoSessionRow};
use super::clients::{self, ClientRow};
use super::columns;
use super::dpop::{self, ProofQueue};
use super::entities::{refresh_tokens, sessions, users};
use super::sessions::{RefreshTokenRow, SessionRow};
use super::token_store::{RefreshAttempt, RefreshRead, RotateOutcome, Rotation, TokenStore};
use super::users::UserRow;
use super::{Db, StoreError, StoreResult};
use cache::{CacheMetrics, Caches, ListenerStatus, Lookup, Ticket};
use std::sync::Arc;

pub struct PostgresTokens {
    db: Db,
    caches: Arc<Caches>,
    /// DPoP proofs waiting for the next batch (see [`super::dpop`]).
    proofs: ProofQueue,
    /// A permit is held while a batch of proofs is written; the proofs that arrive
    /// meanwhile go into the next. A few batches may be in flight at once: a batch's
    /// round trip is slowed by whatever CPU work the runtime runs meanwhile (signing),
    /// and one batch at a time made every DPoP request wait for two of them.
    proof_writers: tokio::sync::Semaphore,
}

/// Batches of DPoP proofs written at once (see `proof_writers`).
const PROOF_BATCHES_IN_FLIGHT: usize = 4;

impl std::fmt::Debug for PostgresTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresTokens").finish_non_exhaustive()
    }
}

impl PostgresTokens {
    /// The engine, with its change listener started (on the current tokio runtime; with
    /// none, as in a one-off command, nothing is cached).
    pub fn new(db: Db, metrics: CacheMetrics) -> Self {
        let caches = Arc::new(Caches::new(db.local_writes(), metrics));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let pool = db.connection().get_postgres_connection_pool().clone();
            runtime.spawn(cache::listen(Arc::downgrade(&caches), pool.clone()));
            runtime.spawn(cache::heartbeat(Arc::downgrade(&caches), pool));
        }
        Self {
            db,
            caches,
            proofs: ProofQueue::default(),
            proof_writers: tokio::sync::Semaphore::new(PROOF_BATCHES_IN_FLIGHT),
        }
    }

    /// Follows the change listener (tests wait on it).
    pub fn listener_status(&self) -> tokio::sync::watch::Receiver<ListenerStatus> {
        self.caches.status()
    }
}

/// A row of [`TOKEN_FOR_REFRESH`] (or of [`READ_AND_ROTATE`], which returns its columns).
fn refresh_read(row: &sea_orm::QueryResult) -> StoreResult<RefreshRead> {
    Ok(RefreshRead {
        token: RefreshTokenRow::from_query_result(row, "t_")?,
        session: SessionRow::from_query_result(row, "s_")?,
        user: UserRow::from_query_result_optional(row, "u_")?,
        roles: columns::split_roles(row.try_get("", "roles")?),
    })
}

/// Reads through a cache: a hit answers; a miss reads `load` and keeps its answer when
/// still current; while the cache is not trusted, `load` answers and nothing is kept.
async fn through<V: Clone>(
    lookup: Lookup<V>,
    load: impl Future<Output = StoreResult<V>>,
    fill: impl FnOnce(Ticket, V),
) -> StoreResult<V> {
    match lookup {
        Lookup::Hit(value) => Ok(value),
        Lookup::Miss(ticket) => {
            let value = load.await?;
            fill(ticket, value.clone());
            Ok(value)
        }
        Lookup::Bypass => load.await,
    }
}

/// The joined read of a refresh (public: the bench's database ceiling runs it as is).
pub static TOKEN_FOR_REFRESH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| columns::token_for_refresh_sql("string_agg"));

/// [`TokenStore::read_and_rotate`]: the joined read of [`TOKEN_FOR_REFRESH`] and, when
/// it passes the refresh rule (see [`RefreshAttempt`]), the rotation of [`ROTATE`] —
/// one round trip. The read is the statement's snapshot; the rotation locks the session
/// and re-checks the token against their newest versions, as [`ROTATE`] does, so a
/// concurrent rotation or revocation makes it rotate nothing (and the caller judges
/// the read again, as before). Parameters: $1 token hash, $2 now, $3 client id, $4 idle
/// timeout, $5 child id, $6 child hash, $7 child sealed, $8 the proof's key, $9 the key to
/// bind, $10 the roles that need a second factor, $11 the `amr` values that are one,
/// $12 rotated, $13 active, $14 the active user status.
pub static READ_AND_ROTATE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH r AS ({read}), \
        ok AS ( \
            SELECT t_id, s_id, LEAST($2 + $4, s_absolute_expires_at) AS idle FROM r \
            WHERE s_client_id = $3 AND t_state = $13 AND t_expires_at > $2 \
            AND s_revoked_at IS NULL AND s_idle_expires_at > $2 AND s_absolute_expires_at > $2 \
            AND u_status = $14 AND (s_dpop_jkt IS NULL OR s_dpop_jkt = $8) \
            AND (NOT (string_to_array(coalesce(roles, ''), ' ') && $10::text[]) \
                 OR string_to_array(s_amr, ' ') && $11::text[])), \
        live AS ( \
            SELECT id FROM sessions WHERE id = (SELECT s_id FROM ok) AND revoked_at IS NULL \
            AND idle_expires_at > $2 AND absolute_expires_at > $2 FOR UPDATE), \
        swapped AS ( \
            UPDATE refresh_tokens SET state = $12, used_at = $2, child_sealed = $7 \
            WHERE id = (SELECT t_id FROM ok) AND state = $13 AND EXISTS (SELECT 1 FROM live) RETURNING id), \
        touched AS ( \
            UPDATE sessions SET last_used_at = $2, idle_expires_at = (SELECT idle FROM ok), \
            dpop_jkt = coalesce(dpop_jkt, $9) \
            WHERE id IN (SELECT id FROM live) AND EXISTS (SELECT 1 FROM swapped) RETURNING id), \
        inserted AS ( \
            INSERT INTO refresh_tokens (id, session_id, parent_id, token_hash, state, created_at, used_at, expires_at) \
            SELECT $5, s_id, t_id, $6, $13, $2, NULL, idle FROM ok WHERE EXISTS (SELECT 1 FROM touched) RETURNING id) \
        SELECT r.*, (SELECT count(*) FROM inserted) AS rotated FROM r",
        read = TOKEN_FOR_REFRESH.as_str()
    )
});

/// [`TokenStore::rotate`] as one statement instead of five. It locks the session row
/// first, in the same order as `sessions::revoke`, so a rotation and a revocation of
/// one session queue instead of deadlocking; under READ COMMITTED a row changed by a
/// concurrent transaction is re-checked against its newest version, so exactly one
/// of two concurrent rotations swaps the token.
pub const ROTATE: &str = "WITH live AS ( \
        SELECT id FROM sessions WHERE id = $1 AND revoked_at IS NULL \
        AND idle_expires_at > $2 AND absolute_expires_at > $2 FOR UPDATE), \
    swapped AS ( \
        UPDATE refresh_tokens SET state = $4, used_at = $2, child_sealed = $10 \
        WHERE id = $3 AND state = $5 AND EXISTS (SELECT 1 FROM live) RETURNING id), \
    touched AS ( \
        UPDATE sessions SET last_used_at = $2, idle_expires_at = $6, dpop_jkt = coalesce(dpop_jkt, $11) \
        WHERE id IN (SELECT id FROM live) AND EXISTS (SELECT 1 FROM swapped) RETURNING id), \
    inserted AS ( \
        INSERT INTO refresh_tokens (id, session_id, parent_id, token_hash, state, created_at, used_at, expires_at) \
        SELECT $7, $1, $3, $8, $5, $2, NULL, $9 WHERE EXISTS (SELECT 1 FROM touched) RETURNING id) \
    SELECT (SELECT count(*) FROM live) AS live, (SELECT count(*) FROM inserted) AS inserted, \
        (SELECT count(*) FROM refresh_tokens WHERE id = $3 AND state = $5) AS was_active";

impl TokenStore for PostgresTokens {
    async fn session_with_user(&self, session_id: &str) -> StoreResult<Option<(SessionRow, Option<UserRow>)>> {
        Ok(sessions::Entity::find_by_id(session_id.to_string()).find_also_related(users::Entity).one(&self.db).await?)
    }

    async fn live_session_with_user(
        &self,
        session_id: &str,
        now: i64,
    ) -> StoreResult<Option<(SessionRow, Option<UserRow>)>> {
        let ticket = match self.caches.session(session_id) {
            Lookup::Hit((session, user)) if session.is_live(now) => return Ok(Some((session, Some(user)))),
            // Its idle deadline may have moved on since it was cached (a refresh
            // notifies nothing): read it again.
            Lookup::Hit(_) => {
                self.caches.forget_session(session_id);
                None
            }
            Lookup::Miss(ticket) => Some(ticket),
            Lookup::Bypass => None,
        };
        let found = self.session_with_user(session_id).await?.filter(|(session, _)| session.is_live(now));
        if let (Some(ticket), Some((session, Some(user)))) = (ticket, &found) {
            self.caches.fill_session(ticket, session_id, session.clone(), user.clone());
        }
        Ok(found)
    }

    async fn token_for_refresh(&self, token_hash: &str) -> StoreResult<Option<RefreshRead>> {
        let statement =
            Statement::from_sql_and_values(DbBackend::Postgres, TOKEN_FOR_REFRESH.as_str(), [token_hash.into()]);
        let Some(row) = self.db.query_one_raw(statement).await? else { return Ok(None) };
        Ok(Some(refresh_read(&row)?))
    }

    async fn read_and_rotate(
        &self,
        token_hash: &str,
        attempt: &RefreshAttempt,
    ) -> StoreResult<Option<(RefreshRead, bool)>> {
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            READ_AND_ROTATE.as_str(),
            [
                token_hash.into(),
                attempt.now.into(),
                attempt.client_id.as_str().into(),
                attempt.idle_timeout_secs.into(),
                attempt.child_id.as_str().into(),
                attempt.child_hash.as_str().into(),
                attempt.child_sealed.as_str().into(),
                attempt.proof_jkt.clone().into(),
                attempt.binds_dpop_jkt.clone().into(),
                attempt.mfa_roles.clone().into(),
                attempt.strong_amr.clone().into(),
                TokenState::Rotated.into(),
                TokenState::Active.into(),
                UserStatus::Active.as_str().into(),
            ],
        );
        let Some(row) = self.db.query_one_raw(statement).await? else { return Ok(None) };
        let rotated: i64 = row.try_get("", "rotated")?;
        Ok(Some((refresh_read(&row)?, rotated == 1)))
    }

    async fn token_with_session(&self, token_hash: &str) -> StoreResult<Option<(RefreshTokenRow, SessionRow)>> {
        let found = refresh_tokens::Entity::find()
            .find_also_related(sessions::Entity)
            .filter(refresh_tokens::Column::TokenHash.eq(token_hash))
            .one(&self.db)
            .await?;
        Ok(found.and_then(|(token, session)| session.map(|s| (token, s))))
    }

    async fn child_of(&self, parent_id: &str) -> StoreResult<Option<RefreshTokenRow>> {
        Ok(refresh_tokens::Entity::find().filter(refresh_tokens::Column::ParentId.eq(parent_id)).one(&self.db).await?)
    }

    async fn user_role_names(&self, user_id: &str) -> StoreResult<Vec<String>> {
        through(self.caches.user_roles(user_id), super::users::role_names(&self.db, user_id), |ticket, roles| {
            self.caches.fill_user_roles(ticket, user_id, roles)
        })
        .await
    }

    async fn client(&self, client_id: &str) -> StoreResult<Option<ClientRow>> {
        through(self.caches.client(client_id), clients::find(&self.db, client_id), |ticket, client| {
            self.caches.fill_client(ticket, client_id, client)
        })
        .await
    }

    async fn client_role_names(&self, client_id: &str) -> StoreResult<Vec<String>> {
        through(self.caches.client_roles(client_id), clients::role_names(&self.db, client_id), |ticket, roles| {
            self.caches.fill_client_roles(ticket, client_id, roles)
        })
        .await
    }

    async fn permissions_of(&self, role_names: &[String]) -> StoreResult<BTreeSet<String>> {
        let mut permissions = BTreeSet::new();
        for role in role_names {
            let of_role = through(
                self.caches.permissions(role),
                super::roles::permissions_of(&self.db, std::slice::from_ref(role)),
                |ticket, found: BTreeSet<String>| self.caches.fill_permissions(ticket, role, found),
            )
            .await?;
            permissions.extend(of_role);
        }
        Ok(permissions)
    }

    async fn rotate(&self, rotation: &Rotation) -> StoreResult<RotateOutcome> {
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            ROTATE,
            [
                rotation.session_id.as_str().into(),
                rotation.now.into(),
                rotation.token_id.as_str().into(),
                TokenState::Rotated.into(),
                TokenState::Active.into(),
                rotation.idle_expires_at.into(),
                rotation.child_id.as_str().into(),
                rotation.child_hash.as_str().into(),
                rotation.child_expires_at.into(),
                rotation.child_sealed.as_str().into(),
                rotation.binds_dpop_jkt.clone().into(),
            ],
        );
        let row =
            self.db.query_one_raw(statement).await?.ok_or_else(|| sea_orm::DbErr::RecordNotFound("rotation".into()))?;
        let live: i64 = row.try_get("", "live")?;
        let inserted: i64 = row.try_get("", "inserted")?;
        let was_active: i64 = row.try_get("", "was_active")?;
        // As on SQLite, the token's state is judged before the session's.
        Ok(match (inserted, live, was_active) {
            (1.., _, _) => RotateOutcome::Rotated,
            (0, 0, 1..) => RotateOutcome::SessionNotActive,
            _ => RotateOutcome::TokenNotActive,
        })
    }

    async fn first_use_of_proof(&self, proof_key: &str, expires_at: i64) -> StoreResult<bool> {
        let answer = self.proofs.enqueue(proof_key, expires_at);
        // The semaphore is never closed, so acquiring fails only if it were.
        let writing =
            self.proof_writers.acquire().await.map_err(|e| StoreError::Db(sea_orm::DbErr::Custom(e.to_string())))?;
        let batch = self.proofs.take();
        if !batch.is_empty() {
            // The batch is written by a task of its own, so a request that goes away
            // mid-write (its future dropped) cannot leave the others in it unanswered.
            let db = self.db.clone();
            let written = tokio::spawn(async move {
                // Around `Db`'s count of local writes: a proof changes no cached row.
                let recorded = dpop::record_postgres(db.connection(), &batch.rows()).await;
                batch.answer(recorded);
            });
            // A panic in it drops the batch's senders, which `verdict` reports.
            let _ = written.await;
        }
        drop(writing);
        dpop::verdict(answer).await
    }

    async fn user_with_roles(&self, user_id: &str) -> StoreResult<Option<(UserRow, Vec<String>)>> {
        let Some(user) = users::Entity::find_by_id(user_id.to_string()).one(&self.db).await? else {
            return Ok(None);
        };
        let roles = super::users::role_names(&self.db, user_id).await?;
        Ok(Some((user, roles)))
    }

    async fn sso_session(&self, token_hash: &str) -> StoreResult<Option<(SsoSessionRow, Option<UserRow>)>> {
        authorization::sso_session_by_hash(&self.db, token_hash).await
    }

    async fn interaction(&self, id: &str) -> StoreResult<Option<InteractionRow>> {
        authorization::find_interaction(&self.db, id).await
    }

    async fn issue_code(&self, issue: CodeIssue) -> StoreResult<bool> {
        authorization::issue_code(&self.db, issue).await
    }

    async fn redeem_code(
        &self,
        code_hash: &str,
        now: i64,
        session_id: &str,
        judge: impl FnOnce(&CodeRow) -> Option<Grant> + Send,
    ) -> StoreResult<Redemption> {
        authorization::redeem_code(&self.db, code_hash, now, session_id, judge).await
    }
}

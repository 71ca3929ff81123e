//! The storage seam of the token paths: what the bearer check of every authenticated
//! request, refresh-token rotation and the client lookup of every token request read
//! and write. One trait, one implementation per engine ([`super::sqlite`],
//! [`super::postgres`]); the engine is chosen once, when the state is built, and
//! nothing above this trait branches on it. The contract suite
//! (`tests/it/store_contract.rs`) runs every method against both.
//!
//! Whatever a hot path of a new feature reads or writes goes behind this trait too;
//! everything else stays shared sea-orm code in the other `store` modules.

use std::collections::BTreeSet;
use std::future::Future;

use super::authorization::{CodeIssue, CodeRow, Grant, InteractionRow, Redemption, SsoSessionRow};
use super::clients::ClientRow;
use super::sessions::{RefreshTokenRow, SessionRow};
use super::users::UserRow;
use super::{Db, StoreResult};

/// What a refresh reads: the presented token, its session, the session's user (gone
/// if deleted) and that user's roles, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRead {
    pub token: RefreshTokenRow,
    pub session: SessionRow,
    pub user: Option<UserRow>,
    pub roles: Vec<String>,
}

/// One rotation: `token_id` becomes `rotated` and `child` its active successor, and
/// the session is touched (`last_used_at = now`, the new idle deadline) — all or
/// nothing, as compare-and-swap updates, so exactly one of any number of concurrent
/// rotations of one token wins, across any number of processes.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub token_id: String,
    pub session_id: String,
    pub now: i64,
    pub idle_expires_at: i64,
    pub child_id: String,
    /// SHA-256 of the child token; the token itself is never stored in the clear.
    pub child_hash: String,
    pub child_expires_at: i64,
    /// The child sealed under a key derived from the parent (`security::sealed_child`),
    /// kept on the parent row so a retry within the grace window gets the same child.
    pub child_sealed: String,
    /// The DPoP key an unbound session becomes bound to with this rotation (a public
    /// client's first refresh with a proof); a session already bound keeps its key.
    pub binds_dpop_jkt: Option<String>,
}

/// What a refresh's rotation needs that does not depend on what the refresh reads: the
/// engine that can (PostgreSQL) reads and rotates in one statement when the read
/// passes the same rule `domain::sessions` judges by — the token active and unexpired,
/// for this client; its session live; its user active; the session's DPoP key, if
/// bound, the proof's; the MFA policy met — and otherwise only reads.
#[derive(Debug, Clone)]
pub struct RefreshAttempt {
    pub client_id: String,
    pub now: i64,
    /// The session's idle deadline becomes `now` plus this, never past its absolute one.
    pub idle_timeout_secs: i64,
    pub child_id: String,
    pub child_hash: String,
    pub child_sealed: String,
    /// The key of the request's DPoP proof, if it came with one.
    pub proof_jkt: Option<String>,
    /// As [`Rotation::binds_dpop_jkt`] (kept only by a session not bound yet).
    pub binds_dpop_jkt: Option<String>,
    /// `mfa.require_for_roles`: a user holding one of them refreshes only a session whose
    /// `amr` holds one of `strong_amr`.
    pub mfa_roles: Vec<String>,
    pub strong_amr: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateOutcome {
    Rotated,
    /// The token is not active: another request rotated it first, or its session was
    /// revoked (which revokes its tokens). Judged before the session.
    TokenNotActive,
    /// The token is active but its session is past its idle or absolute deadline at
    /// `now` (or was revoked by a transaction that committed during this rotation).
    SessionNotActive,
}

/// The hot reads and writes, as each engine runs them.
pub trait TokenStore: Send + Sync {
    /// A session and its user (gone if deleted).
    fn session_with_user(
        &self,
        session_id: &str,
    ) -> impl Future<Output = StoreResult<Option<(SessionRow, Option<UserRow>)>>> + Send;

    /// The session if it is live at `now` (not revoked, before both deadlines), with its
    /// user (gone if deleted): the bearer check of our own API. On PostgreSQL a cached
    /// copy, which every change to the session or the user drops on every node
    /// (`postgres::cache`); its `last_used_at` and `idle_expires_at` may lag behind a
    /// refresh (they only move later).
    fn live_session_with_user(
        &self,
        session_id: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<Option<(SessionRow, Option<UserRow>)>>> + Send;

    /// Everything a refresh reads before it rotates, in one query.
    fn token_for_refresh(&self, token_hash: &str) -> impl Future<Output = StoreResult<Option<RefreshRead>>> + Send;

    /// The refresh token with this hash and its session.
    fn token_with_session(
        &self,
        token_hash: &str,
    ) -> impl Future<Output = StoreResult<Option<(RefreshTokenRow, SessionRow)>>> + Send;

    /// The token that `parent_id` was rotated into, if any.
    fn child_of(&self, parent_id: &str) -> impl Future<Output = StoreResult<Option<RefreshTokenRow>>> + Send;

    /// The user's role names, sorted.
    fn user_role_names(&self, user_id: &str) -> impl Future<Output = StoreResult<Vec<String>>> + Send;

    fn client(&self, client_id: &str) -> impl Future<Output = StoreResult<Option<ClientRow>>> + Send;

    /// The client's role names (carried by its `client_credentials` tokens), sorted.
    fn client_role_names(&self, client_id: &str) -> impl Future<Output = StoreResult<Vec<String>>> + Send;

    /// The permissions the roles `role_names` grant together.
    fn permissions_of(&self, role_names: &[String]) -> impl Future<Output = StoreResult<BTreeSet<String>>> + Send;

    /// The read of [`Self::token_for_refresh`] and, where the engine can fold them into
    /// one round trip (PostgreSQL), the rotation `attempt` describes when the read
    /// passes its rule: the read with whether it rotated. SQLite, whose inline read and
    /// rotation cost no round trips, only reads (never `true`); a refresh not rotated
    /// here is judged and rotated as before.
    fn read_and_rotate(
        &self,
        token_hash: &str,
        attempt: &RefreshAttempt,
    ) -> impl Future<Output = StoreResult<Option<(RefreshRead, bool)>>> + Send;

    /// Applies `rotation` (see [`Rotation`]).
    fn rotate(&self, rotation: &Rotation) -> impl Future<Output = StoreResult<RotateOutcome>> + Send;

    /// Records the DPoP proof `proof_key` names, kept until `expires_at`: true the first
    /// time, false when any node saw it before (the table's unique key decides, so of
    /// two nodes seeing one proof at once exactly one gets true). On every DPoP
    /// request's path, so the proofs of concurrent requests share one commit
    /// (`store::dpop`).
    fn first_use_of_proof(&self, proof_key: &str, expires_at: i64) -> impl Future<Output = StoreResult<bool>> + Send;

    /// A user (`None` if there is no such user) with their role names, sorted.
    fn user_with_roles(
        &self,
        user_id: &str,
    ) -> impl Future<Output = StoreResult<Option<(UserRow, Vec<String>)>>> + Send;

    /// The browser login session whose cookie hashes to `token_hash`, with its user
    /// (gone if deleted).
    fn sso_session(
        &self,
        token_hash: &str,
    ) -> impl Future<Output = StoreResult<Option<(SsoSessionRow, Option<UserRow>)>>> + Send;

    /// A sign-in in progress at the hosted pages (every page view reads it).
    fn interaction(&self, id: &str) -> impl Future<Output = StoreResult<Option<InteractionRow>>> + Send;

    /// Issues a code (see [`CodeIssue`]); false, with nothing written, when the
    /// interaction it finishes was already finished.
    fn issue_code(&self, issue: CodeIssue) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Spends the code with this hash (a compare-and-swap that also records
    /// `session_id` on it) and, if `judge` accepts the spent row, creates the session
    /// `judge` grants under `session_id`, with its audit event, in the same
    /// transaction. Exactly one of any number of concurrent redemptions spends a code.
    fn redeem_code(
        &self,
        code_hash: &str,
        now: i64,
        session_id: &str,
        judge: impl FnOnce(&CodeRow) -> Option<Grant> + Send,
    ) -> impl Future<Output = StoreResult<Redemption>> + Send;
}

/// The engine this process runs on, chosen from the database URL at start-up.
#[derive(Debug)]
pub enum Engine {
    Sqlite(super::sqlite::SqliteTokens),
    Postgres(super::postgres::PostgresTokens),
}

impl Engine {
    /// The implementation for `db`'s engine. On SQLite it opens `readers` inline
    /// connections to the same file (see [`super::sqlite`]).
    pub fn for_database(
        db: &Db,
        readers: usize,
        config: &crate::config::Config,
        metrics: &crate::metrics::Metrics,
    ) -> StoreResult<Self> {
        Ok(match db.backend() {
            sea_orm::DbBackend::Postgres => {
                Engine::Postgres(super::postgres::PostgresTokens::new(db.clone(), metrics.cache.clone()))
            }
            _ => Engine::Sqlite(super::sqlite::SqliteTokens::open(db, readers, config.sqlite_synchronous)?),
        })
    }
}

impl Engine {
    /// PostgreSQL's change listener, followed (`None` on SQLite, which caches nothing).
    pub fn listener_status(&self) -> Option<tokio::sync::watch::Receiver<super::postgres::cache::ListenerStatus>> {
        match self {
            Engine::Sqlite(_) => None,
            Engine::Postgres(store) => Some(store.listener_status()),
        }
    }
}

/// Runs `$call` on whichever engine `$engine` is.
macro_rules! on_engine {
    ($engine:expr, $store:ident => $call:expr) => {
        match $engine {
            Engine::Sqlite($store) => $call.await,
            Engine::Postgres($store) => $call.await,
        }
    };
}

impl TokenStore for Engine {
    async fn session_with_user(&self, session_id: &str) -> StoreResult<Option<(SessionRow, Option<UserRow>)>> {
        on_engine!(self, store => store.session_with_user(session_id))
    }

    async fn live_session_with_user(
        &self,
        session_id: &str,
        now: i64,
    ) -> StoreResult<Option<(SessionRow, Option<UserRow>)>> {
        on_engine!(self, store => store.live_session_with_user(session_id, now))
    }

    async fn token_for_refresh(&self, token_hash: &str) -> StoreResult<Option<RefreshRead>> {
        on_engine!(self, store => store.token_for_refresh(token_hash))
    }

    async fn read_and_rotate(
        &self,
        token_hash: &str,
        attempt: &RefreshAttempt,
    ) -> StoreResult<Option<(RefreshRead, bool)>> {
        on_engine!(self, store => store.read_and_rotate(token_hash, attempt))
    }

    async fn token_with_session(&self, token_hash: &str) -> StoreResult<Option<(RefreshTokenRow, SessionRow)>> {
        on_engine!(self, store => store.token_with_session(token_hash))
    }

    async fn child_of(&self, parent_id: &str) -> StoreResult<Option<RefreshTokenRow>> {
        on_engine!(self, store => store.child_of(parent_id))
    }

    async fn user_role_names(&self, user_id: &str) -> StoreResult<Vec<String>> {
        on_engine!(self, store => store.user_role_names(user_id))
    }

    async fn client(&self, client_id: &str) -> StoreResult<Option<ClientRow>> {
        on_engine!(self, store => store.client(client_id))
    }

    async fn client_role_names(&self, client_id: &str) -> StoreResult<Vec<String>> {
        on_engine!(self, store => store.client_role_names(client_id))
    }

    async fn permissions_of(&self, role_names: &[String]) -> StoreResult<BTreeSet<String>> {
        on_engine!(self, store => store.permissions_of(role_names))
    }

    async fn rotate(&self, rotation: &Rotation) -> StoreResult<RotateOutcome> {
        on_engine!(self, store => store.rotate(rotation))
    }

    async fn first_use_of_proof(&self, proof_key: &str, expires_at: i64) -> StoreResult<bool> {
        on_engine!(self, store => store.first_use_of_proof(proof_key, expires_at))
    }

    async fn user_with_roles(&self, user_id: &str) -> StoreResult<Option<(UserRow, Vec<String>)>> {
        on_engine!(self, store => store.user_with_roles(user_id))
    }

    async fn sso_session(&self, token_hash: &str) -> StoreResult<Option<(SsoSessionRow, Option<UserRow>)>> {
        on_engine!(self, store => store.sso_session(token_hash))
    }

    async fn interaction(&self, id: &str) -> StoreResult<Option<InteractionRow>> {
        on_engine!(self, store => store.interaction(id))
    }

    async fn issue_code(&self, issue: CodeIssue) -> StoreResult<bool> {
        on_engine!(self, store => store.issue_code(issue))
    }

    async fn redeem_code(
        &self,
        code_hash: &str,
        now: i64,
        session_id: &str,
        judge: impl FnOnce(&CodeRow) -> Option<Grant> + Send,
    ) -> StoreResult<Redemption> {
        on_engine!(self, store => store.redeem_code(code_hash, now, session_id, judge))
    }
}

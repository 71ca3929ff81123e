//! Periodic jobs every node runs: the signing-key lifecycle (each node, idempotent) and
//! the purge of ended sessions, old audit events, expired MFA challenges, sealed
//! refresh children past their grace window, and the code flow's spent or expired
//! authorization codes, abandoned sign-ins, ended browser sessions and delivered or
//! dead outbox messages (one node at a time, under a lease).

use std::time::Duration;

use crate::state::AppState;
use crate::store::purge;

use super::Result;

/// What one purge pass deleted, or `None` when another node holds the lease.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub sessions: u64,
    pub audit_events: u64,
    /// Expired MFA login challenges and passkey ceremonies.
    pub challenges: u64,
    pub attempt_buckets: u64,
    pub sealed_children: u64,
    pub authorization_codes: u64,
    pub sign_ins: u64,
    pub sso_sessions: u64,
    pub outbox_messages: u64,
}

pub async fn purge(state: &AppState) -> Result<Option<Purged>> {
    let now = state.now();
    let config = &state.config;
    let lease = config.operations.purge_interval.as_secs() as i64;
    if !purge::try_lease(&state.db, "purge", &state.node_id, now, lease).await? {
        return Ok(None);
    }
    let batch = config.operations.purge_batch_size;
    let mut done = Purged::default();
    let sessions_before = now - config.operations.ended_session_retention.as_secs() as i64;
    done.sessions = drain(|| purge::ended_sessions(&state.db, sessions_before, batch), batch).await?;
    if !config.operations.audit_retention.is_zero() {
        let audit_before = now - config.operations.audit_retention.as_secs() as i64;
        done.audit_events = purge_audit_events(state, audit_before, batch).await?;
    }
    done.challenges = drain(|| purge::expired_challenges(&state.db, now, batch), batch).await?
        + drain(|| purge::expired_ceremonies(&state.db, now, batch), batch).await?
        + drain(|| purge::expired_email_tokens(&state.db, now, batch), batch).await?
        + drain(|| purge::expired_dpop_proofs(&state.db, now, batch), batch).await?;
    let grace_ended = now - config.tokens.refresh_grace.as_secs() as i64;
    done.sealed_children = drain(|| purge::sealed_children(&state.db, grace_ended, batch), batch).await?;
    // A code is kept past its use only as long as it could still be presented again
    // (its lifetime): a reuse within it finds the row and revokes what it bought.
    done.authorization_codes = drain(|| purge::spent_codes(&state.db, now, batch), batch).await?;
    done.sign_ins = drain(|| purge::abandoned_sign_ins(&state.db, now, batch), batch).await?;
    done.sso_sessions = drain(|| purge::ended_sso_sessions(&state.db, sessions_before, batch), batch).await?;
    done.outbox_messages = drain(|| purge::finished_outbox_messages(&state.db, sessions_before, batch), batch).await?;
    done.attempt_buckets = crate::store::attempts::purge_full(&state.db, now.saturating_mul(1000)).await?;
    if done != Purged::default() {
        tracing::info!(?done, "purged expired records");
    }
    Ok(Some(done))
}

/// The audit log's purge, batch by batch; one that stops at a broken link says so
/// loudly (someone edited the log) and leaves the rest for the operator.
async fn purge_audit_events(state: &AppState, before: i64, batch: u64) -> Result<u64> {
    // Only linked events are purged (from the start of the chain): link what waits first.
    link_audit_events(state).await?;
    let mut total = 0;
    loop {
        let done = purge::old_audit_events(&state.db, before, batch).await?;
        total += done.deleted;
        if let Some(broken) = done.stopped_at {
            tracing::error!(
                ?broken,
                "the audit log's hash chain is broken; the purge stops there (run `latchkey audit verify`)"
            );
            return Ok(total);
        }
        if done.deleted < batch {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// Repeats a batched delete until a batch comes back short.
async fn drain<F, Fut>(mut step: F, batch: u64) -> Result<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::store::StoreResult<u64>>,
{
    let mut total = 0;
    loop {
        let deleted = step().await?;
        total += deleted;
        if deleted < batch {
            return Ok(total);
        }
        // Let other work interleave between batches.
        tokio::task::yield_now().await;
    }
}

/// How often each node links the audit events written since (PostgreSQL, where they are
/// linked after their commit; see [`crate::store::audit::record`]).
const AUDIT_LINK_INTERVAL: Duration = Duration::from_secs(1);
/// Most events one linking transaction takes.
const AUDIT_LINK_BATCH: u64 = 1000;

/// Links every audit event awaiting its link, a batch at a time, where events are linked
/// after their commit (PostgreSQL). On SQLite every event is linked as it is written, so
/// an unlinked one was put there by hand and is left for `verify` to name.
pub async fn link_audit_events(state: &AppState) -> Result<u64> {
    if !crate::store::audit::links_after_commit(&state.db) {
        return Ok(0);
    }
    drain(|| crate::store::audit::link_pending(&state.db, AUDIT_LINK_BATCH), AUDIT_LINK_BATCH).await
}

/// How often each node logs the audit chain's head (and once at start): a log shipped
/// off the machine is a record of it the database's writers cannot rewrite.
const AUDIT_HEAD_LOG_INTERVAL: Duration = Duration::from_secs(24 * 3600);

async fn log_audit_head(state: &AppState) {
    match super::audit::chain_ends(state).await {
        Ok(ends) => tracing::info!(
            head = %format!("{}:{}", ends.head.seq, ends.head.hash),
            anchor = %format!("{}:{}", ends.anchor.seq, ends.anchor.hash),
            "audit chain head (check later with `latchkey audit verify --known <head>`)"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot read the audit chain's head"),
    }
}

/// Runs key maintenance every `key_poll_interval` and the purge every `purge_interval`
/// until the server stops. Failures are logged and retried on the next tick.
pub async fn run_forever(state: AppState) {
    let mut keys = tokio::time::interval(state.config.keys.poll_interval);
    let mut purge_tick = tokio::time::interval(state.config.operations.purge_interval);
    keys.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    purge_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sweep = tokio::time::interval(Duration::from_secs(60));
    let mut audit_link = tokio::time::interval(AUDIT_LINK_INTERVAL);
    audit_link.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let links_after_commit = crate::store::audit::links_after_commit(&state.db);
    let mut audit_head = tokio::time::interval(AUDIT_HEAD_LOG_INTERVAL);
    audit_head.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = keys.tick() => {
                if let Err(e) = super::keys::maintain(&state).await {
                    tracing::warn!(error = %e, "key maintenance failed; retrying next tick");
                }
            }
            _ = purge_tick.tick() => {
                if let Err(e) = purge(&state).await {
                    tracing::warn!(error = %e, "purge failed; retrying next tick");
                }
            }
            _ = sweep.tick() => state.limits.sweep(),
            _ = audit_head.tick() => log_audit_head(&state).await,
            _ = audit_link.tick(), if links_after_commit => {
                if let Err(e) = link_audit_events(&state).await {
                    tracing::warn!(error = %e, "linking audit events failed; retrying next tick");
                }
            }
        }
    }
}

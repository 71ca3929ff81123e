//! Back-channel logout delivery (OpenID Connect Back-Channel Logout 1.0 §2.5): every
//! node takes due logout messages from the outbox (see [`crate::store::outbox`]), signs
//! a logout token for each with the active key, and POSTs it to the relying party's
//! `backchannel_logout_uri` as `logout_token=…`, with a timeout and without following
//! redirects. A 2xx answer delivers it. Anything else (an error status, a time-out, no
//! connection) is retried after a backoff that doubles, with jitter, until the attempts
//! allowed are spent; then the message is dead, audited and logged.
//!
//! The loop runs beside the request handlers, never inside one, so a slow or dead
//! relying party never delays the request that ended a session. Among deliveries, it
//! holds a slot only until its timeout, and once it has failed its other due messages
//! wait as long as the failed one (see [`crate::store::outbox::mark_retry`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::state::AppState;
use crate::store::audit::NewAuditEvent;
use crate::store::entities::OutboxKind;
use crate::store::outbox::{self, Claimed, LogoutNotice};
use crate::tokens::logout_token::LogoutClaims;

use super::{Error, Result};

/// How often each node looks for due messages.
const DELIVERY_INTERVAL: Duration = Duration::from_secs(1);
/// A claim outlives the POST's timeout by this much, so it never runs out mid-attempt.
const LEASE_MARGIN_SECS: i64 = 30;

/// The HTTP client every delivery of this node shares: the configured timeout, no
/// redirects (a relying party answers, it does not send us elsewhere), no cookies.
pub fn http_client(state: &AppState) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(state.config.backchannel_logout.timeout)
        .connect_timeout(state.config.backchannel_logout.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("latchkey/", env!("CARGO_PKG_VERSION"), " (back-channel logout)"))
        .build()
        .map_err(|e| Error::Internal(format!("the back-channel logout HTTP client: {e}")))
}

/// Delivers due logout tokens until the server stops: every second, as many due
/// messages are claimed as delivery slots are free (`concurrency`), and each is sent on
/// its own task, so a slow relying party holds a slot only until its timeout and never
/// the claims of the others.
pub async fn run_forever(state: AppState) {
    let http = match http_client(&state) {
        Ok(http) => http,
        Err(e) => {
            tracing::error!(error = %e, "back-channel logout is not delivered on this node");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(state.config.backchannel_logout.concurrency));
    let mut tick = tokio::time::interval(DELIVERY_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = start_due(&state, &http, &slots).await {
            tracing::warn!(error = %e, "back-channel logout delivery failed; retrying next tick");
        }
    }
}

/// Claims due messages for the free slots and starts their attempts; then refreshes the
/// pending gauge. Returns how many attempts it started.
pub async fn start_due(state: &AppState, http: &reqwest::Client, slots: &Arc<Semaphore>) -> Result<usize> {
    let lease = state.config.backchannel_logout.timeout.as_secs() as i64 + LEASE_MARGIN_SECS;
    let mut started = 0;
    loop {
        let free = slots.available_permits();
        if free == 0 {
            break;
        }
        let claimed = outbox::claim_due(
            &state.db,
            OutboxKind::BackchannelLogout,
            &state.node_id,
            state.now(),
            lease,
            free as u64,
        )
        .await?;
        let count = claimed.len();
        for claim in claimed {
            // This loop is the only taker of slots and claimed no more than were free, so
            // this does not wait; if it ever did, the claim would wait for a slot, not
            // sit unattempted until its lease ran out.
            let Ok(slot) = slots.clone().acquire_owned().await else { break };
            let (state, http) = (state.clone(), http.clone());
            tokio::spawn(async move {
                let _slot = slot;
                if let Err(e) = attempt(&state, &http, claim).await {
                    tracing::warn!(error = %e, "recording a back-channel logout attempt failed");
                }
            });
            started += 1;
        }
        if count < free {
            break;
        }
    }
    state.metrics.outbox_pending.set(outbox::pending_count(&state.db).await? as i64);
    Ok(started)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Retried,
    Dead,
    /// Another node took the message over (this node's lease ran out); it decides.
    LostClaim,
}

async fn attempt(state: &AppState, http: &reqwest::Client, claim: Claimed) -> Result<Outcome> {
    let client_id = claim.row.recipient.clone();
    let Ok(notice) = serde_json::from_str::<LogoutNotice>(&claim.row.payload) else {
        return give_up(state, &claim, "its payload is unreadable").await;
    };
    let Some((uri, sid_required)) = outbox::logout_endpoint(&state.db, &client_id).await? else {
        return give_up(state, &claim, "the client is gone or no longer takes logout tokens").await;
    };
    if sid_required && notice.sid.is_none() {
        return give_up(state, &claim, "the client now requires sid, which this session never had").await;
    }
    let now = state.now();
    let claims =
        LogoutClaims::new(&claim.row.id, &state.config.issuer, &client_id, &notice.sub, notice.sid.as_deref(), now);
    let failure = match claims.sign(&state.keys.current()) {
        Err(_) => Some("the logout token could not be signed (no active key)".to_string()),
        Ok(token) => match http.post(&uri).form(&[("logout_token", token.as_str())]).send().await {
            Ok(answer) if answer.status().is_success() => None,
            Ok(answer) => Some(format!("answered HTTP {}", answer.status().as_u16())),
            Err(e) if e.is_timeout() => {
                Some(format!("no answer within {} s", state.config.backchannel_logout.timeout.as_secs()))
            }
            Err(e) if e.is_connect() => Some("could not connect".to_string()),
            Err(_) => Some("the request failed".to_string()),
        },
    };
    let Some(failure) = failure else {
        if !outbox::mark_delivered(&state.db, &claim, state.now()).await? {
            return Ok(Outcome::LostClaim);
        }
        state.metrics.backchannel_logout.with_label_values(&["delivered"]).inc();
        state.metrics.backchannel_logout_latency.observe((state.now() - claim.row.created_at).max(0) as f64);
        return Ok(Outcome::Delivered);
    };
    let config = state.config.backchannel_logout;
    let attempt = u32::try_from(claim.attempt()).unwrap_or(u32::MAX);
    if attempt >= config.max_attempts {
        return give_up(state, &claim, &failure).await;
    }
    let delay = retry_delay(attempt, config.retry_base, config.retry_max, jitter());
    let next = state.now().saturating_add(i64::try_from(delay.as_secs()).unwrap_or(i64::MAX));
    // The relying party is failing: its other due messages wait as long as this one
    // (not counted as attempts), instead of each spending a slot and an attempt now.
    if !outbox::mark_retry(&state.db, &claim, state.now(), next, &failure).await? {
        return Ok(Outcome::LostClaim);
    }
    state.metrics.backchannel_logout.with_label_values(&["retried"]).inc();
    tracing::info!(
        client_id = %client_id, attempt, error = %failure, retry_in_secs = delay.as_secs(),
        "back-channel logout not delivered; retrying"
    );
    Ok(Outcome::Retried)
}

/// Marks the message dead, audited as `backchannel_logout.dead`.
async fn give_up(state: &AppState, claim: &Claimed, why: &str) -> Result<Outcome> {
    let now = state.now();
    let event = NewAuditEvent::success(now, "system", "backchannel_logout.dead", &claim.row.recipient)
        .outcome("failure")
        .details(serde_json::json!({
            "message_id": claim.row.id, "attempts": claim.attempt(), "error": why,
        }));
    if !outbox::mark_dead(&state.db, claim, now, why, event).await? {
        return Ok(Outcome::LostClaim);
    }
    state.metrics.backchannel_logout.with_label_values(&["dead"]).inc();
    tracing::warn!(
        client_id = %claim.row.recipient, attempts = claim.attempt(), error = %why,
        "back-channel logout given up: the relying party was not told of an ended session"
    );
    Ok(Outcome::Dead)
}

/// The wait after failed attempt `attempt` (1 for the first): `base` doubled for each
/// attempt before it, at most `max`, plus `jitter` (0 to 1) times half of that, so
/// relying parties that failed together are not retried together.
pub fn retry_delay(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let doubled = base.saturating_mul(1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX));
    let wait = doubled.min(max);
    wait + wait.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
}

/// A uniform number in [0, 1).
pub(super) fn jitter() -> f64 {
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_delay_doubles_up_to_its_ceiling_and_jitters_by_up_to_half() {
        let (base, max) = (Duration::from_secs(10), Duration::from_secs(3600));
        let plain: Vec<u64> = (1..=10).map(|a| retry_delay(a, base, max, 0.0).as_secs()).collect();
        assert_eq!(plain, [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]);
        assert_eq!(retry_delay(1, base, max, 1.0), Duration::from_secs(15));
        assert_eq!(retry_delay(40, base, max, 0.0), max, "no overflow for a large attempt count");
        assert_eq!(retry_delay(u32::MAX, base, max, 0.99).as_secs(), 3600 + 1782);
    }

    #[test]
    fn jitter_is_in_the_unit_interval() {
        for _ in 0..1000 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }
}

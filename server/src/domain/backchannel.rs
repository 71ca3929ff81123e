//! Back-channel logout delivery (OpenID Connect Back-Channel Logout 1.0 §2.5): every
//! node takes due logout messages from the outbox (see [`crate::store::outbox`]), signs
//! a logout token for each with the active key, and POSTs it to the relying party's
//! `backchannel_logout_uri` as `logout_token=…`, with a timeout and without following
//! redirects. A 2xx answer delivers it. Anything else (an error status, a time-out, no
//! connection) is retried after a backoff that doubles, with jitter, until the attempts
//! allowed are spent; then the message is dead, audited and logged.
//!
//! The loop runs beside the request handlers, never inside one: a slow or dead relying
//! party delays only its own deliveries, never the request that ended a session.

use std::time::Duration;

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

/// What one delivery pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub delivered: u32,
    pub retried: u32,
    pub dead: u32,
}

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

/// Delivers due logout tokens every second until the server stops.
pub async fn run_forever(state: AppState) {
    let http = match http_client(&state) {
        Ok(http) => http,
        Err(e) => {
            tracing::error!(error = %e, "back-channel logout is not delivered on this node");
            return;
        }
    };
    let mut tick = tokio::time::interval(DELIVERY_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = deliver_due(&state, &http).await {
            tracing::warn!(error = %e, "back-channel logout delivery failed; retrying next tick");
        }
    }
}

/// Claims and delivers due messages, a batch of `concurrency` at a time, until none is
/// due; then refreshes the pending gauge.
pub async fn deliver_due(state: &AppState, http: &reqwest::Client) -> Result<Pass> {
    let config = state.config.backchannel_logout;
    let lease = config.timeout.as_secs() as i64 + LEASE_MARGIN_SECS;
    let mut pass = Pass::default();
    loop {
        let claimed = outbox::claim_due(
            &state.db,
            OutboxKind::BackchannelLogout,
            &state.node_id,
            state.now(),
            lease,
            config.concurrency as u64,
        )
        .await?;
        let full_batch = claimed.len() == config.concurrency;
        let mut attempts = tokio::task::JoinSet::new();
        for claim in claimed {
            let (state, http) = (state.clone(), http.clone());
            attempts.spawn(async move { attempt(&state, &http, claim).await });
        }
        while let Some(joined) = attempts.join_next().await {
            match joined {
                Ok(Ok(Outcome::Delivered)) => pass.delivered += 1,
                Ok(Ok(Outcome::Retried)) => pass.retried += 1,
                Ok(Ok(Outcome::Dead)) => pass.dead += 1,
                Ok(Ok(Outcome::LostClaim)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "recording a back-channel logout attempt failed"),
                Err(e) => tracing::error!(error = %e, "a back-channel logout attempt panicked"),
            }
        }
        if !full_batch {
            break;
        }
    }
    state.metrics.outbox_pending.set(outbox::pending_count(&state.db).await? as i64);
    Ok(pass)
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
    let token = claims.sign(&state.keys.current()).map_err(|e| Error::Internal(e.to_string()))?;
    let failure = match http.post(&uri).form(&[("logout_token", token.as_str())]).send().await {
        Ok(answer) if answer.status().is_success() => None,
        Ok(answer) => Some(format!("answered HTTP {}", answer.status().as_u16())),
        Err(e) if e.is_timeout() => {
            Some(format!("no answer within {} s", state.config.backchannel_logout.timeout.as_secs()))
        }
        Err(e) if e.is_connect() => Some("could not connect".to_string()),
        Err(_) => Some("the request failed".to_string()),
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
    if claim.attempt() as u32 >= config.max_attempts {
        return give_up(state, &claim, &failure).await;
    }
    let delay = retry_delay(claim.attempt() as u32, config.retry_base, config.retry_max, jitter());
    if !outbox::mark_retry(&state.db, &claim, state.now() + delay.as_secs() as i64, &failure).await? {
        return Ok(Outcome::LostClaim);
    }
    state.metrics.backchannel_logout.with_label_values(&["retried"]).inc();
    tracing::info!(
        client_id = %client_id, attempt = claim.attempt(), error = %failure, retry_in_secs = delay.as_secs(),
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
fn jitter() -> f64 {
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

//! Mail delivery: composing a message into the outbox (sealed under the master key,
//! since it may hold a link that grants something) and the loop that hands due messages
//! to the configured [`Mailer`](crate::mail::Mailer).
//!
//! The request that needs a message only queues it, in the transaction of the change it
//! reports; it never waits for SMTP. Every node runs the loop. A node claims one message
//! at a time under a lease (see [`crate::store::outbox`]), so one node sends each message;
//! a relay that fails is retried after a backoff that doubles, with jitter, until the
//! attempts allowed are spent; then the message is dead, audited and its content
//! dropped. Delivery is at least once: a node that dies after the relay took a message
//! and before recording it sends it again after its lease, with the same Message-ID.

use std::time::Duration;

use crate::mail::{Brand, Composed, Mailer};
use crate::state::AppState;
use crate::store::audit::NewAuditEvent;
use crate::store::entities::{EmailTokenPurpose, OutboxKind};
use crate::store::mail::QueuedMail;
use crate::store::outbox::{self, Claimed};

use super::{Error, ErrorCode, Result};

/// How often each node looks for due messages.
const DELIVERY_INTERVAL: Duration = Duration::from_secs(1);
/// Messages one node hands over per tick at most (one at a time).
const PER_TICK: usize = 20;

/// The answer of every mail feature while no mail is configured.
pub fn not_configured() -> Error {
    Error::Forbidden {
        code: ErrorCode::MailNotConfigured,
        description: "this server sends no mail (see `mail` in the configuration)".into(),
    }
}

/// Whether mail is configured, as the features that need it ask.
pub fn configured(state: &AppState) -> Result<()> {
    if state.mailer.is_some() { Ok(()) } else { Err(not_configured()) }
}

pub fn brand(state: &AppState) -> Brand {
    Brand { product_name: state.config.branding.product_name.clone(), logo_url: state.config.branding.logo_url.clone() }
}

fn seal_context(id: &str) -> String {
    format!("outbox-mail:{id}")
}

/// `composed`, sealed for the outbox under a fresh message id.
pub fn seal(state: &AppState, composed: &Composed) -> QueuedMail {
    let id = uuid::Uuid::new_v4().to_string();
    let plain = serde_json::to_vec(composed).unwrap_or_default();
    let sealed = state.master_key.encrypt(&seal_context(&id), &plain);
    QueuedMail { id, to: composed.to.clone(), sealed }
}

fn unseal(state: &AppState, claim: &Claimed) -> Option<Composed> {
    let plain = state.master_key.decrypt(&seal_context(&claim.row.id), &claim.row.payload).ok()?;
    serde_json::from_slice(&plain).ok()
}

/// Counts `count` messages as queued (after the transaction that queued them committed).
pub fn count_queued(state: &AppState, count: usize) {
    state.metrics.mail.with_label_values(&["queued"]).inc_by(count as u64);
}

/// Hands due mail over until the server stops.
pub async fn run_forever(state: AppState) {
    let mut tick = tokio::time::interval(DELIVERY_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = send_due(&state).await {
            tracing::warn!(error = %e, "mail delivery failed; retrying next tick");
        }
    }
}

/// Claims and sends due messages, one at a time, up to [`PER_TICK`]; how many it tried.
pub async fn send_due(state: &AppState) -> Result<usize> {
    let Some(mailer) = state.mailer.as_deref() else { return Ok(0) };
    let Some(config) = state.config.mail.as_ref() else { return Ok(0) };
    // The lease outlives the whole conversation with the relay (see `mail::SmtpMailer`).
    let lease = (config.timeout.as_secs() as i64).saturating_mul(3) + 30;
    let mut tried = 0;
    while tried < PER_TICK {
        let claimed = outbox::claim_due(&state.db, OutboxKind::Mail, &state.node_id, state.now(), lease, 1).await?;
        let Some(claim) = claimed.into_iter().next() else { break };
        attempt(state, mailer, claim).await?;
        tried += 1;
    }
    Ok(tried)
}

async fn attempt(state: &AppState, mailer: &dyn Mailer, claim: Claimed) -> Result<()> {
    let Some(config) = state.config.mail.as_ref() else { return Ok(()) };
    let Some(composed) = unseal(state, &claim) else {
        return give_up(state, &claim, "its content cannot be read (sealed under another master key?)").await;
    };
    let failure = match crate::mail::message(&config.from, &config.host, &claim.row.id, &composed) {
        Err(e) => Some(e),
        Ok(message) => mailer.send(&message).await.err(),
    };
    let Some(failure) = failure else {
        if outbox::mark_delivered(&state.db, &claim, state.now()).await? {
            state.metrics.mail.with_label_values(&["sent"]).inc();
        }
        return Ok(());
    };
    let attempt = u32::try_from(claim.attempt()).unwrap_or(u32::MAX);
    if failure.permanent || attempt >= config.max_attempts {
        return give_up(state, &claim, &failure.reason).await;
    }
    let delay =
        super::backchannel::retry_delay(attempt, config.retry_base, config.retry_max, super::backchannel::jitter());
    let now = state.now();
    let next = now.saturating_add(i64::try_from(delay.as_secs()).unwrap_or(i64::MAX));
    if outbox::mark_retry(&state.db, &claim, now, next, &failure.reason).await? {
        state.metrics.mail.with_label_values(&["retried"]).inc();
        tracing::info!(
            message_id = %claim.row.id, attempt, error = %failure.reason, retry_in_secs = delay.as_secs(),
            "mail not handed over; retrying"
        );
    }
    Ok(())
}

/// Marks the message dead (its content dropped), audited as `mail.dead`.
async fn give_up(state: &AppState, claim: &Claimed, why: &str) -> Result<()> {
    let now = state.now();
    let event = NewAuditEvent::success(now, "system", "mail.dead", &claim.row.id)
        .outcome("failure")
        .details(serde_json::json!({ "attempts": claim.attempt(), "error": why }));
    if outbox::mark_dead(&state.db, claim, now, why, event).await? {
        state.metrics.mail.with_label_values(&["dead"]).inc();
        tracing::warn!(message_id = %claim.row.id, attempts = claim.attempt(), error = %why, "mail given up");
    }
    Ok(())
}

/// The per-address buckets (across all nodes, like the per-username one): mail of one
/// purpose to one address at most `mail.per_address_per_hour` an hour, so the forms
/// cannot be used to fill someone's mailbox — and, one bucket per purpose, nobody can
/// spend a victim's reset mail by registering accounts with its address. `Err(secs)`
/// until the next one.
pub async fn take_address_token(
    state: &AppState,
    address: &str,
    purpose: EmailTokenPurpose,
) -> Result<Result<(), u64>> {
    let Some(config) = state.config.mail.as_ref() else { return Err(not_configured()) };
    let per_hour = i64::from(config.per_address_per_hour.max(1));
    let shape = crate::store::attempts::Shape { interval_ms: 3_600_000 / per_hour, burst: per_hour };
    let key = format!("mail:{purpose}:{}", address.to_lowercase());
    let verdict = crate::store::attempts::take(&state.db, &key, state.now().saturating_mul(1000), shape).await?;
    if verdict.is_err() {
        state.metrics.rate_limited.with_label_values(&["mail_address"]).inc();
    }
    Ok(verdict)
}

/// The one answer for a mailed link that cannot be used: unknown, used, expired,
/// replaced by a newer one, or no longer matching the account.
pub fn invalid_link() -> Error {
    Error::InvalidLink
}

/// Whether `token` could be one of ours with `prefix` (before any lookup).
pub fn plausible(token: &str, prefix: &str) -> bool {
    token.starts_with(prefix) && token.len() <= 128
}

/// The absolute URL of a hosted page with `token` in its query.
pub fn link(state: &AppState, path: &str, token: &str) -> String {
    let mut url = format!("{}{path}", state.config.issuer);
    url.push_str("?token=");
    url.push_str(token);
    url
}

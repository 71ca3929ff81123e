//! Prometheus metrics. Counters are incremented where things happen (the domain counts
//! tokens, reuse and lockouts; the HTTP layer counts requests and rate limiting); gauges
//! that mirror state (hashing queue, database pool, keys) are read at scrape time.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub tokens_issued: IntCounterVec,
    pub refresh_reuse: IntCounter,
    pub refresh_replayed: IntCounter,
    pub rate_limited: IntCounterVec,
    pub lockouts: IntCounter,
    pub hashing_queue: IntGauge,
    pub hashing_running: IntGauge,
    pub db_pool: IntGaugeVec,
    pub signing_keys: IntGaugeVec,
    /// Outbox messages waiting for delivery (all nodes'; set by each delivery pass).
    pub outbox_pending: IntGauge,
    /// Back-channel logout attempts by outcome: `delivered`, `retried`, `dead`.
    pub backchannel_logout: IntCounterVec,
    /// From the logout token's queueing to its delivery.
    pub backchannel_logout_latency: prometheus::Histogram,
    /// Mail by outcome: `queued`, `sent`, `retried`, `dead`.
    pub mail: IntCounterVec,
    /// DPoP proofs refused, by reason: `invalid`, `nonce` (none or stale), `replay`.
    pub dpop_refused: IntCounterVec,
    /// PostgreSQL's caches (`store::postgres::cache`): lookups, changes applied, and
    /// whether the change listener is connected.
    pub cache: crate::store::postgres::cache::CacheMetrics,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("latchkey".into()), None)?;
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route template, method and status"),
            &["route", "method", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency by route template")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            &["route", "method"],
        )?;
        let tokens_issued =
            IntCounterVec::new(Opts::new("tokens_issued_total", "Access tokens issued by grant"), &["grant"])?;
        let refresh_reuse = IntCounter::new("refresh_token_reuse_total", "Reused refresh tokens (sessions revoked)")?;
        let refresh_replayed = IntCounter::new(
            "refresh_token_replayed_total",
            "Refreshes answered again with the child already committed (the first answer was lost)",
        )?;
        let rate_limited =
            IntCounterVec::new(Opts::new("rate_limited_total", "Requests refused by a rate limit"), &["bucket"])?;
        let lockouts = IntCounter::new("lockouts_total", "Accounts locked after repeated failures")?;
        let hashing_queue = IntGauge::new("argon2_queue_depth", "Password checks waiting for a hashing thread")?;
        let hashing_running = IntGauge::new("argon2_running", "Password hashes being computed now")?;
        let db_pool = IntGaugeVec::new(Opts::new("db_pool_connections", "Database pool connections"), &["state"])?;
        let signing_keys =
            IntGaugeVec::new(Opts::new("signing_keys", "Signing keys published in the JWKS by state"), &["state"])?;
        let outbox_pending =
            IntGauge::new("outbox_pending", "Outbox messages (logout tokens, mail) awaiting delivery")?;
        let backchannel_logout = IntCounterVec::new(
            Opts::new("backchannel_logout_total", "Back-channel logout token deliveries by outcome"),
            &["outcome"],
        )?;
        let backchannel_logout_latency = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "backchannel_logout_delivery_seconds",
                "Time from a logout token's queueing to its delivery (whole seconds of the server clock)",
            )
            .buckets(vec![0.5, 1.0, 2.0, 5.0, 15.0, 60.0, 300.0, 1800.0, 7200.0]),
        )?;
        let mail = IntCounterVec::new(Opts::new("mail_total", "Mail messages by outcome"), &["outcome"])?;
        for outcome in ["queued", "sent", "retried", "dead"] {
            mail.with_label_values(&[outcome]);
        }
        registry.register(Box::new(mail.clone()))?;
        let dpop_refused =
            IntCounterVec::new(Opts::new("dpop_proofs_refused_total", "DPoP proofs refused by reason"), &["reason"])?;
        for reason in ["invalid", "nonce", "replay"] {
            dpop_refused.with_label_values(&[reason]);
        }
        registry.register(Box::new(dpop_refused.clone()))?;
        let cache = crate::store::postgres::cache::CacheMetrics {
            lookups: IntCounterVec::new(
                Opts::new("cache_lookups_total", "PostgreSQL cache lookups by cache and outcome (hit, miss, bypass)"),
                &["cache", "outcome"],
            )?,
            changes: IntCounter::new("cache_changes_applied_total", "Change notifications applied to the caches")?,
            listening: IntGauge::new(
                "cache_listener_connected",
                "1 while the change listener is connected and the caches trusted (PostgreSQL)",
            )?,
        };
        registry.register(Box::new(cache.lookups.clone()))?;
        registry.register(Box::new(cache.changes.clone()))?;
        registry.register(Box::new(cache.listening.clone()))?;
        registry.register(Box::new(outbox_pending.clone()))?;
        registry.register(Box::new(backchannel_logout.clone()))?;
        registry.register(Box::new(backchannel_logout_latency.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(tokens_issued.clone()))?;
        registry.register(Box::new(refresh_reuse.clone()))?;
        registry.register(Box::new(refresh_replayed.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(lockouts.clone()))?;
        registry.register(Box::new(hashing_queue.clone()))?;
        registry.register(Box::new(hashing_running.clone()))?;
        registry.register(Box::new(db_pool.clone()))?;
        registry.register(Box::new(signing_keys.clone()))?;
        Ok(Self {
            registry,
            http_requests,
            http_duration,
            tokens_issued,
            refresh_reuse,
            refresh_replayed,
            rate_limited,
            lockouts,
            hashing_queue,
            hashing_running,
            db_pool,
            signing_keys,
            outbox_pending,
            backchannel_logout,
            backchannel_logout_latency,
            mail,
            dpop_refused,
            cache,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if TextEncoder::new().encode(&self.registry.gather(), &mut buffer).is_err() {
            return String::new();
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

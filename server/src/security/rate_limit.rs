//! Token-bucket rate limits (governor), per client IP for each group of sensitive
//! endpoints. These buckets live in this node's memory only (DESIGN.md allows it: they
//! are the cheap first line; the per-username bucket and the lockout, which must hold
//! across nodes, are in the database — `store::attempts`, `store::users`); idle keys are
//! swept so memory stays bounded under many distinct IPs.

use std::net::IpAddr;
use std::num::NonZeroU32;

use std::time::Duration;

use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota as GovernorQuota, RateLimiter};

use crate::clock::SharedClock;
use crate::config::{Quota, RateLimits};

/// governor on the server's injected clock, so tests move rate-limit time as they move
/// every other time. Whole seconds, like that clock: a bucket refills in one-second steps.
#[derive(Clone)]
pub struct LimiterClock(SharedClock);

impl governor::clock::Clock for LimiterClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.0.now()).unwrap_or(0))
    }
}

type IpLimiter = RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, LimiterClock, NoOpMiddleware<Duration>>;

/// Endpoint groups with their own per-IP buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Login,
    Register,
    Token,
    Refresh,
    Totp,
    PasswordChange,
    /// Requests that send mail: password reset, address verification.
    Mail,
}

impl Bucket {
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Login => "login",
            Bucket::Register => "register",
            Bucket::Token => "token",
            Bucket::Refresh => "refresh",
            Bucket::Totp => "totp",
            Bucket::PasswordChange => "password_change",
            Bucket::Mail => "mail",
        }
    }
}

pub struct Limiters {
    per_ip: Vec<(Bucket, IpLimiter)>,
    max_keys: usize,
    clock: LimiterClock,
}

impl Limiters {
    pub fn new(config: &RateLimits, clock: SharedClock) -> Self {
        let clock = LimiterClock(clock);
        let limiter = |quota: Quota| -> IpLimiter {
            let per_minute = NonZeroU32::new(quota.per_minute).unwrap_or(NonZeroU32::MIN);
            let burst = NonZeroU32::new(quota.burst).unwrap_or(NonZeroU32::MIN);
            let quota = GovernorQuota::per_minute(per_minute).allow_burst(burst);
            RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock.clone())
        };
        Self {
            per_ip: vec![
                (Bucket::Login, limiter(config.login)),
                (Bucket::Register, limiter(config.register)),
                (Bucket::Token, limiter(config.token)),
                (Bucket::Refresh, limiter(config.refresh)),
                (Bucket::Totp, limiter(config.totp)),
                (Bucket::PasswordChange, limiter(config.password_change)),
                (Bucket::Mail, limiter(config.mail)),
            ],
            max_keys: config.max_tracked_keys,
            clock,
        }
    }

    /// `Err(seconds to wait)` when `ip` has used up its bucket for this group.
    pub fn check_ip(&self, bucket: Bucket, ip: IpAddr) -> Result<(), u64> {
        let Some((_, limiter)) = self.per_ip.iter().find(|(b, _)| *b == bucket) else {
            return Ok(());
        };
        if limiter.len() > self.max_keys {
            limiter.retain_recent();
        }
        limiter.check_key(&ip).map_err(|not_until| retry_after(&self.clock, &not_until))
    }

    /// Drops buckets that are full again (idle keys); run periodically.
    pub fn sweep(&self) {
        for (_, limiter) in &self.per_ip {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Keys currently tracked across all limiters.
    pub fn tracked_keys(&self) -> usize {
        self.per_ip.iter().map(|(_, l)| l.len()).sum::<usize>()
    }
}

fn retry_after(clock: &LimiterClock, not_until: &governor::NotUntil<Duration>) -> u64 {
    use governor::clock::Clock;
    not_until.wait_time_from(clock.now()).as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    #[test]
    fn burst_then_refuse_per_key() {
        let mut config = RawConfig::default().validate().unwrap().rate_limits;
        config.login = Quota::new(1, 3);
        let limits = Limiters::new(&config, crate::clock::ManualClock::new(1_000_000));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limits.check_ip(Bucket::Login, a).is_ok());
        }
        let wait = limits.check_ip(Bucket::Login, a).unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(limits.check_ip(Bucket::Login, b).is_ok(), "another IP has its own bucket");
        assert!(limits.check_ip(Bucket::Register, a).is_ok(), "another group has its own bucket");
    }

    #[test]
    fn buckets_refill_on_the_injected_clock() {
        let mut config = RawConfig::default().validate().unwrap().rate_limits;
        config.register = Quota::new(60, 3); // one a second, three at once
        let clock = crate::clock::ManualClock::new(1_000_000);
        let limits = Limiters::new(&config, clock.clone());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(limits.check_ip(Bucket::Register, ip).is_ok());
        }
        assert_eq!(limits.check_ip(Bucket::Register, ip), Err(1), "empty: one second to the next token");
        clock.advance(1);
        assert!(limits.check_ip(Bucket::Register, ip).is_ok(), "one token back after a second");
        assert!(limits.check_ip(Bucket::Register, ip).is_err());
        clock.advance(60);
        for _ in 0..3 {
            assert!(limits.check_ip(Bucket::Register, ip).is_ok(), "full again, but no more than the burst");
        }
        assert!(limits.check_ip(Bucket::Register, ip).is_err());
        // Swept once full again: idle keys do not pile up.
        clock.advance(60);
        limits.sweep();
        assert_eq!(limits.tracked_keys(), 0);
    }
}

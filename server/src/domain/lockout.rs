//! Account lockout: the backoff policy and the verdict on one password attempt.
//!
//! - Each factor (password, TOTP) counts its consecutive failures per account; at
//!   `threshold` failures the account locks for `base`, then twice as long for every
//!   further failure, capped at `max` (a threshold of 0 disables the lockout).
//! - The attempt is reserved in the database before the secret is checked
//!   ([`crate::store::users::reserve_attempt`] applies [`schedule`] in one statement),
//!   so concurrent attempts cannot slip past the lock, on any number of nodes.
//! - A success clears the factor's counter and lock.

use crate::config::Lockout;
use crate::store::entities::UserStatus;
use crate::store::users::{LockStep, UserRow};

/// Seconds to lock after `failures` consecutive failures: none below the threshold,
/// then `base · 2^(failures − threshold)`, capped at `max`.
pub fn lock_secs(policy: &Lockout, failures: u32) -> Option<u64> {
    if policy.threshold == 0 || failures < policy.threshold {
        return None;
    }
    let doublings = std::cmp::min(failures - policy.threshold, 30);
    Some(std::cmp::min(policy.base_secs.saturating_mul(1u64 << doublings), policy.max_secs))
}

/// Every distinct lock the policy can set, as (failures reached, seconds), from the
/// threshold up to the first step that reaches the cap; empty when disabled.
pub fn schedule(policy: &Lockout) -> Vec<LockStep> {
    let mut steps = Vec::new();
    if policy.threshold == 0 {
        return steps;
    }
    for extra in 0..=30u32 {
        let failures = policy.threshold + extra;
        let Some(lock_secs) = lock_secs(policy, failures) else { break };
        steps.push(LockStep { failures, lock_secs });
        if lock_secs >= policy.max_secs {
            break;
        }
    }
    steps
}

/// Why a password attempt was refused (the audit's `reason`; the client always gets
/// the same generic answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    UnknownUser,
    /// Locked: the reservation was refused, the hash was not checked.
    Locked,
    AccountDisabled,
    WrongPassword,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::UnknownUser => "unknown_user",
            Refusal::Locked => "locked",
            Refusal::AccountDisabled => "account_disabled",
            Refusal::WrongPassword => "wrong_password",
        }
    }
}

/// The verdict on a password attempt: `user` found by name (if any), whether its
/// attempt was reserved (not locked), and whether the password matched its hash.
pub fn judge_password(user: Option<&UserRow>, reserved: bool, matched: bool) -> Result<(), Refusal> {
    let Some(user) = user else { return Err(Refusal::UnknownUser) };
    if !reserved {
        return Err(Refusal::Locked);
    }
    match (matched, user.status == UserStatus::Active) {
        (true, true) => Ok(()),
        // A disabled account is refused whether or not the password matched.
        (_, false) => Err(Refusal::AccountDisabled),
        (false, true) => Err(Refusal::WrongPassword),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Lockout = Lockout { threshold: 5, base_secs: 30, max_secs: 3600 };

    #[test]
    fn the_lock_doubles_from_the_threshold_up_to_the_cap() {
        assert_eq!(lock_secs(&POLICY, 4), None);
        assert_eq!(lock_secs(&POLICY, 5), Some(30));
        assert_eq!(lock_secs(&POLICY, 6), Some(60));
        assert_eq!(lock_secs(&POLICY, 9), Some(480));
        assert_eq!(lock_secs(&POLICY, 40), Some(3600));
        assert_eq!(lock_secs(&POLICY, u32::MAX), Some(3600), "no overflow");
        assert_eq!(lock_secs(&Lockout { threshold: 0, ..POLICY }, 100), None);
    }

    #[test]
    fn the_schedule_lists_each_step_once_and_ends_at_the_cap() {
        let steps: Vec<(u32, u64)> = schedule(&POLICY).iter().map(|s| (s.failures, s.lock_secs)).collect();
        assert_eq!(steps, [(5, 30), (6, 60), (7, 120), (8, 240), (9, 480), (10, 960), (11, 1920), (12, 3600)]);
        assert!(schedule(&Lockout { threshold: 0, ..POLICY }).is_empty());
        let huge = Lockout { threshold: 1, base_secs: 1, max_secs: u64::MAX };
        assert_eq!(schedule(&huge).len(), 31, "bounded even when the cap is never reached");
    }

    fn user(status: UserStatus) -> UserRow {
        crate::store::entities::users::test_user(status)
    }

    #[test]
    fn every_combination_of_a_password_attempt_has_one_verdict() {
        let active = user(UserStatus::Active);
        let disabled = user(UserStatus::Disabled);
        assert_eq!(judge_password(Some(&active), true, true), Ok(()));
        assert_eq!(judge_password(Some(&active), true, false), Err(Refusal::WrongPassword));
        assert_eq!(judge_password(Some(&active), false, true), Err(Refusal::Locked), "locked even when right");
        assert_eq!(judge_password(Some(&disabled), true, true), Err(Refusal::AccountDisabled));
        assert_eq!(judge_password(Some(&disabled), true, false), Err(Refusal::AccountDisabled));
        assert_eq!(judge_password(None, false, false), Err(Refusal::UnknownUser));
    }
}

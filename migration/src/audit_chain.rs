//! How an audit event is linked into the log's hash chain. The format is part of the
//! stored data (every event's `chain_hash` was computed with it), so it lives beside the
//! schema and never changes: a new format would be a new version, chained from the last
//! event of this one.
//!
//! An event's link is `SHA-256(previous_hash ‖ "\n" ‖ content)` in lowercase hex, where
//! `previous_hash` is the hex link of the event before it (or [`GENESIS`] for the first)
//! and `content` is the JSON array
//! `[seq, occurred_at, actor, action, target, ip, outcome, details]` (`null` for an absent
//! target or IP; `details` as the stored string), written compactly with non-ASCII
//! characters as they are.

use sha2::{Digest, Sha256};

/// The link before the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What of an event its link covers: everything but its row id.
#[derive(Debug, Clone, Copy)]
pub struct Content<'a> {
    pub seq: i64,
    pub occurred_at: i64,
    pub actor: &'a str,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub outcome: &'a str,
    pub details: &'a str,
}

impl Content<'_> {
    /// This event's link, after `previous`.
    pub fn link(&self, previous: &str) -> String {
        let content = serde_json::json!([
            self.seq,
            self.occurred_at,
            self.actor,
            self.action,
            self.target,
            self.ip,
            self.outcome,
            self.details
        ]);
        let mut hasher = Sha256::new();
        hasher.update(previous.as_bytes());
        hasher.update(b"\n");
        hasher.update(content.to_string().as_bytes());
        hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_format_is_fixed() {
        let content = Content {
            seq: 1,
            occurred_at: 1_800_000_000,
            actor: "system",
            action: "key.rotate",
            target: Some("kid-1"),
            ip: None,
            outcome: "success",
            details: "{}",
        };
        // Computed independently (Python: sha256(GENESIS + "\n" + json.dumps(content,
        // separators=(",", ":"), ensure_ascii=False))); a change here breaks every stored chain.
        assert_eq!(content.link(GENESIS), "5efc85953011568fca6d385695e3bd30442eeebe228f06f7ae0c8235d16b2f29");
    }
}

//! DPoP proofs seen lately (see `security::dpop`): one row per proof, so each is
//! accepted once, on any node.
//!
//! Every DPoP request records its proof before anything else, so the write is on the
//! hot path of requests that otherwise write nothing (`client_credentials`, a call to
//! a protected resource). One commit per proof made the commit the largest cost DPoP
//! added; instead the proofs that arrive while a batch is being written wait in a
//! [`ProofQueue`] and go into the next batch together — one transaction, one commit,
//! however many proofs (group commit). A proof is still judged by the table's unique
//! key, so what holds across nodes is unchanged: of two nodes seeing one proof at
//! once, exactly one records it first.

use std::collections::HashSet;
use std::sync::Mutex;

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use tokio::sync::oneshot;

use super::{StoreError, StoreResult};

/// Proofs waiting to be recorded by the next batch.
#[derive(Default)]
pub struct ProofQueue {
    waiting: Mutex<Vec<Pending>>,
}

struct Pending {
    key: String,
    expires_at: i64,
    verdict: oneshot::Sender<StoreResult<bool>>,
}

/// The answer to one queued proof: ready once a batch holding it is recorded.
pub type Verdict = oneshot::Receiver<StoreResult<bool>>;

impl ProofQueue {
    /// Queues the proof `key` names, kept until `expires_at`.
    pub fn enqueue(&self, key: &str, expires_at: i64) -> Verdict {
        let (verdict, answer) = oneshot::channel();
        self.lock().push(Pending { key: key.to_string(), expires_at, verdict });
        answer
    }

    /// Every proof queued so far, as one batch to record.
    pub fn take(&self) -> ProofBatch {
        ProofBatch { pending: std::mem::take(&mut *self.lock()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        // Pushing or swapping a Vec cannot leave it half-changed.
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Proofs taken from the queue together.
pub struct ProofBatch {
    pending: Vec<Pending>,
}

impl ProofBatch {
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The rows to insert: each key once (two requests may carry one proof; the second
    /// is a replay of the first even within a batch), in key order — two nodes' batches
    /// sharing keys then wait on each other's uncommitted rows in the same order, and
    /// never deadlock.
    pub fn rows(&self) -> Vec<(&str, i64)> {
        let mut seen = HashSet::with_capacity(self.pending.len());
        let mut rows: Vec<(&str, i64)> = self
            .pending
            .iter()
            .filter(|p| seen.insert(p.key.as_str()))
            .map(|p| (p.key.as_str(), p.expires_at))
            .collect();
        rows.sort_unstable_by_key(|(key, _)| *key);
        rows
    }

    /// Answers every queued proof: given the keys the batch inserted (none had a row
    /// before), a proof is a first use when its key is among them and no earlier proof
    /// of this batch carried the same key.
    pub fn answer(self, recorded: StoreResult<HashSet<String>>) {
        match recorded {
            Ok(mut inserted) => {
                for pending in self.pending {
                    let first = inserted.remove(&pending.key);
                    // A receiver gone is a request that went away; nothing to tell it.
                    let _ = pending.verdict.send(Ok(first));
                }
            }
            Err(err) => {
                for pending in self.pending {
                    let _ = pending.verdict.send(Err(shared(&err)));
                }
            }
        }
    }
}

/// The verdict on a proof that was queued: its batch always answers (a batch is
/// answered even when its write fails), so a verdict dropped unanswered is a bug
/// surfaced as an error, never a silent first use.
pub async fn verdict(answer: Verdict) -> StoreResult<bool> {
    answer.await.unwrap_or_else(|_| Err(StoreError::Db(DbErr::Custom("a DPoP proof batch was not answered".into()))))
}

/// One error told to every proof of a failed batch (the kind is kept: an unavailable
/// database stays a 503).
fn shared(err: &StoreError) -> StoreError {
    match err {
        StoreError::Unavailable(e) => StoreError::Unavailable(DbErr::Custom(e.to_string())),
        other => StoreError::Db(DbErr::Custom(other.to_string())),
    }
}

/// Records a batch on PostgreSQL in one statement (one round trip, one commit):
/// the keys it inserted. The commit does not wait for its WAL flush
/// (`synchronous_commit = off`, for this transaction only): the rows are visible to
/// every node at commit as always, so a replay is caught exactly as before; only a crash
/// of PostgreSQL itself can lose the last fraction of a second of proofs (the WAL writer
/// flushes within three `wal_writer_delay`s, 600 ms by default), whose replay within
/// their minutes-long `iat` window would then pass once. Waiting for a durable commit
/// cost a quarter of the DPoP rate on the benchmark machine (1,152 against 1,494/s).
pub async fn record_postgres(db: &impl ConnectionTrait, rows: &[(&str, i64)]) -> StoreResult<HashSet<String>> {
    let keys: Vec<String> = rows.iter().map(|(key, _)| key.to_string()).collect();
    let expiries: Vec<i64> = rows.iter().map(|(_, expires_at)| *expires_at).collect();
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true)) \
         INSERT INTO dpop_proofs (proof_key, expires_at) \
         SELECT key, expires_at FROM unnest($1::text[], $2::bigint[]) AS batch (key, expires_at), relaxed \
         ORDER BY key ON CONFLICT (proof_key) DO NOTHING RETURNING proof_key",
        [keys.into(), expiries.into()],
    );
    let inserted = db.query_all_raw(statement).await?;
    inserted.iter().map(|row| row.try_get::<String>("", "proof_key").map_err(StoreError::from)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_answers_each_proof_and_a_key_twice_is_a_replay_the_second_time() {
        let queue = ProofQueue::default();
        let answers: Vec<_> = ["b", "a", "a", "c"].iter().map(|key| queue.enqueue(key, 10)).collect();
        let batch = queue.take();
        assert!(queue.take().is_empty(), "taking empties the queue");
        assert_eq!(batch.rows(), vec![("a", 10), ("b", 10), ("c", 10)]);
        // "c" was recorded by an earlier batch (or another node): not inserted now.
        batch.answer(Ok(["a".to_string(), "b".to_string()].into()));
        let mut verdicts = Vec::new();
        for answer in answers {
            verdicts.push(verdict(answer).await.unwrap());
        }
        assert_eq!(verdicts, [true, true, false, false], "b, then a, then a again, then c");
    }

    #[tokio::test]
    async fn a_failed_batch_fails_every_proof_in_it_with_the_same_kind() {
        let queue = ProofQueue::default();
        let answers: Vec<_> = ["a", "b"].iter().map(|key| queue.enqueue(key, 10)).collect();
        queue.take().answer(Err(StoreError::Unavailable(DbErr::Custom("down".into()))));
        for answer in answers {
            assert!(matches!(verdict(answer).await, Err(StoreError::Unavailable(_))));
        }
    }
}

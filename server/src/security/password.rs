//! Argon2id password hashing on a bounded pool.
//!
//! Hashing is deliberately expensive, so it runs on its own small set of threads (one
//! per core by default), fed by a bounded queue. A login flood therefore waits in the
//! queue instead of occupying the async workers, and beyond the queue it is refused
//! with [`HashError::Busy`] rather than growing memory without bound. Dedicated threads
//! (rather than tokio's blocking pool, which grows to hundreds of threads) also bound
//! the allocator arenas that keep Argon2's 19 MiB working memory resident: with many
//! threads, each one's arena would retain its own copy.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::oneshot;

use super::{Secret, random_bytes};
use crate::config::Argon2Settings;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("too many password checks in progress")]
    Busy,
    #[error("password hashing failed: {0}")]
    Internal(String),
}

type Job = Box<dyn FnOnce() + Send>;

pub struct PasswordHasher {
    argon2: Argon2<'static>,
    jobs: SyncSender<Job>,
    /// Jobs accepted but not yet started.
    queued: Arc<AtomicUsize>,
    /// A hash of a random password, verified against when the user does not exist so
    /// that unknown usernames cost the same as wrong passwords.
    dummy_hash: String,
    dummy_verifications: AtomicU64,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").field("queued", &self.queue_depth()).finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// Starts `threads` hashing threads with room for `max_waiting` queued jobs.
    pub fn new(settings: Argon2Settings, threads: usize, max_waiting: usize) -> Result<Self, HashError> {
        let params = Params::new(settings.memory_kib, settings.iterations, settings.parallelism, None)
            .map_err(|e| HashError::Internal(e.to_string()))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy_password = super::generate_token("");
        let dummy_hash = hash_with(&argon2, dummy_password.expose())?;
        let (jobs, receiver) = sync_channel::<Job>(max_waiting);
        let receiver = Arc::new(Mutex::new(receiver));
        let queued = Arc::new(AtomicUsize::new(0));
        for i in 0..threads.max(1) {
            let (receiver, queued) = (receiver.clone(), queued.clone());
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || worker(&receiver, &queued))
                .map_err(|e| HashError::Internal(e.to_string()))?;
        }
        Ok(Self { argon2, jobs, queued, dummy_hash, dummy_verifications: AtomicU64::new(0) })
    }

    /// Hashes a new password (PHC string with a random salt).
    pub async fn hash(&self, password: &Secret<String>) -> Result<String, HashError> {
        let argon2 = self.argon2.clone();
        let password = password.clone();
        self.run(move || hash_with(&argon2, password.expose())).await?
    }

    /// Verifies `password` against `stored`; with no stored hash (unknown user) it
    /// verifies against the dummy hash and returns `false`, taking the same time.
    pub async fn verify(&self, password: &Secret<String>, stored: Option<&str>) -> Result<bool, HashError> {
        let (hash, is_dummy) = match stored {
            Some(hash) => (hash.to_string(), false),
            None => {
                self.dummy_verifications.fetch_add(1, Ordering::Relaxed);
                (self.dummy_hash.clone(), true)
            }
        };
        let argon2 = self.argon2.clone();
        let password = password.clone();
        let matched = self
            .run(move || match PasswordHash::new(&hash) {
                Ok(parsed) => argon2.verify_password(password.expose().as_bytes(), &parsed).is_ok(),
                Err(_) => false,
            })
            .await?;
        Ok(matched && !is_dummy)
    }

    /// How many verifications ran against the dummy hash (for tests and metrics).
    pub fn dummy_verifications(&self) -> u64 {
        self.dummy_verifications.load(Ordering::Relaxed)
    }

    /// Jobs waiting for a hashing thread.
    pub fn queue_depth(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Result<T, HashError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(job());
        });
        self.queued.fetch_add(1, Ordering::SeqCst);
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                return Err(HashError::Busy);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                return Err(HashError::Internal("hashing threads are gone".into()));
            }
        }
        rx.await.map_err(|_| HashError::Internal("hashing job was dropped".into()))
    }
}

fn worker(receiver: &Mutex<Receiver<Job>>, queued: &AtomicUsize) {
    loop {
        let next = match receiver.lock() {
            Ok(guard) => guard.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = next else { return };
        queued.fetch_sub(1, Ordering::SeqCst);
        job();
    }
}

fn hash_with(argon2: &Argon2<'_>, password: &str) -> Result<String, HashError> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()).map_err(|e| HashError::Internal(e.to_string()))?;
    argon2
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordHasher {
        PasswordHasher::new(Argon2Settings { memory_kib: 1024, iterations: 1, parallelism: 1 }, 2, 8).unwrap()
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let hasher = cheap();
        let password = Secret::new("correct horse".to_string());
        let hash = hasher.hash(&password).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert!(hasher.verify(&password, Some(&hash)).await.unwrap());
        assert!(!hasher.verify(&Secret::new("wrong horse".into()), Some(&hash)).await.unwrap());
    }

    #[tokio::test]
    async fn unknown_user_runs_the_dummy_verification() {
        let hasher = cheap();
        assert_eq!(hasher.dummy_verifications(), 0);
        assert!(!hasher.verify(&Secret::new("anything".into()), None).await.unwrap());
        assert_eq!(hasher.dummy_verifications(), 1);
    }

    #[tokio::test]
    async fn queue_is_bounded() {
        let hasher = Arc::new(
            PasswordHasher::new(Argon2Settings { memory_kib: 8192, iterations: 3, parallelism: 1 }, 1, 1).unwrap(),
        );
        // One thread busy, one job queued: the rest of six concurrent jobs are refused.
        let password = Secret::new("password".to_string());
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let hasher = hasher.clone();
                let password = password.clone();
                tokio::spawn(async move { hasher.hash(&password).await })
            })
            .collect();
        let mut busy = 0;
        for task in tasks {
            if matches!(task.await.unwrap(), Err(HashError::Busy)) {
                busy += 1;
            }
        }
        assert!(busy >= 1, "with one slot and one waiter, some of six must be refused");
    }
}

//! Argon2id password hashing on a bounded pool.
//!
//! Hashing is deliberately expensive, so it runs on its own small set of threads (one
//! per core by default), fed by a bounded queue. A login flood therefore waits in the
//! queue instead of occupying the async workers, and beyond the queue it is refused
//! with [`HashError::Busy`] rather than growing memory without bound. Dedicated threads
//! (rather than tokio's blocking pool, which grows to hundreds of threads) also bound
//! Argon2's working memory (19 MiB at the default parameters): each hashing thread
//! allocates it once and reuses it for every hash while logins keep coming, and frees
//! it after [`RELEASE_IDLE_MEMORY_AFTER`] without work, so an idle server does not keep
//! it. (Allocating it per hash made glibc's allocator keep freed blocks resident: RSS
//! grew ~19 MiB per login up to ~300 MiB under load.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use flume::{Receiver, RecvTimeoutError, Sender, TrySendError};

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use subtle::ConstantTimeEq;
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

/// Work for a hashing thread, given that thread's reusable Argon2 memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

const SALT_LEN: usize = 16;
const OUTPUT_LEN: usize = 32;

pub struct PasswordHasher {
    params: Params,
    jobs: Sender<Job>,
    /// Jobs accepted but not yet started.
    queued: Arc<AtomicUsize>,
    /// Jobs being computed.
    running: Arc<AtomicUsize>,
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
        let params = Params::new(settings.memory_kib, settings.iterations, settings.parallelism, Some(OUTPUT_LEN))
            .map_err(|e| HashError::Internal(e.to_string()))?;
        // Verifying against any well-formed hash with these parameters costs the same as
        // against a real one, so the dummy needs no hashing: random salt, random output.
        let dummy_hash = phc_string(&params, &random_bytes::<SALT_LEN>(), &random_bytes::<OUTPUT_LEN>());
        // flume rather than std's mpsc: every thread waits on the queue itself (with a
        // timeout, to free its memory), which a mutex-shared std receiver cannot do.
        let (jobs, receiver) = flume::bounded::<Job>(max_waiting.max(1));
        let queued = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        for i in 0..threads.max(1) {
            let (receiver, queued, running) = (receiver.clone(), queued.clone(), running.clone());
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || worker(&receiver, &queued, &running))
                .map_err(|e| HashError::Internal(e.to_string()))?;
        }
        Ok(Self { params, jobs, queued, running, dummy_hash, dummy_verifications: AtomicU64::new(0) })
    }

    /// Hashes a new password into a PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
    pub async fn hash(&self, password: &Secret<String>) -> Result<String, HashError> {
        let params = self.params.clone();
        let password = password.clone();
        self.run(move |memory| {
            let salt = random_bytes::<SALT_LEN>();
            let mut output = [0u8; OUTPUT_LEN];
            argon2_into(&params, password.expose().as_bytes(), &salt, &mut output, memory)?;
            Ok(phc_string(&params, &salt, &output))
        })
        .await?
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
        let password = password.clone();
        let matched = self.run(move |memory| verify_phc(&hash, password.expose().as_bytes(), memory)).await?;
        Ok(matched && !is_dummy)
    }

    /// How many verifications ran against the dummy hash (for tests and metrics).
    pub fn dummy_verifications(&self) -> u64 {
        self.dummy_verifications.load(Ordering::Relaxed)
    }

    /// Hashes being computed right now (one per busy thread).
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Jobs waiting for a hashing thread.
    pub fn queue_depth(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _ = tx.send(job(memory));
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

/// A hashing thread frees its Argon2 memory after this long without work.
pub const RELEASE_IDLE_MEMORY_AFTER: Duration = Duration::from_secs(2);

/// The working memory is reserved at least this large (32 MiB and one block), though
/// only the first `m` KiB are ever touched and so resident. glibc serves allocations
/// above its largest mmap threshold (32 MiB on 64-bit) with a mapping of their own that
/// `free` unmaps; a 19 MiB block would instead come from a thread's arena once the
/// dynamic threshold had grown, and an arena does not give the middle of its heap back
/// (measured: the freed blocks stayed resident and new ones were added beside them).
const ALWAYS_MAPPED_BLOCKS: usize = 32 * 1024 + 1;
const _: () = assert!(std::mem::size_of::<Block>() == 1024, "an Argon2 block is 1 KiB");

fn worker(receiver: &Receiver<Job>, queued: &AtomicUsize, running: &AtomicUsize) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let next = if memory.is_empty() {
            receiver.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            receiver.recv_timeout(RELEASE_IDLE_MEMORY_AFTER)
        };
        match next {
            Ok(job) => {
                running.fetch_add(1, Ordering::SeqCst);
                queued.fetch_sub(1, Ordering::SeqCst);
                job(&mut memory);
                running.fetch_sub(1, Ordering::SeqCst);
            }
            Err(RecvTimeoutError::Timeout) => memory = Vec::new(),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Argon2id into `output`, using (and growing, once) this thread's `memory`.
fn argon2_into(
    params: &Params,
    password: &[u8],
    salt: &[u8],
    output: &mut [u8],
    memory: &mut Vec<Block>,
) -> Result<(), HashError> {
    let blocks = params.block_count();
    if memory.len() < blocks {
        if memory.capacity() < blocks {
            *memory = Vec::with_capacity(blocks.max(ALWAYS_MAPPED_BLOCKS));
        }
        memory.resize(blocks, Block::default());
    }
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password, salt, output, &mut memory[..blocks])
        .map_err(|e| HashError::Internal(e.to_string()))
}

fn phc_string(params: &Params, salt: &[u8], output: &[u8]) -> String {
    format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(output)
    )
}

/// Checks a stored Argon2id PHC string (with whatever parameters it was made with).
fn verify_phc(stored: &str, password: &[u8], memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else { return false };
    if parsed.algorithm.as_str() != "argon2id" {
        return false;
    }
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
    let Ok(params) = Params::try_from(&parsed) else { return false };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    let expected = expected.as_bytes();
    let mut output = vec![0u8; expected.len()];
    let Ok(params) = Params::new(params.m_cost(), params.t_cost(), params.p_cost(), Some(expected.len())) else {
        return false;
    };
    argon2_into(&params, password, salt, &mut output, memory).is_ok() && bool::from(output.as_slice().ct_eq(expected))
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
    async fn hashes_interoperate_with_the_argon2_crate() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _, SaltString};
        let hasher = cheap();
        let password = Secret::new("interop password".to_string());
        // Ours verifies with the crate's own verifier…
        let ours = hasher.hash(&password).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"interop password", &parsed).is_ok());
        // …and a hash made by the crate (other parameters) verifies with ours.
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(2048, 2, 1, None).unwrap())
            .hash_password(b"interop password", &salt)
            .unwrap()
            .to_string();
        assert!(hasher.verify(&password, Some(&theirs)).await.unwrap());
        assert!(!hasher.verify(&Secret::new("nope".into()), Some(&theirs)).await.unwrap());
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
            PasswordHasher::new(Argon2Settings { memory_kib: 65_536, iterations: 3, parallelism: 1 }, 1, 1).unwrap(),
        );
        let password = Secret::new("password".to_string());
        let submit = |hasher: &Arc<PasswordHasher>| {
            let (hasher, password) = (hasher.clone(), password.clone());
            tokio::spawn(async move { hasher.hash(&password).await })
        };
        // The one thread takes a first job...
        let first = submit(&hasher);
        while hasher.running() == 0 {
            tokio::task::yield_now().await;
        }
        // ...so of five more, one waits in the queue of one and four are refused at once.
        let more: Vec<_> = (0..5).map(|_| submit(&hasher)).collect();
        let mut busy = 0;
        for task in more {
            if matches!(task.await.unwrap(), Err(HashError::Busy)) {
                busy += 1;
            }
        }
        assert!(first.await.unwrap().is_ok());
        assert_eq!(busy, 4, "one running, one waiting: the other four are refused");
    }
}

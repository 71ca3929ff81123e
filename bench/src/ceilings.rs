//! This machine's physical limits, measured in-process in the same run: RS256 signatures
//! and verifications per second with a pre-parsed aws-lc key, Argon2id hashes per
//! second at the server's configured parameters, and the two ES256 operations a DPoP
//! proof costs (the client's signature, the server's verification with the key parsed
//! from the proof's `jwk` each time, as the server must), on one core and on all cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Block, Params, Version};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rate {
    pub one_core: f64,
    pub all_cores: f64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ceilings {
    pub cores: usize,
    pub rs256_sign_per_sec: Rate,
    pub rs256_verify_per_sec: Rate,
    pub argon2id_hash_per_sec: Rate,
    pub es256_sign_per_sec: Rate,
    pub es256_verify_per_sec: Rate,
}

/// Runs `work` on `threads` threads for `window`; returns operations per second.
fn rate(threads: usize, window: Duration, work: Work) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, done, work) = (stop.clone(), done.clone(), work.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    work();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(window);
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        let _ = handle.join();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Which ceiling bounds a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Sign,
    Verify,
    Argon2,
    ProofSign,
    ProofVerify,
}

type Work = Arc<dyn Fn() + Send + Sync>;

/// The three workloads, built once (key generated, memory sized) and re-measurable.
pub struct Workloads {
    cores: usize,
    sign: Work,
    verify: Work,
    hash: Work,
    proof_sign: Work,
    proof_verify: Work,
}

impl Workloads {
    pub fn new(argon2_memory_kib: u32, argon2_iterations: u32) -> anyhow::Result<Self> {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let pair = Arc::new(RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| anyhow::anyhow!("RSA keygen failed"))?);
        let message = vec![b'x'; 600]; // about the size of a signed access token's header and claims
        let sign = {
            let (pair, message) = (pair.clone(), message.clone());
            Arc::new(move || {
                let rng = aws_lc_rs::rand::SystemRandom::new();
                let mut sig = vec![0; pair.public_modulus_len()];
                let _ = pair.sign(&RSA_PKCS1_SHA256, &rng, &message, &mut sig);
            }) as Work
        };
        let mut sig = vec![0; pair.public_modulus_len()];
        pair.sign(&RSA_PKCS1_SHA256, &aws_lc_rs::rand::SystemRandom::new(), &message, &mut sig)
            .map_err(|_| anyhow::anyhow!("sign failed"))?;
        // Parsed once, as the server keeps its verification keys.
        let public =
            signature::ParsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, pair.public_key().as_ref())
                .map_err(|_| anyhow::anyhow!("parsing the public key failed"))?;
        let verify = Arc::new(move || {
            let _ = public.verify_sig(&message, &sig);
        }) as Work;
        let params = Params::new(argon2_memory_kib, argon2_iterations, 1, None).map_err(|e| anyhow::anyhow!("{e}"))?;
        let blocks = params.block_count();
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        // Each thread reuses one working block, as the server's hashing threads do.
        thread_local! {
            static MEMORY: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let hash = Arc::new(move || {
            MEMORY.with_borrow_mut(|memory| {
                memory.resize(blocks, Block::default());
                let mut output = [0u8; 32];
                let _ = argon2.hash_password_into_with_memory(
                    b"correct horse battery",
                    b"bench-salt-16byt",
                    &mut output,
                    &mut memory[..],
                );
            });
        }) as Work;
        let (proof_sign, proof_verify) = proof_workloads()?;
        Ok(Self { cores, sign, verify, hash, proof_sign, proof_verify })
    }

    pub fn cores(&self) -> usize {
        self.cores
    }

    fn work(&self, bound: Bound) -> Work {
        match bound {
            Bound::Sign => self.sign.clone(),
            Bound::Verify => self.verify.clone(),
            Bound::Argon2 => self.hash.clone(),
            Bound::ProofSign => self.proof_sign.clone(),
            Bound::ProofVerify => self.proof_verify.clone(),
        }
    }

    /// Every ceiling, on one core and on all of them.
    pub fn measure(&self, window: Duration) -> Ceilings {
        let both = |bound: Bound, window: Duration| Rate {
            one_core: rate(1, window, self.work(bound)),
            all_cores: rate(self.cores, window, self.work(bound)),
        };
        Ceilings {
            cores: self.cores,
            rs256_sign_per_sec: both(Bound::Sign, window),
            rs256_verify_per_sec: both(Bound::Verify, window),
            argon2id_hash_per_sec: both(Bound::Argon2, window * 2),
            es256_sign_per_sec: both(Bound::ProofSign, window),
            es256_verify_per_sec: both(Bound::ProofVerify, window),
        }
    }

    /// One ceiling on all cores, re-measured just before the scenario it bounds: on a
    /// shared machine the start-of-run figure can be minutes and a neighbour's load old.
    pub fn measure_all_cores(&self, bound: Bound, window: Duration) -> f64 {
        let window = if bound == Bound::Argon2 { window * 2 } else { window };
        rate(self.cores, window, self.work(bound))
    }
}

/// A DPoP proof's two signature operations: signing about a proof's bytes, and verifying
/// them with the public key taken from its uncompressed point (no parsed key kept).
fn proof_workloads() -> anyhow::Result<(Work, Work)> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let document = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("P-256 keygen failed"))?;
    let pair = Arc::new(
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, document.as_ref())
            .map_err(|_| anyhow::anyhow!("P-256 key parse failed"))?,
    );
    let message = vec![b'x'; 400]; // about a proof's header and claims
    let sign = {
        let (pair, message) = (pair.clone(), message.clone());
        Arc::new(move || {
            let _ = pair.sign(&aws_lc_rs::rand::SystemRandom::new(), &message);
        }) as Work
    };
    let signature = pair.sign(&rng, &message).map_err(|_| anyhow::anyhow!("P-256 sign failed"))?.as_ref().to_vec();
    let point = pair.public_key().as_ref().to_vec();
    let verify = Arc::new(move || {
        let _ = signature::UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point).verify(&message, &signature);
    }) as Work;
    Ok((sign, verify))
}

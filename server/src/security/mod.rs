//! Secret handling: the `Secret` wrapper, randomness, constant-time comparison,
//! password hashing and the master key that encrypts private material at rest.

pub mod dpop;
pub mod master_key;
pub mod passkeys;
pub mod password;
pub mod rate_limit;
pub mod sealed_child;
pub mod totp;

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Wraps a secret so it cannot leak through `Debug` or `Display` by accident.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

/// Fills a buffer from the operating system's CSPRNG (via aws-lc).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The system RNG only fails if the kernel cannot provide entropy; nothing sensible
    // can continue then, so this is the one place we let it abort.
    aws_lc_rs::rand::fill(&mut buf).expect("the operating system's random source failed");
    buf
}

/// A high-entropy token: `prefix` followed by 32 random bytes in base64url.
/// The prefix lets secret scanners recognise leaked tokens.
pub fn generate_token(prefix: &str) -> Secret<String> {
    let bytes = random_bytes::<32>();
    Secret(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// SHA-256 in lowercase hex: how refresh tokens and generated client secrets are stored.
/// These secrets carry 256 bits of entropy, so a fast hash is enough; a slow one would
/// only cap throughput.
pub fn sha256_hex(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Creates `dir` and any missing parents readable by the owner only (0700): the data and
/// key directories hold the database and the master key.
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Creates an empty file readable by the owner only (0600) unless it exists. SQLite gives
/// its WAL and shared-memory files the mode of the database file, so they follow.
pub fn create_private_file(path: &std::path::Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_hides_value() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?}"), "<secret>");
    }

    #[test]
    fn tokens_are_prefixed_and_distinct() {
        let a = generate_token("lk_rt_");
        let b = generate_token("lk_rt_");
        assert!(a.expose().starts_with("lk_rt_"));
        assert_eq!(a.expose().len(), 6 + 43);
        assert_ne!(a, b);
    }

    #[test]
    fn sha256_hex_known_vector() {
        assert_eq!(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}

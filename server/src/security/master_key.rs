//! The master key: 256 bits in a file that only the server's user can read. It encrypts
//! private signing keys (and, later, TOTP secrets) at rest with AES-256-GCM, so a copy
//! of the database alone reveals no private material.

use std::fs;
use std::io::Write;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use super::random_bytes;

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("cannot read master key file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot create master key file {path}: {source}")]
    Create { path: String, source: std::io::Error },
    #[error("master key file {path} does not hold a base64-encoded 32-byte key")]
    Malformed { path: String },
    #[error("master key file {path} is writable by every user (mode {mode:o}); run chmod 600 on it")]
    WorldWritable { path: String, mode: u32 },
}

/// Decryption failed: wrong master key, or the ciphertext was altered.
#[derive(Debug, thiserror::Error)]
#[error("decryption failed (wrong master key or corrupted data)")]
pub struct DecryptError;

/// The HKDF salt of every key derived from the master key (its purpose is the info).
const DERIVATION_SALT: &[u8] = b"latchkey master key derivations v1";

pub struct MasterKey {
    key: LessSafeKey,
    /// HKDF's pseudo-random key over the master key, for keys of other purposes.
    derivations: aws_lc_rs::hkdf::Prk,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<secret>)")
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        // AES-256 accepts any 32-byte key, so construction cannot fail.
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).unwrap_or_else(|_| unreachable!());
        let salt = aws_lc_rs::hkdf::Salt::new(aws_lc_rs::hkdf::HKDF_SHA256, DERIVATION_SALT);
        Self { key: LessSafeKey::new(unbound), derivations: salt.extract(bytes) }
    }

    /// An HMAC-SHA-256 key for `purpose`, derived from the master key with HKDF: every
    /// node holding the master key derives the same one, and no two purposes share one.
    pub fn hmac_key(&self, purpose: &str) -> aws_lc_rs::hmac::Key {
        self.derivations
            .expand(&[purpose.as_bytes()], aws_lc_rs::hmac::HMAC_SHA256)
            .map(aws_lc_rs::hmac::Key::from)
            // HKDF-SHA-256 expands to 32 bytes for any info.
            .unwrap_or_else(|_| unreachable!())
    }

    /// Loads the key, creating a fresh one (mode 0600) if the file does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), MasterKeyError> {
        let display = path.display().to_string();
        match fs::read_to_string(path) {
            Ok(text) => {
                check_existing_mode(path, &display)?;
                let decoded = Zeroizing::new(
                    STANDARD.decode(text.trim()).map_err(|_| MasterKeyError::Malformed { path: display.clone() })?,
                );
                let bytes: &[u8; 32] =
                    decoded.as_slice().try_into().map_err(|_| MasterKeyError::Malformed { path: display })?;
                Ok((Self::from_bytes(bytes), false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let bytes = Zeroizing::new(random_bytes::<32>());
                write_private_file(path, STANDARD.encode(*bytes).as_bytes())
                    .map_err(|source| MasterKeyError::Create { path: display, source })?;
                Ok((Self::from_bytes(&bytes), true))
            }
            Err(source) => Err(MasterKeyError::Read { path: display, source }),
        }
    }

    /// Encrypts `plaintext`, binding it to `context` (e.g. the row it is stored in) so a
    /// ciphertext copied into another row fails to decrypt. Output: base64(nonce ‖ ct ‖ tag).
    pub fn encrypt(&self, context: &str, plaintext: &[u8]) -> String {
        let nonce_bytes = random_bytes::<NONCE_LEN>();
        let mut buffer = plaintext.to_vec();
        // Sealing only fails for inputs beyond GCM's ~64 GiB limit.
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(context.as_bytes()),
                &mut buffer,
            )
            .unwrap_or_else(|_| unreachable!());
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buffer);
        STANDARD.encode(out)
    }

    pub fn decrypt(&self, context: &str, encoded: &str) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        let raw = STANDARD.decode(encoded).map_err(|_| DecryptError)?;
        if raw.len() < NONCE_LEN {
            return Err(DecryptError);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| DecryptError)?;
        let mut buffer = Zeroizing::new(sealed.to_vec());
        let plain_len =
            self.key.open_in_place(nonce, Aad::from(context.as_bytes()), &mut buffer).map_err(|_| DecryptError)?.len();
        buffer.truncate(plain_len);
        Ok(buffer)
    }
}

/// An existing key file anyone may write is refused (anyone could swap the key); one
/// others may read is served with a warning, since the operator may rely on a group.
fn check_existing_mode(path: &Path, shown: &str) -> Result<(), MasterKeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)
            .map_err(|source| MasterKeyError::Read { path: shown.to_string(), source })?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o002 != 0 {
            return Err(MasterKeyError::WorldWritable { path: shown.to_string(), mode });
        }
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = shown,
                mode = %format!("{mode:o}"),
                "the master key file is readable by other users; run chmod 600 on it"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, shown);
    Ok(())
}

/// Creates `path` (and its directory, 0700) readable and writable by the owner only.
fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        super::create_private_dir(dir)?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_are_the_same_for_one_master_key_and_differ_by_purpose() {
        let tag = |key: &MasterKey, purpose: &str| {
            aws_lc_rs::hmac::sign(&key.hmac_key(purpose), b"message").as_ref().to_vec()
        };
        let (a, b) = (MasterKey::from_bytes(&[7u8; 32]), MasterKey::from_bytes(&[7u8; 32]));
        assert_eq!(tag(&a, "dpop-nonce"), tag(&b, "dpop-nonce"), "every node derives the same key");
        assert_ne!(tag(&a, "dpop-nonce"), tag(&a, "other"));
        assert_ne!(tag(&a, "dpop-nonce"), tag(&MasterKey::from_bytes(&[8u8; 32]), "dpop-nonce"));
    }

    #[test]
    fn round_trip_and_context_binding() {
        let key = MasterKey::from_bytes(&[7u8; 32]);
        let sealed = key.encrypt("signing_key:abc", b"private");
        assert_eq!(key.decrypt("signing_key:abc", &sealed).unwrap().as_slice(), b"private");
        assert!(key.decrypt("signing_key:other", &sealed).is_err());
        let wrong = MasterKey::from_bytes(&[8u8; 32]);
        assert!(wrong.decrypt("signing_key:abc", &sealed).is_err());
    }

    #[test]
    fn file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/master.key");
        let (first, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let (second, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(!created);
        let sealed = first.encrypt("x", b"data");
        assert_eq!(second.decrypt("x", &sealed).unwrap().as_slice(), b"data");
    }

    #[cfg(unix)]
    #[test]
    fn world_writable_key_is_refused_and_its_directory_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/master.key");
        MasterKey::load_or_create(&path).unwrap();
        assert_eq!(fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(MasterKey::load_or_create(&path).is_ok(), "group- or world-readable: a warning only");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        let err = MasterKey::load_or_create(&path).unwrap_err();
        assert!(matches!(err, MasterKeyError::WorldWritable { mode: 0o666, .. }), "{err}");
    }

    #[test]
    fn malformed_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        fs::write(&path, "not a key").unwrap();
        let err = MasterKey::load_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("does not hold a base64-encoded 32-byte key"));
    }
}

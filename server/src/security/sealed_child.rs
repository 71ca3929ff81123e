//! The child of a rotated refresh token, sealed so that only whoever holds the parent
//! can open it: a retry whose first answer was lost gets the same child back (see
//! `domain::sessions`), and the database alone never yields a usable token.
//!
//! Key: HKDF-SHA-256 over the parent token's plaintext with a random per-row salt;
//! cipher: AES-256-GCM with a random nonce, the purpose string as associated data.
//! Stored as base64url(salt ‖ nonce ‖ ciphertext ‖ tag). The parent's plaintext is
//! 256 random bits, so HKDF's extract step is all the key stretching it needs.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{Secret, random_bytes};

const SALT_LEN: usize = 16;
const PURPOSE: &[u8] = b"latchkey refresh child v1";

fn key_for(parent: &str, salt: &[u8]) -> LessSafeKey {
    let okm = Salt::new(HKDF_SHA256, salt).extract(parent.as_bytes());
    // The info is fixed and the length is AES-256's, so expansion cannot fail.
    let unbound: UnboundKey = okm
        .expand(&[PURPOSE], &AES_256_GCM)
        .map(UnboundKey::from)
        .unwrap_or_else(|_| unreachable!("HKDF-SHA-256 yields 32 bytes"));
    LessSafeKey::new(unbound)
}

/// Seals `child` under a key derived from `parent`.
pub fn seal(parent: &Secret<String>, child: &Secret<String>) -> String {
    let salt = random_bytes::<SALT_LEN>();
    let nonce = random_bytes::<NONCE_LEN>();
    let mut buffer = child.expose().as_bytes().to_vec();
    key_for(parent.expose(), &salt)
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(PURPOSE), &mut buffer)
        .unwrap_or_else(|_| unreachable!("AES-GCM seals any buffer that fits in memory"));
    let mut out = Vec::with_capacity(SALT_LEN + NONCE_LEN + buffer.len());
    out.extend_from_slice(&salt);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&buffer);
    URL_SAFE_NO_PAD.encode(out)
}

/// Opens what [`seal`] made, with the parent it was sealed under; `None` for any other
/// parent or a damaged value.
pub fn open(parent: &Secret<String>, sealed: &str) -> Option<Secret<String>> {
    let raw = zeroize::Zeroizing::new(URL_SAFE_NO_PAD.decode(sealed).ok()?);
    if raw.len() < SALT_LEN + NONCE_LEN {
        return None;
    }
    let (salt, rest) = raw.split_at(SALT_LEN);
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buffer = zeroize::Zeroizing::new(ciphertext.to_vec());
    let plain = key_for(parent.expose(), salt).open_in_place(nonce, Aad::from(PURPOSE), &mut buffer).ok()?;
    String::from_utf8(plain.to_vec()).ok().map(Secret::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> Secret<String> {
        Secret::new(text.to_string())
    }

    #[test]
    fn only_the_parent_opens_its_child() {
        let parent = secret("lk_rt_parent");
        let sealed = seal(&parent, &secret("lk_rt_child"));
        assert_eq!(open(&parent, &sealed).map(|c| c.expose().clone()).as_deref(), Some("lk_rt_child"));
        assert!(open(&secret("lk_rt_other"), &sealed).is_none(), "a wrong parent fails");
        assert!(!sealed.contains("child"), "the child is not in the clear");
    }

    #[test]
    fn every_seal_is_fresh_and_damage_is_detected() {
        let parent = secret("lk_rt_parent");
        let child = secret("lk_rt_child");
        assert_ne!(seal(&parent, &child), seal(&parent, &child), "a new salt and nonce each time");
        let sealed = seal(&parent, &child);
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(open(&parent, &URL_SAFE_NO_PAD.encode(bytes)).is_none());
        assert!(open(&parent, "").is_none());
        assert!(open(&parent, "not base64!").is_none());
    }
}

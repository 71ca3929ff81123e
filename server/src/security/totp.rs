//! TOTP (RFC 6238) as authenticator apps expect it: HMAC-SHA-1, 6 digits, 30-second
//! steps. Code generation comes from totp-rs; this module adds the ±1-step window with
//! the matched step reported (so callers can refuse a step already used), constant-time
//! comparison, the `otpauth://` URI, a QR code as SVG, and recovery codes.

use base64::Engine;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Builder, Totp};

use super::{Secret, random_bytes};

pub const STEP_SECS: i64 = 30;
pub const SECRET_LEN: usize = 20;
pub const RECOVERY_CODE_COUNT: usize = 10;

fn totp(secret: &[u8], issuer: &str, account: &str) -> Option<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(0)
        .with_step_duration(STEP_SECS as _)
        .with_secret(secret.to_vec())
        .with_issuer(Some(issuer))
        .with_account_name(account)
        .build()
        .ok()
}

pub fn generate_secret() -> Secret<Vec<u8>> {
    Secret::new(random_bytes::<SECRET_LEN>().to_vec())
}

pub fn step_of(unix_time: i64) -> i64 {
    unix_time.div_euclid(STEP_SECS)
}

/// The code for one time step.
pub fn code_at_step(secret: &[u8], step: i64) -> Option<String> {
    let totp = totp(secret, "x", "x")?;
    Some(totp.generate((step.max(0) * STEP_SECS) as u64).to_string())
}

/// The step (within ±`skew` of now) whose code equals `code`, if any. Every candidate
/// is compared in constant time.
pub fn matching_step(secret: &[u8], code: &str, now: i64, skew: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = step_of(now);
    let mut found = None;
    for step in (current - skew)..=(current + skew) {
        if let Some(expected) = code_at_step(secret, step)
            && bool::from(expected.as_bytes().ct_eq(code.as_bytes()))
        {
            found = found.or(Some(step));
        }
    }
    found
}

/// Base32 (RFC 4648, no padding), as users type it into apps.
pub fn secret_base32(secret: &[u8]) -> String {
    totp_rs::Secret::from(secret.to_vec()).to_base32()
}

/// `otpauth://totp/Issuer:account?secret=…&issuer=…` for QR codes.
pub fn otpauth_uri(secret: &[u8], issuer: &str, account: &str) -> Option<String> {
    totp(secret, issuer, &account.replace(':', "_"))?.to_url().ok()
}

/// The QR code of `text` as a standalone SVG document.
pub fn qr_svg(text: &str) -> Option<String> {
    let qr = qrcodegen::QrCode::encode_text(text, qrcodegen::QrCodeEcc::Medium).ok()?;
    let border = 4;
    let size = qr.size() + border * 2;
    let mut path = String::new();
    for y in 0..qr.size() {
        for x in 0..qr.size() {
            if qr.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + border, y + border));
            }
        }
    }
    Some(format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" version="1.1" viewBox="0 0 {size} {size}" stroke="none"><rect width="100%" height="100%" fill="#FFFFFF"/><path d="{path}" fill="#000000"/></svg>"##
    ))
}

/// Ten single-use recovery codes like `k7q2-9xw4-m3ta` (60 random bits each).
pub fn generate_recovery_codes() -> Vec<Secret<String>> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    (0..RECOVERY_CODE_COUNT)
        .map(|_| {
            let bytes = random_bytes::<12>();
            let chars: String = bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect();
            Secret::new(format!("{}-{}-{}", &chars[0..4], &chars[4..8], &chars[8..12]))
        })
        .collect()
}

/// Recovery codes are compared after normalising case, spaces and dashes.
pub fn normalise_recovery_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect()
}

/// A QR image for clients that prefer a data URL.
pub fn svg_data_url(svg: &str) -> String {
    format!("data:image/svg+xml;base64,{}", base64::engine::general_purpose::STANDARD.encode(svg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vector() {
        // RFC 6238 Appendix B, SHA-1 secret "12345678901234567890", T = 59 s → 94287082
        // (8 digits); the 6-digit code is its last six digits.
        let secret = b"12345678901234567890";
        assert_eq!(code_at_step(secret, step_of(59)).unwrap(), "287082");
        assert_eq!(code_at_step(secret, step_of(1_111_111_109)).unwrap(), "081804");
    }

    #[test]
    fn window_is_plus_minus_one_step() {
        let secret = b"12345678901234567890";
        let now = 1_800_000_000;
        let step = step_of(now);
        for delta in [-1, 0, 1] {
            let code = code_at_step(secret, step + delta).unwrap();
            assert_eq!(matching_step(secret, &code, now, 1), Some(step + delta));
        }
        for delta in [-2, 2] {
            let code = code_at_step(secret, step + delta).unwrap();
            assert_eq!(matching_step(secret, &code, now, 1), None, "delta {delta}");
        }
        assert_eq!(matching_step(secret, "12345", now, 1), None);
        assert_eq!(matching_step(secret, "abcdef", now, 1), None);
    }

    #[test]
    fn uri_and_qr() {
        let uri = otpauth_uri(b"12345678901234567890", "Latchkey", "alice").unwrap();
        assert!(uri.starts_with("otpauth://totp/Latchkey:alice?"), "{uri}");
        assert!(uri.contains("secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"), "{uri}");
        assert!(qr_svg(&uri).unwrap().starts_with("<svg"));
    }

    #[test]
    fn recovery_codes_are_distinct_and_normalised() {
        let codes = generate_recovery_codes();
        assert_eq!(codes.len(), 10);
        let set: std::collections::BTreeSet<_> = codes.iter().map(|c| c.expose().clone()).collect();
        assert_eq!(set.len(), 10);
        assert_eq!(normalise_recovery_code("K7Q2-9XW4 m3ta"), "k7q29xw4m3ta");
    }
}

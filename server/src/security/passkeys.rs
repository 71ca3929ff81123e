//! The WebAuthn relying party: kanidm's `webauthn-rs` checks every signature, origin,
//! relying party id hash, challenge and user-verification flag. What is ours is the
//! configuration it is built from and the signature counter rule (see
//! [`counter_regressed`]).

use webauthn_rs::prelude::{Url, Webauthn, WebauthnBuilder};

use crate::config::Passkeys;

/// The relying party for `config`, named `name` in the authenticator's prompt.
pub fn relying_party(config: &Passkeys, name: &str) -> Result<Webauthn, String> {
    let Some((first, others)) = config.origins.split_first() else {
        return Err("passkeys need at least one origin".into());
    };
    let mut builder = WebauthnBuilder::new(&config.rp_id, first)
        .map_err(|e| format!("relying party id {:?} does not fit {first}: {e}", config.rp_id))?
        .rp_name(name)
        .timeout(config.ceremony_ttl);
    for origin in others {
        builder = builder.append_allowed_origin(origin);
    }
    builder.build().map_err(|e| format!("cannot configure passkeys: {e}"))
}

/// Whether a signature counter shows a possible clone (WebAuthn §7.2 step 21): either
/// value being non-zero means the authenticator counts, and then each use must move the
/// count past the stored one. Authenticators that never count (most synced passkeys)
/// send 0 every time.
pub fn counter_regressed(stored: u32, presented: u32) -> bool {
    (stored > 0 || presented > 0) && presented <= stored
}

/// An origin as the browser writes it in `clientData.origin`.
pub fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

#[cfg(test)]
mod tests {
    use super::counter_regressed;

    #[test]
    fn a_counter_must_move_up_once_either_side_counts() {
        assert!(!counter_regressed(0, 0), "authenticators without a counter");
        assert!(!counter_regressed(0, 1));
        assert!(!counter_regressed(4, 5));
        assert!(counter_regressed(5, 5), "the same count twice");
        assert!(counter_regressed(5, 3), "backwards");
        assert!(counter_regressed(5, 0), "a counting authenticator that stopped counting");
    }
}

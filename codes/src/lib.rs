//! The stable error codes of Latchkey's HTTP API: the `error` member of every error
//! body. `Display` is the wire string. The server raises errors only through these,
//! and the console matches them as an enum, never by text. Dependency-free, so any
//! client written in Rust can share it.
//!
//! The OAuth 2.0 codes are exactly RFC 6749 §5.2's and RFC 6750 §3.1's; the rest are
//! ours. A code, once published, keeps its meaning: add new ones, never reuse one.

use std::fmt;

/// One error code; see each variant for when it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `invalid_request`: The request is malformed or misses a parameter (RFC 6749 §5.2).
    InvalidRequest,
    /// `invalid_client`: Client authentication failed (RFC 6749 §5.2).
    InvalidClient,
    /// `invalid_grant`: The grant (refresh token, credentials) is invalid, expired, revoked or was just rotated (RFC 6749 §5.2).
    InvalidGrant,
    /// `unauthorized_client`: The client may not use this grant type (RFC 6749 §5.2).
    UnauthorizedClient,
    /// `unsupported_grant_type`: The grant type is not supported (RFC 6749 §5.2).
    UnsupportedGrantType,
    /// `invalid_scope`: The requested scope is invalid or exceeds the client's (RFC 6749 §5.2).
    InvalidScope,
    /// `unsupported_token_type`: Revocation of this token type is not supported (RFC 7009 §2.2.1).
    UnsupportedTokenType,
    /// `mfa_required`: The password was right; a second factor is needed (extension code, as Auth0 uses it).
    MfaRequired,
    /// `invalid_token`: The bearer token is missing, malformed, expired or revoked (RFC 6750 §3.1).
    InvalidToken,
    /// `insufficient_scope`: The bearer token lacks the scope the operation needs (RFC 6750 §3.1).
    InsufficientScope,
    /// `invalid_credentials`: Wrong username or password, or a locked or disabled account (one answer for all).
    InvalidCredentials,
    /// `invalid_code`: A wrong, expired or already used TOTP or recovery code.
    InvalidCode,
    /// `insufficient_permissions`: Authenticated, but lacking a permission (or trying to grant more than it holds).
    InsufficientPermissions,
    /// `forbidden`: Refused for another reason the description gives.
    Forbidden,
    /// `csrf_check_failed`: A cookie-authenticated request failed the Origin or CSRF-token check.
    CsrfCheckFailed,
    /// `registration_disabled`: Self-registration is turned off.
    RegistrationDisabled,
    /// `not_found`: No such resource.
    NotFound,
    /// `conflict`: A record with the same key already exists.
    Conflict,
    /// `username_taken`: The username (or one confusable with it) is taken.
    UsernameTaken,
    /// `role_exists`: A role with this name exists.
    RoleExists,
    /// `client_exists`: A client with this id exists.
    ClientExists,
    /// `builtin_role`: Built-in roles cannot be deleted or renamed.
    BuiltinRole,
    /// `builtin_client`: Built-in clients cannot be deleted.
    BuiltinClient,
    /// `last_admin`: The change would leave no active user holding the admin role.
    LastAdmin,
    /// `rotation_in_progress`: A pending signing key exists already.
    RotationInProgress,
    /// `already_revoked`: That key is already revoked.
    AlreadyRevoked,
    /// `totp_enabled`: TOTP is already enabled for this account.
    TotpEnabled,
    /// `totp_disabled`: TOTP is not enabled for this account.
    TotpDisabled,
    /// `no_pending_totp`: There is no TOTP enrolment to confirm.
    NoPendingTotp,
    /// `passkeys_unavailable`: Passkeys are off, or the public URL's host is an IP address (WebAuthn needs a domain).
    PasskeysUnavailable,
    /// `invalid_passkey`: The passkey's answer was refused (wrong origin or relying party, no user verification, an expired or spent ceremony, an unknown credential, a counter that went back).
    InvalidPasskey,
    /// `passkey_exists`: That authenticator is registered already.
    PasskeyExists,
    /// `too_many_passkeys`: The account holds the most passkeys it may; delete one first.
    TooManyPasskeys,
    /// `mail_not_configured`: This server sends no mail, so what needs it is off.
    MailNotConfigured,
    /// `invalid_email_token`: The link is unknown, used, expired, or was replaced by a newer one.
    InvalidEmailToken,
    /// `email_taken`: Another account has verified this email address.
    EmailTaken,
    /// `email_not_verified`: The account must confirm its email address (from the link mailed to it) before signing in.
    EmailNotVerified,
    /// `no_email`: The account has no email address to send to.
    NoEmail,
    /// `invalid_dpop_proof`: The DPoP proof (RFC 9449) is missing, malformed, replayed, or does not match the request or the key the token is bound to.
    InvalidDpopProof,
    /// `use_dpop_nonce`: Send the DPoP proof again with the nonce in the `DPoP-Nonce` response header (RFC 9449 §8).
    UseDpopNonce,
    /// `mfa_enrolment_required`: The account's roles require a second factor (TOTP or a passkey) and it has none; enrol one first.
    MfaEnrolmentRequired,
    /// `last_factor`: The account's roles require a second factor, and this is its last one.
    LastFactor,
    /// `public_client`: A public client has no secret.
    PublicClient,
    /// `unknown_role`: A role named in the request does not exist.
    UnknownRole,
    /// `unknown_reference`: A record the request refers to does not exist.
    UnknownReference,
    /// `invalid_username`: The username is not allowed (length, characters, confusables).
    InvalidUsername,
    /// `invalid_password`: The password is too short or too long.
    InvalidPassword,
    /// `invalid_email`: The email address is malformed.
    InvalidEmail,
    /// `invalid_name`: The name is not allowed (length or characters).
    InvalidName,
    /// `invalid_role_name`: Role names are 1–64 of `a-z 0-9 _ . -`, starting with a letter or digit.
    InvalidRoleName,
    /// `invalid_permission`: A permission named in the request is unknown.
    InvalidPermission,
    /// `invalid_description`: The description is too long or has control characters.
    InvalidDescription,
    /// `invalid_id`: The id is not a well-formed id.
    InvalidId,
    /// `invalid_client_id`: The client id is not allowed (length or characters).
    InvalidClientId,
    /// `invalid_grant_type`: A grant type named for a client is unknown or not allowed for its type.
    InvalidGrantType,
    /// `invalid_status`: The status is not one of the allowed values.
    InvalidStatus,
    /// `invalid_redirect_uri`: A client's redirect URI is not https, loopback http or a private-use scheme, or has a fragment or wildcard.
    InvalidRedirectUri,
    /// `invalid_origin`: A client's allowed origin is not an origin like `https://app.example.com`.
    InvalidOrigin,
    /// `invalid_audience`: The audience is Latchkey's own, which only a first-party client's tokens may carry.
    InvalidAudience,
    /// `method_not_allowed`: The resource does not accept this method.
    MethodNotAllowed,
    /// `payload_too_large`: The request body is too large.
    PayloadTooLarge,
    /// `unsupported_media_type`: The request body's content type is not accepted.
    UnsupportedMediaType,
    /// `rate_limited`: Too many requests; retry after `Retry-After` seconds.
    RateLimited,
    /// `server_busy`: Too much work queued (password hashing); retry after `Retry-After` seconds.
    ServerBusy,
    /// `unavailable`: The database is unreachable; retry after `Retry-After` seconds.
    Unavailable,
    /// `internal_error`: An unexpected failure; details are in the server log only.
    InternalError,
    /// `error`: Any other refusal of the HTTP layer (the status says which).
    RequestFailed,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: &[ErrorCode] = &[
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidClient,
        ErrorCode::InvalidGrant,
        ErrorCode::UnauthorizedClient,
        ErrorCode::UnsupportedGrantType,
        ErrorCode::InvalidScope,
        ErrorCode::UnsupportedTokenType,
        ErrorCode::MfaRequired,
        ErrorCode::InvalidToken,
        ErrorCode::InsufficientScope,
        ErrorCode::InvalidCredentials,
        ErrorCode::InvalidCode,
        ErrorCode::InsufficientPermissions,
        ErrorCode::Forbidden,
        ErrorCode::CsrfCheckFailed,
        ErrorCode::RegistrationDisabled,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::UsernameTaken,
        ErrorCode::RoleExists,
        ErrorCode::ClientExists,
        ErrorCode::BuiltinRole,
        ErrorCode::BuiltinClient,
        ErrorCode::LastAdmin,
        ErrorCode::RotationInProgress,
        ErrorCode::AlreadyRevoked,
        ErrorCode::TotpEnabled,
        ErrorCode::TotpDisabled,
        ErrorCode::NoPendingTotp,
        ErrorCode::PasskeysUnavailable,
        ErrorCode::InvalidPasskey,
        ErrorCode::PasskeyExists,
        ErrorCode::TooManyPasskeys,
        ErrorCode::MailNotConfigured,
        ErrorCode::InvalidEmailToken,
        ErrorCode::EmailTaken,
        ErrorCode::EmailNotVerified,
        ErrorCode::NoEmail,
        ErrorCode::InvalidDpopProof,
        ErrorCode::UseDpopNonce,
        ErrorCode::MfaEnrolmentRequired,
        ErrorCode::LastFactor,
        ErrorCode::PublicClient,
        ErrorCode::UnknownRole,
        ErrorCode::UnknownReference,
        ErrorCode::InvalidUsername,
        ErrorCode::InvalidPassword,
        ErrorCode::InvalidEmail,
        ErrorCode::InvalidName,
        ErrorCode::InvalidRoleName,
        ErrorCode::InvalidPermission,
        ErrorCode::InvalidDescription,
        ErrorCode::InvalidId,
        ErrorCode::InvalidClientId,
        ErrorCode::InvalidGrantType,
        ErrorCode::InvalidStatus,
        ErrorCode::InvalidRedirectUri,
        ErrorCode::InvalidOrigin,
        ErrorCode::InvalidAudience,
        ErrorCode::MethodNotAllowed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::RateLimited,
        ErrorCode::ServerBusy,
        ErrorCode::Unavailable,
        ErrorCode::InternalError,
        ErrorCode::RequestFailed,
    ];

    /// The wire string.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::UnsupportedTokenType => "unsupported_token_type",
            ErrorCode::MfaRequired => "mfa_required",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::InvalidCode => "invalid_code",
            ErrorCode::InsufficientPermissions => "insufficient_permissions",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::CsrfCheckFailed => "csrf_check_failed",
            ErrorCode::RegistrationDisabled => "registration_disabled",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::UsernameTaken => "username_taken",
            ErrorCode::RoleExists => "role_exists",
            ErrorCode::ClientExists => "client_exists",
            ErrorCode::BuiltinRole => "builtin_role",
            ErrorCode::BuiltinClient => "builtin_client",
            ErrorCode::LastAdmin => "last_admin",
            ErrorCode::RotationInProgress => "rotation_in_progress",
            ErrorCode::AlreadyRevoked => "already_revoked",
            ErrorCode::TotpEnabled => "totp_enabled",
            ErrorCode::TotpDisabled => "totp_disabled",
            ErrorCode::NoPendingTotp => "no_pending_totp",
            ErrorCode::PasskeysUnavailable => "passkeys_unavailable",
            ErrorCode::InvalidPasskey => "invalid_passkey",
            ErrorCode::PasskeyExists => "passkey_exists",
            ErrorCode::TooManyPasskeys => "too_many_passkeys",
            ErrorCode::MailNotConfigured => "mail_not_configured",
            ErrorCode::InvalidEmailToken => "invalid_email_token",
            ErrorCode::EmailTaken => "email_taken",
            ErrorCode::EmailNotVerified => "email_not_verified",
            ErrorCode::NoEmail => "no_email",
            ErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ErrorCode::UseDpopNonce => "use_dpop_nonce",
            ErrorCode::MfaEnrolmentRequired => "mfa_enrolment_required",
            ErrorCode::LastFactor => "last_factor",
            ErrorCode::PublicClient => "public_client",
            ErrorCode::UnknownRole => "unknown_role",
            ErrorCode::UnknownReference => "unknown_reference",
            ErrorCode::InvalidUsername => "invalid_username",
            ErrorCode::InvalidPassword => "invalid_password",
            ErrorCode::InvalidEmail => "invalid_email",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::InvalidRoleName => "invalid_role_name",
            ErrorCode::InvalidPermission => "invalid_permission",
            ErrorCode::InvalidDescription => "invalid_description",
            ErrorCode::InvalidId => "invalid_id",
            ErrorCode::InvalidClientId => "invalid_client_id",
            ErrorCode::InvalidGrantType => "invalid_grant_type",
            ErrorCode::InvalidStatus => "invalid_status",
            ErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            ErrorCode::InvalidOrigin => "invalid_origin",
            ErrorCode::InvalidAudience => "invalid_audience",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::ServerBusy => "server_busy",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::RequestFailed => "error",
        }
    }

    /// The code of a wire string; `None` for a code this build does not know (a newer
    /// server may add codes).
    pub fn parse(wire: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|code| code.as_str() == wire)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_a_distinct_snake_case_word_that_parses_back() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let wire = code.as_str();
            assert!(seen.insert(wire), "{wire} twice");
            assert!(wire.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{wire}");
            assert_eq!(ErrorCode::parse(wire), Some(*code));
            assert_eq!(code.to_string(), wire);
        }
        assert_eq!(ErrorCode::parse("no_such_code"), None);
    }

    #[test]
    fn the_oauth_codes_are_the_rfc_strings() {
        assert_eq!(ErrorCode::InvalidGrant.as_str(), "invalid_grant");
        assert_eq!(ErrorCode::UnsupportedGrantType.as_str(), "unsupported_grant_type");
        assert_eq!(ErrorCode::InvalidToken.as_str(), "invalid_token");
    }
}

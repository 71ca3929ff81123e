//! Every word the hosted pages show, in one place: a translation is another
//! [`Messages`] value.

pub struct Messages {
    pub sign_in_title: &'static str,
    pub sign_in_to: &'static str,
    pub username: &'static str,
    pub password: &'static str,
    pub sign_in_button: &'static str,
    pub second_factor_title: &'static str,
    pub second_factor_hint: &'static str,
    pub code_label: &'static str,
    pub verify_button: &'static str,
    pub recovery_summary: &'static str,
    pub recovery_label: &'static str,
    pub consent_title: &'static str,
    pub consent_asks: &'static str,
    pub allow_button: &'static str,
    pub deny_button: &'static str,
    pub error_title: &'static str,
    pub request_id: &'static str,
    pub not_found: &'static str,
    pub rate_limited: &'static str,
    pub busy: &'static str,
    pub internal: &'static str,
    pub bad_form: &'static str,
    pub logout_title: &'static str,
    pub logout_asks: &'static str,
    pub logout_asks_plain: &'static str,
    pub logout_button: &'static str,
    pub signed_out_title: &'static str,
    pub signed_out_from: &'static str,
    pub signed_out_close: &'static str,
}

pub const EN: Messages = Messages {
    sign_in_title: "Sign in",
    sign_in_to: "to continue to",
    username: "Username",
    password: "Password",
    sign_in_button: "Sign in",
    second_factor_title: "Two-step verification",
    second_factor_hint: "Enter the 6-digit code from your authenticator app.",
    code_label: "Code",
    verify_button: "Verify",
    recovery_summary: "Use a recovery code instead",
    recovery_label: "Recovery code",
    consent_title: "Allow access?",
    consent_asks: "asks to use your account",
    allow_button: "Allow",
    deny_button: "Deny",
    error_title: "Something went wrong",
    request_id: "Request id:",
    not_found: "This page does not exist.",
    rate_limited: "Too many attempts. Wait a minute and try again.",
    busy: "The server is busy. Try again in a moment.",
    internal: "The request could not be completed. Go back to the application and try again.",
    bad_form: "The form could not be read. Go back and try again.",
    logout_title: "Sign out?",
    logout_asks: "asks to sign you out of this browser. Other devices stay signed in.",
    logout_asks_plain: "Sign out of this browser? Other devices stay signed in.",
    logout_button: "Sign out",
    signed_out_title: "You are signed out",
    signed_out_from: "You were signed out from",
    signed_out_close: "You can close this window.",
};

/// The words for a notice key the sign-in left on its interaction.
pub fn notice(key: &str) -> &'static str {
    use crate::domain::signin::{NOTICE_BUSY, NOTICE_INVALID_CODE, NOTICE_RATE_LIMITED};
    match key {
        NOTICE_INVALID_CODE => "That code is not valid, or was already used.",
        NOTICE_RATE_LIMITED => "Too many attempts. Wait a minute and try again.",
        NOTICE_BUSY => "The server is busy. Try again in a moment.",
        _ => "Invalid username or password.",
    }
}

/// A scope in plain words, for the consent page.
pub fn scope(scope: &str) -> &str {
    match scope {
        "openid" => "Know who you are (your account id)",
        "profile" => "See your username",
        "email" => "See your email address",
        "roles" => "See your roles",
        "offline_access" => "Keep access while you are away",
        other => other,
    }
}

//! The authorization endpoint's rules (RFC 6749 §4.1, OpenID Connect Core §3.1, RFC
//! 7636, RFC 8252, RFC 9207, RFC 9700 §2.1): which redirect URIs a client may register
//! and which a request may name, what a request must carry, what it is granted, and
//! when the user must sign in (again) or be asked for consent. Pure functions of the
//! request, the client and `now`; the flow that stores and renders is
//! [`super::signin`].

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

use crate::security::constant_time_eq;
use crate::store::clients::ClientRow;

use super::oauth::GrantType;

/// Most redirect URIs a client may register.
pub const MAX_REDIRECT_URIS: usize = 16;
/// Longest redirect URI accepted, registered or presented.
pub const MAX_REDIRECT_URI_LEN: usize = 2000;
/// An authorization code lives this long (RFC 6749 §4.1.2: "maximum … of 10 minutes
/// is RECOMMENDED"; one minute is what a redirect and a back-channel call need).
pub const CODE_TTL_SECS: i64 = 60;

/// The scopes whose meaning we define; any other the client is allowed is passed
/// through to the access token for the resource servers.
pub const KNOWN_SCOPES: [&str; 5] = ["openid", "profile", "email", "roles", "offline_access"];

/// Why a redirect URI cannot be registered, in words for the admin.
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    if uri.len() > MAX_REDIRECT_URI_LEN {
        return Err(format!("is longer than {MAX_REDIRECT_URI_LEN} characters"));
    }
    if uri.contains('*') {
        return Err("must not contain wildcards".into());
    }
    let parsed = Url::parse(uri).map_err(|_| "is not an absolute URI".to_string())?;
    if parsed.fragment().is_some() || uri.contains('#') {
        return Err("must not have a fragment (RFC 6749 §3.1.2)".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry user information".into());
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(&parsed) => Ok(()),
        "http" => Err("must use https (http only for a loopback address, RFC 8252 §7.3)".into()),
        // RFC 8252 §7.1: private-use schemes are reverse domain names, which also keeps
        // out javascript:, data:, file: and the like.
        scheme if scheme.contains('.') => Ok(()),
        _ => Err("must use https, loopback http or a private-use scheme like com.example.app".into()),
    }
}

pub(crate) fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    }
}

/// Whether `presented` is one of the `registered` URIs: the exact string, or, for a
/// registered loopback IP literal (`http://127.0.0.1/…`, `http://[::1]/…`), the same
/// URI on any port (RFC 8252 §7.3). Nothing else is normalised, so case, a trailing
/// dot, percent-encoding, user information or an extra path segment all fail.
pub fn redirect_uri_matches(registered: &str, presented: &str) -> bool {
    if presented.len() > MAX_REDIRECT_URI_LEN {
        return false;
    }
    let mut listed = registered.split_ascii_whitespace();
    if listed.clone().any(|uri| constant_time_eq(uri.as_bytes(), presented.as_bytes())) {
        return true;
    }
    let Some(presented_url) = loopback_ip_uri(presented) else { return false };
    listed.any(|uri| {
        loopback_ip_uri(uri).is_some_and(|listed_url| {
            listed_url.host() == presented_url.host()
                && listed_url.path() == presented_url.path()
                && listed_url.query() == presented_url.query()
        })
    })
}

/// `uri` parsed, if it is a loopback IP literal over http, spelled exactly as the URL
/// parser writes it back (so no spelling the parser would tidy up is accepted).
fn loopback_ip_uri(uri: &str) -> Option<Url> {
    let url = Url::parse(uri).ok()?;
    let literal = matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    let clean = url.scheme() == "http"
        && literal
        && url.username().is_empty()
        && url.password().is_none()
        && url.fragment().is_none()
        && url.as_str() == uri;
    clean.then_some(url)
}

/// The origin of a redirect URI, for the hosted pages' `form-action` (a sign-in that
/// ends in a redirect is a form submission that navigates there).
pub fn redirect_origin(uri: &str) -> Option<String> {
    let url = Url::parse(uri).ok()?;
    match url.origin() {
        url::Origin::Tuple(..) => Some(url.origin().ascii_serialization()),
        // Private-use schemes have no origin; `scheme:` is how CSP names them.
        url::Origin::Opaque(_) => Some(format!("{}:", url.scheme())),
    }
}

/// PKCE S256 (RFC 7636 §4.2): whether `verifier` hashes to `challenge`.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    constant_time_eq(s256_challenge(verifier).as_bytes(), challenge.as_bytes())
}

/// The S256 challenge of a PKCE verifier (RFC 7636 §4.2).
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Z] [a-z] [0-9] - . _ ~`. A challenge has
/// the same alphabet; an S256 one is exactly 43 characters.
pub fn is_pkce_string(value: &str) -> bool {
    (43..=128).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// The parameters of an authorization request, each at most once (RFC 6749 §3.1).
#[derive(Debug, Default, Clone)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub response_mode: Option<String>,
    pub prompt: Option<String>,
    pub max_age: Option<String>,
    pub login_hint: Option<String>,
    pub id_token_hint: Option<String>,
    pub ui_locales: Option<String>,
    pub claims_locales: Option<String>,
    pub acr_values: Option<String>,
    pub display: Option<String>,
    pub request: Option<String>,
    pub request_uri: Option<String>,
    /// RFC 9449 §10: the thumbprint of the DPoP key the code is to be bound to.
    pub dpop_jkt: Option<String>,
    /// A parameter given more than once: the request is refused.
    pub repeated: Option<String>,
}

/// Longest value taken from any parameter; longer ones are refused, not cut.
const MAX_PARAM_LEN: usize = 4096;

impl AuthorizeParams {
    /// From the query string or form body's pairs, in order. Unknown parameters are
    /// ignored (RFC 6749 §3.1); empty values count as absent (§3.1: "parameters sent
    /// without a value MUST be treated as if they were omitted").
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut params = Self::default();
        for (name, value) in pairs {
            let slot = match name.as_str() {
                "response_type" => &mut params.response_type,
                "client_id" => &mut params.client_id,
                "redirect_uri" => &mut params.redirect_uri,
                "scope" => &mut params.scope,
                "state" => &mut params.state,
                "nonce" => &mut params.nonce,
                "code_challenge" => &mut params.code_challenge,
                "code_challenge_method" => &mut params.code_challenge_method,
                "response_mode" => &mut params.response_mode,
                "prompt" => &mut params.prompt,
                "max_age" => &mut params.max_age,
                "login_hint" => &mut params.login_hint,
                "id_token_hint" => &mut params.id_token_hint,
                "ui_locales" => &mut params.ui_locales,
                "claims_locales" => &mut params.claims_locales,
                "acr_values" => &mut params.acr_values,
                "display" => &mut params.display,
                "request" => &mut params.request,
                "request_uri" => &mut params.request_uri,
                "dpop_jkt" => &mut params.dpop_jkt,
                _ => continue,
            };
            if value.is_empty() {
                continue;
            }
            if slot.is_some() || value.len() > MAX_PARAM_LEN {
                params.repeated.get_or_insert(name);
                continue;
            }
            *slot = Some(value);
        }
        params
    }
}

/// `prompt` values (OpenID Connect Core §3.1.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
    pub select_account: bool,
}

/// A request that passed every check: what the sign-in carries until the code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    /// The granted scopes, in the client's order, space-separated.
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    pub id_token_hint: Option<String>,
    /// The DPoP key the code is bound to (RFC 9449 §10).
    #[serde(default)]
    pub dpop_jkt: Option<String>,
}

impl AuthorizationRequest {
    pub fn is_openid(&self) -> bool {
        self.scope.split_ascii_whitespace().any(|s| s == "openid")
    }
}

/// Why a request is refused, and how the refusal reaches the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The client or redirect URI cannot be trusted: an error page, never a redirect
    /// (RFC 6749 §4.1.2.1, RFC 9700 §4.11: no open redirector).
    Page { description: String },
    /// Anything else: back to the client with `error` (RFC 6749 §4.1.2.1).
    Redirect(RedirectError),
}

/// An error answered to the client's redirect URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectError {
    pub redirect_uri: String,
    pub error: &'static str,
    pub description: String,
    pub state: Option<String>,
}

impl RedirectError {
    pub fn new(request: &AuthorizationRequest, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            redirect_uri: request.redirect_uri.clone(),
            error,
            description: description.into(),
            state: request.state.clone(),
        }
    }
}

fn page(description: impl Into<String>) -> Rejection {
    Rejection::Page { description: description.into() }
}

/// Checks a request against its client: first what decides whether we may redirect at
/// all (client, redirect URI), then everything else, each refused by redirect.
pub fn check_request(client: Option<&ClientRow>, params: &AuthorizeParams) -> Result<AuthorizationRequest, Rejection> {
    if let Some(name) = params.repeated.as_deref().filter(|n| *n == "client_id" || *n == "redirect_uri") {
        return Err(page(format!("The parameter {name} was given more than once or is too long.")));
    }
    let Some(client_id) = params.client_id.as_deref() else {
        return Err(page("The request has no client_id."));
    };
    let Some(client) = client.filter(|c| c.client_id == client_id) else {
        return Err(page("The application that sent you here is not registered."));
    };
    let Some(redirect_uri) = params.redirect_uri.as_deref() else {
        // OpenID Connect requires it; with PKCE for every client, so do we.
        return Err(page("The request has no redirect_uri."));
    };
    if !redirect_uri_matches(&client.redirect_uris, redirect_uri) {
        return Err(page("The redirect_uri is not one registered for this application."));
    }
    let refuse = |error: &'static str, description: String| {
        Rejection::Redirect(RedirectError {
            redirect_uri: redirect_uri.to_string(),
            error,
            description,
            state: params.state.clone(),
        })
    };
    if let Some(name) = &params.repeated {
        return Err(refuse("invalid_request", format!("{name} was given more than once or is too long")));
    }
    if params.request.is_some() {
        return Err(refuse("request_not_supported", "request objects are not supported".into()));
    }
    if params.request_uri.is_some() {
        return Err(refuse("request_uri_not_supported", "request_uri is not supported".into()));
    }
    match params.response_type.as_deref() {
        Some("code") => {}
        None => return Err(refuse("invalid_request", "response_type is required".into())),
        Some(other) => {
            return Err(refuse("unsupported_response_type", format!("response_type {other:?} is not supported")));
        }
    }
    if params.response_mode.as_deref().is_some_and(|mode| mode != "query") {
        return Err(refuse("invalid_request", "response_mode must be query".into()));
    }
    if !client.grant_types.split_ascii_whitespace().any(|g| g == GrantType::AuthorizationCode.as_str()) {
        return Err(refuse("unauthorized_client", "this client may not use the authorization code flow".into()));
    }
    let Some(code_challenge) = params.code_challenge.clone() else {
        return Err(refuse("invalid_request", "code_challenge is required (PKCE with S256)".into()));
    };
    if params.code_challenge_method.as_deref() != Some("S256") {
        return Err(refuse("invalid_request", "code_challenge_method must be S256".into()));
    }
    if code_challenge.len() != 43 || !is_pkce_string(&code_challenge) {
        return Err(refuse("invalid_request", "code_challenge must be a base64url SHA-256 (43 characters)".into()));
    }
    // A SHA-256 thumbprint in base64url (RFC 7638): 43 characters.
    if params.dpop_jkt.as_deref().is_some_and(|jkt| jkt.len() != 43 || !is_pkce_string(jkt) || jkt.contains(['.', '~']))
    {
        return Err(refuse("invalid_request", "dpop_jkt must be a base64url SHA-256 key thumbprint".into()));
    }
    let prompt = parse_prompt(params.prompt.as_deref()).map_err(|d| refuse("invalid_request", d))?;
    let max_age = match params.max_age.as_deref() {
        None => None,
        Some(text) => match text.parse::<i64>() {
            Ok(secs) if secs >= 0 => Some(secs),
            _ => return Err(refuse("invalid_request", "max_age must be a non-negative integer".into())),
        },
    };
    Ok(AuthorizationRequest {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_string(),
        scope: granted_scope(client, params.scope.as_deref()),
        state: params.state.clone(),
        nonce: params.nonce.clone(),
        code_challenge,
        prompt,
        max_age,
        login_hint: params.login_hint.clone(),
        id_token_hint: params.id_token_hint.clone(),
        dpop_jkt: params.dpop_jkt.clone(),
    })
}

fn parse_prompt(text: Option<&str>) -> Result<Prompt, String> {
    let mut prompt = Prompt::default();
    for word in text.unwrap_or_default().split_ascii_whitespace() {
        match word {
            "none" => prompt.none = true,
            "login" => prompt.login = true,
            "consent" => prompt.consent = true,
            "select_account" => prompt.select_account = true,
            other => return Err(format!("prompt {other:?} is not supported")),
        }
    }
    // Core §3.1.2.1: none with any other value is an error.
    if prompt.none && (prompt.login || prompt.consent || prompt.select_account) {
        return Err("prompt=none cannot be combined with other values".into());
    }
    Ok(prompt)
}

/// What is granted of `requested`: the scopes the client may have, in the client's
/// order; scopes it may not have, and scopes nobody defined, are dropped (the token
/// response says what was granted). Nothing requested grants nothing.
pub fn granted_scope(client: &ClientRow, requested: Option<&str>) -> String {
    let requested: BTreeSet<&str> = requested.unwrap_or_default().split_ascii_whitespace().collect();
    client.scopes.split_ascii_whitespace().filter(|s| requested.contains(s)).collect::<Vec<_>>().join(" ")
}

/// A browser login session as the rules need it.
#[derive(Debug, Clone, Copy)]
pub struct SignedIn<'a> {
    pub user_id: &'a str,
    pub auth_time: i64,
}

/// Whether the user must sign in (again) before this request is answered:
/// `prompt=login`; `prompt=select_account` (one account per browser session, so the
/// account is chosen by signing in as it); `max_age` elapsed, where `max_age=0` is
/// `prompt=login` (Core §3.1.2.1, errata 2: the clock's whole seconds would otherwise
/// let a sign-in of this very second pass).
pub fn needs_sign_in(request: &AuthorizationRequest, session: Option<SignedIn<'_>>, now: i64) -> bool {
    let Some(session) = session else { return true };
    if request.prompt.login || request.prompt.select_account {
        return true;
    }
    request.max_age.is_some_and(|max_age| max_age == 0 || now - session.auth_time > max_age)
}

/// Whether a stored consent covers the requested scopes.
pub fn consent_covers(consented: &str, requested: &str) -> bool {
    let consented: BTreeSet<&str> = consented.split_ascii_whitespace().collect();
    requested.split_ascii_whitespace().all(|s| consented.contains(s))
}

/// Whether the user must be asked for consent: third-party clients only, when asked to
/// (`prompt=consent`) or when no remembered consent covers the scopes.
pub fn needs_consent(client: &ClientRow, request: &AuthorizationRequest, consented: Option<&str>) -> bool {
    if client.first_party {
        return false;
    }
    request.prompt.consent || !consented.is_some_and(|c| consent_covers(c, &request.scope))
}

/// `uri` with `pairs` added to its query, keeping the query it has (RFC 6749 §3.1.2).
pub fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = String::from(uri);
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        serializer.append_pair(name, value);
    }
    out.push(if uri.contains('?') { '&' } else { '?' });
    out.push_str(&serializer.finish());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::entities::ClientType;

    fn client(redirect_uris: &str) -> ClientRow {
        ClientRow {
            client_id: "app".into(),
            name: "App".into(),
            client_type: ClientType::Public,
            secret_hash: None,
            grant_types: "authorization_code refresh_token".into(),
            scopes: "openid profile email".into(),
            audience: None,
            created_at: 0,
            updated_at: 0,
            redirect_uris: redirect_uris.into(),
            post_logout_redirect_uris: String::new(),
            first_party: false,
            allowed_origins: String::new(),
            role_filter: None,
            token_endpoint_auth_method: "none".into(),
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            dpop_bound_access_tokens: false,
        }
    }

    #[test]
    fn registration_takes_https_loopback_and_private_use_schemes_only() {
        for good in ["https://app.example/cb", "http://127.0.0.1/cb", "http://[::1]:8080/cb", "com.example.app:/cb"] {
            assert_eq!(check_redirect_uri(good), Ok(()), "{good}");
        }
        for bad in [
            "http://app.example/cb",
            "https://app.example/cb#frag",
            "https://*.example/cb",
            "javascript:alert(1)",
            "data:text/html,hi",
            "file:///etc/passwd",
            "/relative",
            "https://user:pw@app.example/cb",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redirect_uris_match_exactly_except_the_loopback_port() {
        let registered = "https://app.example/cb http://127.0.0.1/native http://[::1]/native";
        assert!(redirect_uri_matches(registered, "https://app.example/cb"));
        assert!(redirect_uri_matches(registered, "http://127.0.0.1:53121/native"));
        assert!(redirect_uri_matches(registered, "http://[::1]:1/native"));
        for attack in [
            "https://app.example/cb/extra",
            "https://APP.example/cb",
            "https://app.example/CB",
            "https://app.example./cb",
            "https://app.example/%63b",
            "https://app.example@evil.example/cb",
            "https://evil.example/?https://app.example/cb",
            "https://app.example/cb?x=1",
            "https://app.example/cb#x",
            "javascript:alert(1)//https://app.example/cb",
            "http://127.0.0.1:53121/native/../evil",
            "http://127.0.0.1:53121/Native",
            "http://user@127.0.0.1:53121/native",
            "http://127.1:53121/native",
            "http://localhost:53121/native",
            "",
        ] {
            assert!(!redirect_uri_matches(registered, attack), "{attack}");
        }
        // `localhost` is a name, not a literal: exact match only.
        assert!(redirect_uri_matches("http://localhost:3000/cb", "http://localhost:3000/cb"));
        assert!(!redirect_uri_matches("http://localhost:3000/cb", "http://localhost:3001/cb"));
    }

    #[test]
    fn pkce_s256_follows_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(pkce_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(is_pkce_string(verifier));
        assert!(!is_pkce_string("short"));
        assert!(!is_pkce_string(&"a".repeat(129)));
        assert!(!is_pkce_string(&format!("{}+", "a".repeat(43))));
    }

    fn params(pairs: &[(&str, &str)]) -> AuthorizeParams {
        AuthorizeParams::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn good(extra: &[(&str, &str)]) -> AuthorizeParams {
        let mut pairs = vec![
            ("response_type", "code"),
            ("client_id", "app"),
            ("redirect_uri", "https://app.example/cb"),
            ("scope", "openid email admin:write"),
            ("state", "s1"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ];
        pairs.extend_from_slice(extra);
        params(&pairs)
    }

    #[test]
    fn a_good_request_keeps_only_the_scopes_the_client_may_have() {
        let client = client("https://app.example/cb");
        let request = check_request(Some(&client), &good(&[])).unwrap();
        assert_eq!(request.scope, "openid email");
        assert_eq!(request.state.as_deref(), Some("s1"));
        assert!(request.is_openid());
    }

    #[test]
    fn untrusted_client_or_redirect_gets_a_page_and_the_rest_a_redirect() {
        let client = client("https://app.example/cb");
        let unknown = params(&[("client_id", "nobody"), ("redirect_uri", "https://app.example/cb")]);
        assert!(matches!(check_request(None, &unknown), Err(Rejection::Page { .. })));
        let wrong_uri = params(&[("client_id", "app"), ("redirect_uri", "https://evil.example/cb")]);
        assert!(matches!(check_request(Some(&client), &wrong_uri), Err(Rejection::Page { .. })));
        let no_uri = params(&[("client_id", "app")]);
        assert!(matches!(check_request(Some(&client), &no_uri), Err(Rejection::Page { .. })));
        let twice = params(&[("client_id", "app"), ("client_id", "app"), ("redirect_uri", "https://app.example/cb")]);
        assert!(matches!(check_request(Some(&client), &twice), Err(Rejection::Page { .. })));

        let redirected = |extra: &[(&str, &str)], without: &str| {
            let mut p = good(extra);
            match without {
                "code_challenge" => p.code_challenge = None,
                "response_type" => p.response_type = None,
                _ => {}
            }
            match check_request(Some(&client), &p) {
                Err(Rejection::Redirect(e)) => {
                    assert_eq!(e.state.as_deref(), Some("s1"));
                    e.error
                }
                other => panic!("expected a redirect, got {other:?}"),
            }
        };
        assert_eq!(redirected(&[], "code_challenge"), "invalid_request");
        assert_eq!(redirected(&[], "response_type"), "invalid_request");
        assert_eq!(redirected(&[("response_type", "token")], ""), "invalid_request"); // twice
        let mut token = good(&[]);
        token.response_type = Some("token".into());
        assert!(matches!(
            check_request(Some(&client), &token),
            Err(Rejection::Redirect(RedirectError { error: "unsupported_response_type", .. }))
        ));
        let mut plain = good(&[]);
        plain.code_challenge_method = Some("plain".into());
        assert!(matches!(
            check_request(Some(&client), &plain),
            Err(Rejection::Redirect(RedirectError { error: "invalid_request", .. }))
        ));
        assert_eq!(redirected(&[("request", "eyJ")], ""), "request_not_supported");
        assert_eq!(redirected(&[("request_uri", "https://x")], ""), "request_uri_not_supported");
        assert_eq!(redirected(&[("prompt", "none login")], ""), "invalid_request");
        assert_eq!(redirected(&[("max_age", "-1")], ""), "invalid_request");
        assert_eq!(redirected(&[("response_mode", "fragment")], ""), "invalid_request");
    }

    #[test]
    fn sign_in_is_needed_without_a_session_on_prompt_login_and_after_max_age() {
        let client = client("https://app.example/cb");
        let request = check_request(Some(&client), &good(&[("max_age", "60")])).unwrap();
        let session = SignedIn { user_id: "u", auth_time: 1000 };
        assert!(needs_sign_in(&request, None, 1000));
        assert!(!needs_sign_in(&request, Some(session), 1060));
        assert!(needs_sign_in(&request, Some(session), 1061));
        let login = check_request(Some(&client), &good(&[("prompt", "login")])).unwrap();
        assert!(needs_sign_in(&login, Some(session), 1000));
        let zero = check_request(Some(&client), &good(&[("max_age", "0")])).unwrap();
        assert!(needs_sign_in(&zero, Some(session), 1000), "max_age=0 within the second of the sign-in");
        let select = check_request(Some(&client), &good(&[("prompt", "select_account")])).unwrap();
        assert!(needs_sign_in(&select, Some(session), 1000));
    }

    #[test]
    fn consent_is_asked_of_third_parties_until_it_covers_the_scopes() {
        let mut app = client("https://app.example/cb");
        let request = check_request(Some(&app), &good(&[])).unwrap();
        assert!(needs_consent(&app, &request, None));
        assert!(needs_consent(&app, &request, Some("openid")));
        assert!(!needs_consent(&app, &request, Some("email openid profile")));
        let again = check_request(Some(&app), &good(&[("prompt", "consent")])).unwrap();
        assert!(needs_consent(&app, &again, Some("email openid profile")));
        app.first_party = true;
        assert!(!needs_consent(&app, &again, None));
    }

    #[test]
    fn the_query_of_a_redirect_uri_is_kept() {
        assert_eq!(
            with_query("https://a.example/cb", &[("code", "x y"), ("state", "&")]),
            "https://a.example/cb?code=x+y&state=%26"
        );
        assert_eq!(with_query("https://a.example/cb?k=v", &[("code", "c")]), "https://a.example/cb?k=v&code=c");
    }
}

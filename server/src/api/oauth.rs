//! `/oauth2/*`: the OAuth 2.0 token (RFC 6749), revocation (RFC 7009) and
//! introspection (RFC 7662) endpoints, form-encoded, plus userinfo.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use poem::Request;
use poem::http::header::AUTHORIZATION;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use super::bearer::UserInfoAuth;
use super::browser::request_context;
use super::error::{ApiError, ApiResult};
use super::form::OAuthForm;
use super::models::{ConfirmationClaim, IntrospectionResponse, TokenResponse, UserInfoResponse};
use super::route_facts::{Charged, ChargedByHandler, buckets};
use crate::domain::oauth::{self, ClientCredentials, TokenRequest};
use crate::domain::{Error, ErrorCode};
use crate::security::Secret;
use crate::security::rate_limit::Bucket;
use crate::state::AppState;
use crate::store::clients::ClientRow;

#[derive(Default)]
pub struct OAuthApi;

// No Debug: it carries secrets.
#[derive(Object)]
pub(crate) struct TokenForm {
    /// `authorization_code`, `refresh_token`, `password` or `client_credentials`. An
    /// empty value counts as omitted (RFC 6749 §3.1), so it has at least one character.
    #[oai(validator(min_length = 1, max_length = 64))]
    grant_type: String,
    #[oai(validator(max_length = 256))]
    refresh_token: Option<String>,
    #[oai(validator(max_length = 256))]
    username: Option<String>,
    #[oai(validator(max_length = 1024))]
    password: Option<String>,
    /// Space-separated scopes; defaults to all the client may have.
    #[oai(validator(max_length = 1024))]
    scope: Option<String>,
    /// For public clients, and for `client_secret_post`.
    #[oai(validator(max_length = 128))]
    client_id: Option<String>,
    #[oai(validator(max_length = 256))]
    client_secret: Option<String>,
    /// Password grant on an account with TOTP: the current 6-digit code.
    #[oai(validator(max_length = 16))]
    totp: Option<String>,
    /// `authorization_code`: the code from the redirect.
    #[oai(validator(max_length = 256))]
    code: Option<String>,
    /// `authorization_code`: the redirect URI of the authorization request.
    #[oai(validator(max_length = 2000))]
    redirect_uri: Option<String>,
    /// `authorization_code`: the PKCE verifier (RFC 7636).
    #[oai(validator(max_length = 128))]
    code_verifier: Option<String>,
}

// No Debug: it carries secrets.
#[derive(Object)]
struct TokenHandleForm {
    /// The token to revoke or introspect (an empty value counts as omitted).
    #[oai(validator(min_length = 1, max_length = 8192))]
    token: String,
    /// `access_token` or `refresh_token` (advisory; the token's form decides).
    #[oai(validator(max_length = 32))]
    token_type_hint: Option<String>,
    #[oai(validator(max_length = 128))]
    client_id: Option<String>,
    #[oai(validator(max_length = 256))]
    client_secret: Option<String>,
}

#[derive(ApiResponse)]
enum TokenIssued {
    #[oai(status = 200)]
    Ok(Json<TokenResponse>, #[oai(header = "Cache-Control")] String, #[oai(header = "Pragma")] String),
}

#[derive(ApiResponse)]
enum Revoked {
    /// Revoked, or the token was unknown (RFC 7009 §2.2: both answer 200).
    #[oai(status = 200)]
    Ok,
}

#[derive(ApiResponse)]
enum Introspected {
    #[oai(status = 200)]
    Ok(Json<IntrospectionResponse>, #[oai(header = "Cache-Control")] String),
}

#[derive(ApiResponse)]
enum UserInfo {
    #[oai(status = 200)]
    Ok(Json<UserInfoResponse>),
}

/// Client credentials from HTTP Basic (RFC 6749 §2.3.1, form-url-encoded inside) or
/// from the body. Using both at once is refused.
/// The client calling the revocation or introspection endpoint, authenticated (RFC 7009
/// §2.1, RFC 7662 §2.1).
async fn handle_client(
    state: &AppState,
    req: &Request,
    id: Option<String>,
    secret: Option<String>,
) -> Result<ClientRow, ApiError> {
    let creds = client_credentials(req, id, secret)?;
    oauth::authenticate_client(state, &creds).await.map_err(oauth_error)
}

fn client_credentials(
    req: &Request,
    id: Option<String>,
    secret: Option<String>,
) -> Result<ClientCredentials, ApiError> {
    // Only the Basic scheme carries client credentials; another scheme (a Bearer token a
    // generic HTTP client attaches to every request) says nothing about the client.
    let basic = req.header(AUTHORIZATION).and_then(|h| {
        let (scheme, value) = h.split_once(' ')?;
        scheme.eq_ignore_ascii_case("basic").then_some(value)
    });
    let Some(encoded) = basic else {
        return Ok(ClientCredentials { client_id: id, client_secret: secret.map(Secret::new), via_basic: false });
    };
    let (basic_id, basic_secret) = basic_credentials(encoded)
        .ok_or_else(|| ApiError::oauth(ErrorCode::InvalidClient, "malformed Basic credentials"))?;
    if secret.is_some() || id.as_deref().is_some_and(|body_id| body_id != basic_id) {
        return Err(ApiError::oauth(ErrorCode::InvalidRequest, "client credentials must be sent in one way only"));
    }
    Ok(ClientCredentials { client_id: Some(basic_id), client_secret: Some(Secret::new(basic_secret)), via_basic: true })
}

/// The client id and secret of a Basic credential (the value after `Basic `): base64 of
/// `id:secret`, each form-url-encoded (RFC 6749 §2.3.1).
pub fn basic_credentials(encoded: &str) -> Option<(String, String)> {
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (raw_id, raw_secret) = decoded.split_once(':')?;
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
    };
    Some((decode(raw_id), decode(raw_secret)))
}

/// OAuth endpoints answer every domain error in RFC 6749 form.
fn oauth_error(err: Error) -> ApiError {
    match err {
        Error::InvalidCredentials => ApiError::oauth(ErrorCode::InvalidGrant, "invalid username or password"),
        other => other.into(),
    }
}

#[OpenApi(prefix_path = "/oauth2", tag = "ApiTags::OAuth")]
impl OAuthApi {
    /// Token endpoint: `authorization_code`, `refresh_token`, `password` (allowed clients
    /// only) and `client_credentials` (confidential clients) grants. With a `DPoP` header
    /// (RFC 9449) the tokens are bound to the proof's key (`token_type: DPoP`); without a
    /// nonce from `DPoP-Nonce` the answer is 400 `use_dpop_nonce` with one.
    #[oai(path = "/token", method = "post", operation_id = "token")]
    async fn token(
        &self,
        charged: ChargedByHandler<'_>,
        state: Data<&AppState>,
        req: &Request,
        form: OAuthForm<TokenForm>,
    ) -> ApiResult<TokenIssued> {
        let form = form.0;
        // A password grant is a login: it spends the login bucket (and, in the domain, the
        // username bucket), so the token endpoint is no way around the login limits.
        let is_password = oauth::GrantType::parse(&form.grant_type) == Some(oauth::GrantType::Password);
        let bucket = if is_password { Bucket::Login } else { Bucket::Token };
        charged.charge(bucket)?;
        let creds = client_credentials(req, form.client_id, form.client_secret)?;
        let request = TokenRequest {
            grant_type: form.grant_type,
            refresh_token: form.refresh_token.map(Secret::new),
            username: form.username,
            password: form.password.map(Secret::new),
            scope: form.scope,
            totp: form.totp,
            code: form.code.map(Secret::new),
            redirect_uri: form.redirect_uri,
            code_verifier: form.code_verifier.map(Secret::new),
        };
        let ctx = super::dpop::proved_context(req).await?;
        let tokens = oauth::token(&state, &creds, request, &ctx).await.map_err(oauth_error)?;
        Ok(TokenIssued::Ok(
            Json(TokenResponse {
                token_type: tokens.token_type().into(),
                access_token: tokens.access_token,
                expires_in: tokens.expires_in,
                refresh_token: tokens.refresh_token.map(|t| t.expose().clone()),
                scope: tokens.scope,
                id_token: tokens.id_token,
            }),
            "no-store".into(),
            "no-cache".into(),
        ))
    }

    /// Revoke a refresh token (its whole session) or an access token (its session).
    #[oai(path = "/revoke", method = "post", operation_id = "revokeToken")]
    async fn revoke(
        &self,
        _charged: Charged<buckets::Token>,
        state: Data<&AppState>,
        req: &Request,
        form: OAuthForm<TokenHandleForm>,
    ) -> ApiResult<Revoked> {
        let form = form.0;
        let client = handle_client(&state, req, form.client_id, form.client_secret).await?;
        oauth::revoke(&state, &client, &Secret::new(form.token), &request_context(req)).await?;
        Ok(Revoked::Ok)
    }

    /// Introspect a token (confidential clients only).
    #[oai(path = "/introspect", method = "post", operation_id = "introspectToken")]
    async fn introspect(
        &self,
        _charged: Charged<buckets::Token>,
        state: Data<&AppState>,
        req: &Request,
        form: OAuthForm<TokenHandleForm>,
    ) -> ApiResult<Introspected> {
        let form = form.0;
        let client = handle_client(&state, req, form.client_id, form.client_secret).await?;
        let result = oauth::introspect(&state, &client, &Secret::new(form.token)).await.map_err(oauth_error)?;
        Ok(Introspected::Ok(
            Json(IntrospectionResponse {
                active: result.active,
                token_type: result.token_type.map(str::to_string),
                client_id: result.client_id,
                sub: result.sub,
                username: result.username,
                scope: result.scope,
                exp: result.exp,
                iat: result.iat,
                nbf: result.nbf,
                aud: result.aud,
                iss: result.iss,
                jti: result.jti,
                sid: result.sid,
                roles: result.roles,
                cnf: result.cnf.map(|cnf| ConfirmationClaim { jkt: cnf.jkt }),
            }),
            "no-store".into(),
        ))
    }

    /// Claims about the user of the bearer token, as its scopes release them.
    #[oai(path = "/userinfo", method = "get", operation_id = "userinfo")]
    async fn userinfo(&self, state: Data<&AppState>, auth: UserInfoAuth) -> ApiResult<UserInfo> {
        userinfo_of(&state, &auth).await
    }

    /// The same claims by POST (OpenID Connect Core §5.3.1: an OP must support both).
    #[oai(path = "/userinfo", method = "post", operation_id = "userinfoPost")]
    async fn userinfo_post(&self, state: Data<&AppState>, auth: UserInfoAuth) -> ApiResult<UserInfo> {
        userinfo_of(&state, &auth).await
    }
}

async fn userinfo_of(state: &AppState, auth: &UserInfoAuth) -> ApiResult<UserInfo> {
    let info = crate::domain::code_grant::userinfo(state, &auth.0).await?;
    let claim = |name: &str| info.get(name).cloned();
    let text = |name: &str| claim(name).and_then(|v| v.as_str().map(str::to_string));
    Ok(UserInfo::Ok(Json(UserInfoResponse {
        sub: auth.0.claims.sub.clone(),
        preferred_username: text("preferred_username"),
        name: text("name"),
        updated_at: claim("updated_at").and_then(|v| v.as_i64()),
        email: text("email"),
        email_verified: claim("email_verified").and_then(|v| v.as_bool()),
        roles: claim("roles").and_then(|v| serde_json::from_value(v).ok()),
    })))
}

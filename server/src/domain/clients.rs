//! OAuth client administration: create (secret shown once), update, rotate the secret,
//! delete. The two seeded first-party clients cannot be deleted.

use crate::security::{Secret, generate_token, sha256_hex};
use crate::state::AppState;
use crate::store::audit::NewAuditEvent;
use crate::store::clients::{self, ClientChanges, ClientRow};
use crate::store::entities::ClientType;
use crate::store::{Page, StoreError};
use crate::tokens::CLIENT_SECRET_PREFIX;
use latchkey_codes::ErrorCode;

use super::authorize;
use super::oauth::GrantType;
use super::rbac::Grantor;
use super::sessions::SPA_CLIENT_ID;
use super::{Error, Result};

/// The console's client, seeded with the `spa` client by the migrations.
pub const ADMIN_CONSOLE_CLIENT_ID: &str = "latchkey-admin";

#[derive(Debug, Clone)]
pub struct ClientView {
    pub row: ClientRow,
    pub roles: Vec<String>,
}

/// A new client as the CLI or admin API describes it.
pub struct NewClient {
    pub client_id: String,
    pub name: String,
    pub confidential: bool,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub audience: Option<String>,
    pub roles: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// Skips consent and may carry our audience and every role: a full admin's call.
    pub first_party: bool,
    pub allowed_origins: Vec<String>,
    /// The user roles its tokens may carry; `None` is the default filter.
    pub visible_roles: Option<Vec<String>>,
    /// How it authenticates at the token endpoint; `None`: `none` for a public client,
    /// either secret method for a confidential one.
    pub token_endpoint_auth_method: Option<String>,
    /// Where it is told of ended sessions (Back-Channel Logout 1.0); `None`: nowhere.
    pub backchannel_logout_uri: Option<String>,
    /// Whether every logout token it gets must carry `sid`.
    pub backchannel_logout_session_required: bool,
    /// Its token requests must carry a DPoP proof (RFC 9449 §5.2).
    pub dpop_bound_access_tokens: bool,
}

/// A `backchannel_logout_uri` (Back-Channel Logout §2.2): an absolute https URI (http
/// only on a loopback host), without a fragment or user information; empty is none.
fn validate_backchannel_uri(uri: Option<&str>) -> Result<Option<String>> {
    let Some(uri) = uri.map(str::trim).filter(|u| !u.is_empty()) else { return Ok(None) };
    let refuse = |why: &str| {
        Err(Error::bad_request(ErrorCode::InvalidRedirectUri, format!("backchannel_logout_uri {uri:?} {why}")))
    };
    if uri.len() > authorize::MAX_REDIRECT_URI_LEN {
        return refuse(&format!("is longer than {} characters", authorize::MAX_REDIRECT_URI_LEN));
    }
    let Ok(parsed) = url::Url::parse(uri) else { return refuse("is not an absolute URI") };
    if parsed.fragment().is_some() || uri.contains('#') {
        return refuse("must not have a fragment");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return refuse("must not carry user information");
    }
    match parsed.scheme() {
        "https" => Ok(Some(uri.to_string())),
        "http" if authorize::is_loopback_host(&parsed) => Ok(Some(uri.to_string())),
        _ => refuse("must use https (http only for a loopback address)"),
    }
}

/// The registered `token_endpoint_auth_method` (RFC 7591 §2), checked against the
/// client's type; empty means either secret method (confidential clients only).
fn validate_auth_method(method: Option<&str>, confidential: bool) -> Result<String> {
    match (method, confidential) {
        (None, false) | (Some("none"), false) => Ok("none".into()),
        (None, true) => Ok(String::new()),
        (Some(m @ ("client_secret_basic" | "client_secret_post")), true) => Ok(m.to_string()),
        (Some(other), _) => Err(Error::bad_request(
            ErrorCode::InvalidRequest,
            format!(
                "token_endpoint_auth_method {other:?} does not fit a {} client (none for public; \
                 client_secret_basic or client_secret_post for confidential)",
                if confidential { "confidential" } else { "public" }
            ),
        )),
    }
}

/// The redirect-like URIs of a client: each one a registrable redirect URI, at most
/// [`authorize::MAX_REDIRECT_URIS`].
fn validate_uris(field: &str, uris: &[String]) -> Result<String> {
    if uris.len() > authorize::MAX_REDIRECT_URIS {
        return Err(Error::bad_request(
            ErrorCode::InvalidRedirectUri,
            format!("at most {} {field} per client", authorize::MAX_REDIRECT_URIS),
        ));
    }
    for uri in uris {
        authorize::check_redirect_uri(uri)
            .map_err(|why| Error::bad_request(ErrorCode::InvalidRedirectUri, format!("{field} {uri:?} {why}")))?;
    }
    Ok(join_unique(uris))
}

fn validate_origins(origins: &[String]) -> Result<String> {
    let mut normalised = Vec::with_capacity(origins.len());
    for origin in origins {
        let Some(origin) = crate::config::normalise_origin(origin) else {
            return Err(Error::bad_request(
                ErrorCode::InvalidOrigin,
                format!("{origin:?} is not an origin like https://app.example.com"),
            ));
        };
        normalised.push(origin);
    }
    Ok(join_unique(&normalised))
}

/// A client that may use the code flow needs somewhere to send the user back to.
fn check_code_flow(grant_types: &str, redirect_uris: &str) -> Result<()> {
    let code_flow = grant_types.split_ascii_whitespace().any(|g| g == GrantType::AuthorizationCode.as_str());
    if code_flow && redirect_uris.is_empty() {
        return Err(Error::bad_request(
            ErrorCode::InvalidRedirectUri,
            "the authorization_code grant needs at least one redirect URI",
        ));
    }
    Ok(())
}

fn validate_grants(grants: &[String], confidential: bool) -> Result<String> {
    for grant in grants {
        if GrantType::parse(grant).is_none() {
            return Err(Error::bad_request(ErrorCode::InvalidGrantType, format!("unknown grant type {grant:?}")));
        }
    }
    if grants.iter().any(|g| GrantType::parse(g) == Some(GrantType::ClientCredentials)) && !confidential {
        return Err(Error::bad_request(ErrorCode::InvalidGrantType, "client_credentials needs a confidential client"));
    }
    Ok(join_unique(grants))
}

fn validate_scopes(scopes: &[String]) -> Result<String> {
    for scope in scopes {
        let valid = !scope.is_empty()
            && scope.len() <= 64
            && scope.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\');
        if !valid {
            return Err(Error::bad_request(
                ErrorCode::InvalidScope,
                format!("scope {scope:?} is not a valid scope token"),
            ));
        }
    }
    Ok(join_unique(scopes))
}

fn join_unique(items: &[String]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for item in items {
        if !seen.contains(&item.as_str()) {
            seen.push(item);
        }
    }
    seen.join(" ")
}

fn event(now: i64, actor: &str, action: &'static str, client_id: &str, details: serde_json::Value) -> NewAuditEvent {
    NewAuditEvent::success(now, actor, action, client_id).details(details)
}

fn map_store(err: StoreError) -> Error {
    match err {
        StoreError::Missing(what) => Error::bad_request(ErrorCode::UnknownRole, format!("unknown {what}")),
        StoreError::Conflict => {
            Error::Conflict { code: ErrorCode::ClientExists, description: "that client_id is taken".into() }
        }
        other => other.into(),
    }
}

/// Tokens of a first-party client whose audience is ours (set, or left to the default)
/// open the admin API with the client's roles, and first-party clients skip consent:
/// only a full admin makes one. A third-party client's tokens never carry our audience,
/// so naming it for one is refused rather than silently replaced.
async fn check_audience(
    state: &AppState,
    by: &Grantor<'_>,
    client_id: &str,
    first_party: bool,
    audience: Option<&str>,
) -> Result<()> {
    let ours = audience.is_none_or(|a| a == state.config.audience);
    if first_party && ours {
        by.require_full_admin(state, "client.audience", client_id).await?;
    } else if first_party {
        by.require_full_admin(state, "client.first_party", client_id).await?;
    } else if audience == Some(state.config.audience.as_str()) {
        return Err(Error::bad_request(
            ErrorCode::InvalidAudience,
            "only a first-party client's tokens may carry Latchkey's own audience",
        ));
    }
    Ok(())
}

/// Refuses `operation` on a client holding roles the grantor could not grant.
async fn check_may_manage(state: &AppState, by: &Grantor<'_>, client_id: &str, operation: &'static str) -> Result<()> {
    if by.is_full_admin() {
        return Ok(());
    }
    let roles = clients::role_names(&state.db, client_id).await?;
    by.check_roles(state, operation, client_id, &roles).await
}

/// Creates a client; for a confidential one, returns its generated secret, shown once.
pub async fn create(
    state: &AppState,
    new: NewClient,
    by: &Grantor<'_>,
) -> Result<(ClientView, Option<Secret<String>>)> {
    let actor = by.actor();
    let valid_id = !new.client_id.is_empty()
        && new.client_id.len() <= 64
        && new.client_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !valid_id {
        return Err(Error::bad_request(ErrorCode::InvalidClientId, "client_id must be 1-64 of A-Z a-z 0-9 - _ ."));
    }
    // A service token's subject is its client id: one shaped like a user id could be
    // taken for that user wherever a subject is looked up.
    if uuid::Uuid::try_parse(&new.client_id).is_ok() {
        return Err(Error::bad_request(
            ErrorCode::InvalidClientId,
            "client_id must not have the shape of a user id (UUID)",
        ));
    }
    let name = new.name.trim().to_string();
    if name.is_empty() || name.len() > 128 {
        return Err(Error::bad_request(ErrorCode::InvalidName, "name must be 1-128 characters"));
    }
    let grant_types = validate_grants(&new.grant_types, new.confidential)?;
    let scopes = validate_scopes(&new.scopes)?;
    let redirect_uris = validate_uris("redirect_uri", &new.redirect_uris)?;
    check_code_flow(&grant_types, &redirect_uris)?;
    let post_logout_redirect_uris = validate_uris("post_logout_redirect_uri", &new.post_logout_redirect_uris)?;
    let allowed_origins = validate_origins(&new.allowed_origins)?;
    let audience = new.audience.filter(|a| !a.trim().is_empty());
    check_audience(state, by, &new.client_id, new.first_party, audience.as_deref()).await?;
    by.check_roles(state, "client.create", &new.client_id, &new.roles).await?;
    let secret = new.confidential.then(|| generate_token(CLIENT_SECRET_PREFIX));
    let now = state.now();
    let row = ClientRow {
        client_id: new.client_id.clone(),
        name,
        client_type: if new.confidential { ClientType::Confidential } else { ClientType::Public },
        secret_hash: secret.as_ref().map(|s| sha256_hex(s.expose())),
        grant_types,
        scopes,
        audience,
        created_at: now,
        updated_at: now,
        redirect_uris,
        post_logout_redirect_uris,
        first_party: new.first_party,
        allowed_origins,
        role_filter: new.visible_roles.as_deref().map(join_unique),
        token_endpoint_auth_method: validate_auth_method(new.token_endpoint_auth_method.as_deref(), new.confidential)?,
        backchannel_logout_uri: validate_backchannel_uri(new.backchannel_logout_uri.as_deref())?,
        backchannel_logout_session_required: new.backchannel_logout_session_required,
        dpop_bound_access_tokens: new.dpop_bound_access_tokens,
    };
    let details = serde_json::json!({
        "grant_types": row.grant_types, "roles": new.roles, "type": row.client_type.as_str(),
        "redirect_uris": row.redirect_uris, "first_party": row.first_party,
        "backchannel_logout_uri": row.backchannel_logout_uri,
        "backchannel_logout_session_required": row.backchannel_logout_session_required,
        "dpop_bound_access_tokens": row.dpop_bound_access_tokens,
    });
    let audit = event(now, actor, "client.create", &new.client_id, details);
    let row = clients::insert(&state.db, row, &new.roles, audit).await.map_err(map_store)?;
    let mut roles = new.roles;
    roles.sort();
    roles.dedup();
    Ok((ClientView { row, roles }, secret))
}

pub async fn get(state: &AppState, client_id: &str) -> Result<ClientView> {
    let row = clients::find(&state.db, client_id).await?.ok_or(Error::NotFound("client"))?;
    let roles = clients::role_names(&state.db, client_id).await?;
    Ok(ClientView { row, roles })
}

pub async fn list(state: &AppState, page: Page) -> Result<(Vec<ClientView>, u64)> {
    let (rows, total) = clients::list(&state.db, page).await?;
    let ids: Vec<String> = rows.iter().map(|r| r.client_id.clone()).collect();
    let mut roles = clients::role_names_of(&state.db, &ids).await?;
    let views = rows
        .into_iter()
        .map(|row| {
            let roles = roles.remove(&row.client_id).unwrap_or_default();
            ClientView { row, roles }
        })
        .collect();
    Ok((views, total))
}

#[derive(Default)]
pub struct ClientUpdate {
    pub name: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
    pub audience: Option<Option<String>>,
    pub roles: Option<Vec<String>>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub first_party: Option<bool>,
    pub allowed_origins: Option<Vec<String>>,
    pub visible_roles: Option<Option<Vec<String>>>,
    pub token_endpoint_auth_method: Option<String>,
    /// A new URI, or `Some(None)` for none; `None` keeps it.
    pub backchannel_logout_uri: Option<Option<String>>,
    pub backchannel_logout_session_required: Option<bool>,
    pub dpop_bound_access_tokens: Option<bool>,
}

pub async fn update(state: &AppState, client_id: &str, update: ClientUpdate, by: &Grantor<'_>) -> Result<ClientView> {
    if client_id == super::account::ACCOUNT_CLIENT_ID {
        // Its redirect URI is the server's own page; another would make a consent-free
        // first-party client of it.
        return Err(Error::Conflict {
            code: ErrorCode::BuiltinClient,
            description: format!("{client_id} is the account page's built-in client; the server manages it"),
        });
    }
    let now = state.now();
    let actor = by.actor();
    let current = get(state, client_id).await?;
    check_may_manage(state, by, client_id, "client.update").await?;
    if let Some(roles) = &update.roles {
        by.check_roles(state, "client.update", client_id, roles).await?;
    }
    let first_party = update.first_party.unwrap_or(current.row.first_party);
    if update.audience.is_some() || update.first_party.is_some() {
        let audience = match &update.audience {
            Some(audience) => audience.as_deref().filter(|a| !a.trim().is_empty()),
            None => current.row.audience.as_deref(),
        };
        check_audience(state, by, client_id, first_party, audience).await?;
    }
    let confidential = current.row.client_type == ClientType::Confidential;
    let name = match update.name.map(|n| n.trim().to_string()) {
        Some(n) if n.is_empty() || n.len() > 128 => {
            return Err(Error::bad_request(ErrorCode::InvalidName, "name must be 1-128 characters"));
        }
        other => other,
    };
    let changes = ClientChanges {
        name,
        grant_types: update.grant_types.as_deref().map(|g| validate_grants(g, confidential)).transpose()?,
        scopes: update.scopes.as_deref().map(validate_scopes).transpose()?,
        audience: update.audience.map(|a| a.filter(|a| !a.trim().is_empty())),
        secret_hash: None,
        roles: update.roles.clone(),
        redirect_uris: update.redirect_uris.as_deref().map(|u| validate_uris("redirect_uri", u)).transpose()?,
        post_logout_redirect_uris: update
            .post_logout_redirect_uris
            .as_deref()
            .map(|u| validate_uris("post_logout_redirect_uri", u))
            .transpose()?,
        first_party: update.first_party,
        allowed_origins: update.allowed_origins.as_deref().map(validate_origins).transpose()?,
        role_filter: update.visible_roles.map(|roles| roles.as_deref().map(join_unique)),
        token_endpoint_auth_method: update
            .token_endpoint_auth_method
            .as_deref()
            .map(|m| validate_auth_method(Some(m), confidential))
            .transpose()?,
        backchannel_logout_uri: update
            .backchannel_logout_uri
            .map(|uri| validate_backchannel_uri(uri.as_deref()))
            .transpose()?,
        backchannel_logout_session_required: update.backchannel_logout_session_required,
        dpop_bound_access_tokens: update.dpop_bound_access_tokens,
    };
    check_code_flow(
        changes.grant_types.as_deref().unwrap_or(&current.row.grant_types),
        changes.redirect_uris.as_deref().unwrap_or(&current.row.redirect_uris),
    )?;
    let details = serde_json::json!({
        "grant_types": changes.grant_types, "scopes": changes.scopes, "roles": update.roles, "name": changes.name,
        "redirect_uris": changes.redirect_uris, "first_party": changes.first_party,
        "backchannel_logout_uri": changes.backchannel_logout_uri,
        "backchannel_logout_session_required": changes.backchannel_logout_session_required,
        "dpop_bound_access_tokens": changes.dpop_bound_access_tokens,
    });
    let audit = event(now, actor, "client.update", client_id, details);
    clients::update(&state.db, client_id, changes, now, audit)
        .await
        .map_err(map_store)?
        .ok_or(Error::NotFound("client"))?;
    get(state, client_id).await
}

/// Replaces a confidential client's secret; the old one stops working at once.
pub async fn rotate_secret(state: &AppState, client_id: &str, by: &Grantor<'_>) -> Result<Secret<String>> {
    let now = state.now();
    let actor = by.actor();
    let current = get(state, client_id).await?;
    check_may_manage(state, by, client_id, "client.rotate_secret").await?;
    if current.row.client_type != ClientType::Confidential {
        return Err(Error::Conflict {
            code: ErrorCode::PublicClient,
            description: "public clients have no secret".into(),
        });
    }
    let secret = generate_token(CLIENT_SECRET_PREFIX);
    let changes = ClientChanges { secret_hash: Some(sha256_hex(secret.expose())), ..Default::default() };
    let audit = event(now, actor, "client.rotate_secret", client_id, serde_json::json!({}));
    clients::update(&state.db, client_id, changes, now, audit).await.map_err(map_store)?;
    Ok(secret)
}

pub async fn delete(state: &AppState, client_id: &str, by: &Grantor<'_>) -> Result<()> {
    let now = state.now();
    let actor = by.actor();
    if [SPA_CLIENT_ID, ADMIN_CONSOLE_CLIENT_ID, super::account::ACCOUNT_CLIENT_ID].contains(&client_id) {
        return Err(Error::Conflict {
            code: ErrorCode::BuiltinClient,
            description: format!("{client_id} is a built-in client the server relies on"),
        });
    }
    get(state, client_id).await?;
    check_may_manage(state, by, client_id, "client.delete").await?;
    let audit = event(now, actor, "client.delete", client_id, serde_json::json!({}));
    if clients::delete(&state.db, client_id, audit).await? { Ok(()) } else { Err(Error::NotFound("client")) }
}

/// Points the account page's built-in client at `{issuer}/account` (the issuer is known
/// only to the running server), at start-up.
pub async fn ensure_account_client(state: &AppState) -> Result<()> {
    let uri = format!("{}{}", state.config.issuer, super::account::ACCOUNT_PATH);
    if clients::set_builtin_redirect_uris(&state.db, super::account::ACCOUNT_CLIENT_ID, &uri).await? {
        tracing::info!(redirect_uri = %uri, "the account page's client now returns to this issuer");
    } else if clients::find(&state.db, super::account::ACCOUNT_CLIENT_ID).await?.is_none() {
        tracing::warn!("the account page's client (latchkey-account) is missing: /account cannot sign anyone in");
    }
    Ok(())
}

/// A client's back-channel logout: where its tokens go and how their delivery stands,
/// with its most recent messages (newest first).
pub struct BackchannelView {
    pub client_id: String,
    pub uri: Option<String>,
    pub session_required: bool,
    pub state: crate::store::outbox::DeliveryState,
    pub recent: Vec<crate::store::outbox::OutboxRow>,
}

/// The most recent messages [`backchannel`] shows.
const RECENT_MESSAGES: u64 = 20;

pub async fn backchannel(state: &AppState, client_id: &str) -> Result<BackchannelView> {
    let client = get(state, client_id).await?;
    let delivery = crate::store::outbox::delivery_state(&state.db, client_id).await?;
    let recent = crate::store::outbox::of_recipient(&state.db, client_id, RECENT_MESSAGES).await?;
    Ok(BackchannelView {
        client_id: client.row.client_id,
        uri: client.row.backchannel_logout_uri,
        session_required: client.row.backchannel_logout_session_required,
        state: delivery,
        recent,
    })
}

/// Queues a client's dead logout tokens again (after its endpoint was fixed); how many.
pub async fn retry_dead_logouts(state: &AppState, client_id: &str, by: &Grantor<'_>) -> Result<u64> {
    let client = get(state, client_id).await?;
    check_may_manage(state, by, client_id, "client.backchannel_logout.retry").await?;
    if client.row.backchannel_logout_uri.is_none() {
        // Queued again, each would die at once: the URI comes first.
        return Err(Error::Conflict {
            code: ErrorCode::Conflict,
            description: format!("{client_id} has no backchannel_logout_uri; register one first"),
        });
    }
    let now = state.now();
    let audit = event(now, by.actor(), "client.backchannel_logout.retry", client_id, serde_json::json!({}));
    Ok(crate::store::outbox::requeue_dead(&state.db, client_id, now, audit).await?)
}

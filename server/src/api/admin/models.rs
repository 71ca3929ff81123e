//! Schemas of the admin API.

use chrono::{DateTime, Utc};
use poem_openapi::Object;
use poem_openapi::types::MaybeUndefined;

use crate::api::documented::{
    AuthMethodWord, ClientIdWord, NewPassword, NewUsername, PermissionWord, RoleName, ScopeToken, StatusWord,
};

use crate::api::models::UserResponse;
use crate::clock::to_datetime;
use crate::domain::audit::AuditEntry;
use crate::domain::clients::ClientView;
use crate::domain::sessions::SessionWithUser;
use crate::store::roles::RoleDetails;

// No Debug: it carries secrets.
/// One page of a list and its position, as every admin list answers. poem-openapi names
/// a generic object after its type parameters, which would rename these schemas (and
/// every generated client's types), so each page type is stamped out here instead.
macro_rules! page_types {
    ($($page:ident of $item:ty),+ $(,)?) => {$(
        #[derive(Debug, Object)]
        pub struct $page {
            pub items: Vec<$item>,
            pub total: u64,
            pub page: u64,
            pub page_size: u64,
        }

        impl $page {
            /// `items` (of page `page` of `total` rows) as the API shows them.
            pub fn of<R: Into<$item>>(items: Vec<R>, total: u64, page: crate::store::Page) -> Self {
                Self { items: items.into_iter().map(Into::into).collect(), total, page: page.number, page_size: page.size }
            }
        }
    )+};
}

page_types!(
    UserPage of UserResponse,
    ClientPage of ClientResponse,
    SessionPage of AdminSessionResponse,
    AuditPage of AuditEventResponse,
);

#[derive(Object)]
pub struct CreateUserRequest {
    pub username: NewUsername,
    #[oai(skip_serializing_if_is_none, validator(max_length = 254))]
    pub email: Option<String>,
    /// Omit to have a one-time password generated and returned once.
    #[oai(skip_serializing_if_is_none)]
    pub password: Option<NewPassword>,
    /// Extra roles; every user also holds `user`.
    #[oai(default, validator(max_items = 64, max_length = 64))]
    pub roles: Vec<RoleName>,
}

// No Debug: it carries secrets.
#[derive(Object)]
pub struct CreatedUserResponse {
    pub user: UserResponse,
    /// Present only when the server generated the password; shown this once.
    #[oai(skip_serializing_if_is_none)]
    pub one_time_password: Option<String>,
}

#[derive(Debug, Object)]
pub struct UpdateUserRequest {
    /// A new email, or `null` to remove it; omit to keep it.
    #[oai(validator(max_length = 254))]
    pub email: MaybeUndefined<String>,
    /// Mark the address verified (or not) by the admin's word; with a new `email`, it
    /// applies to that one.
    #[oai(skip_serializing_if_is_none)]
    pub email_verified: Option<bool>,
    /// Disabling ends every session at once.
    #[oai(skip_serializing_if_is_none)]
    pub status: Option<StatusWord>,
}

// No Debug: it carries secrets.
#[derive(Object)]
pub struct SetPasswordRequest {
    pub password: NewPassword,
}

#[derive(Debug, Object)]
pub struct SetRolesRequest {
    #[oai(validator(max_items = 64, max_length = 64))]
    pub roles: Vec<RoleName>,
}

#[derive(Debug, Object)]
pub struct RoleResponse {
    pub name: String,
    pub description: String,
    /// Built-in roles (`admin`, `user`) cannot be deleted.
    pub builtin: bool,
    pub permissions: Vec<String>,
    pub user_count: u64,
    pub created_at: DateTime<Utc>,
}

impl From<RoleDetails> for RoleResponse {
    fn from(role: RoleDetails) -> Self {
        Self {
            name: role.row.name,
            description: role.row.description,
            builtin: role.row.builtin,
            permissions: role.permissions,
            user_count: role.user_count,
            created_at: to_datetime(role.row.created_at),
        }
    }
}

#[derive(Debug, Object)]
pub struct CreateRoleRequest {
    #[oai(validator(max_length = 64))]
    pub name: RoleName,
    #[oai(default, validator(max_length = 512))]
    pub description: String,
    /// `resource:action` strings, e.g. `billing:read`.
    #[oai(default, validator(max_items = 256, max_length = 128))]
    pub permissions: Vec<PermissionWord>,
}

#[derive(Debug, Object)]
pub struct UpdateRoleRequest {
    #[oai(skip_serializing_if_is_none, validator(max_length = 512))]
    pub description: Option<String>,
    #[oai(skip_serializing_if_is_none, validator(max_items = 256, max_length = 128))]
    pub permissions: Option<Vec<PermissionWord>>,
}

#[derive(Debug, Object)]
pub struct ClientResponse {
    pub client_id: String,
    pub name: String,
    /// `public` or `confidential`.
    pub client_type: String,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    #[oai(skip_serializing_if_is_none)]
    pub audience: Option<String>,
    /// Roles carried by `client_credentials` tokens.
    pub roles: Vec<String>,
    /// Where the code flow may send the user back to (exact strings).
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// First-party clients skip consent and may carry Latchkey's audience and every role.
    pub first_party: bool,
    /// Browser origins that may call the token, userinfo and revoke endpoints (CORS).
    pub allowed_origins: Vec<String>,
    /// The user roles this client's tokens may carry; absent: all (first-party) or all
    /// but `admin` (third-party).
    #[oai(skip_serializing_if_is_none)]
    pub visible_roles: Option<Vec<String>>,
    /// `none`, `client_secret_basic` or `client_secret_post`; absent: a confidential
    /// client may use either secret method.
    #[oai(skip_serializing_if_is_none)]
    pub token_endpoint_auth_method: Option<String>,
    /// Where it is sent a logout token when a session of its user ends (OpenID Connect
    /// Back-Channel Logout 1.0); absent: it is not told.
    #[oai(skip_serializing_if_is_none)]
    pub backchannel_logout_uri: Option<String>,
    /// Whether every logout token it gets carries `sid` (sessions without a browser
    /// sign-in then tell it nothing).
    pub backchannel_logout_session_required: bool,
    /// Its token requests must carry a DPoP proof (RFC 9449 §5.2): its tokens are
    /// always bound to its key.
    pub dpop_bound_access_tokens: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn words(text: &str) -> Vec<String> {
    text.split_ascii_whitespace().map(str::to_string).collect()
}

impl From<ClientView> for ClientResponse {
    fn from(client: ClientView) -> Self {
        let row = client.row;
        Self {
            grant_types: words(&row.grant_types),
            scopes: words(&row.scopes),
            client_id: row.client_id,
            name: row.name,
            client_type: row.client_type.as_str().into(),
            audience: row.audience,
            roles: client.roles,
            redirect_uris: words(&row.redirect_uris),
            post_logout_redirect_uris: words(&row.post_logout_redirect_uris),
            first_party: row.first_party,
            allowed_origins: words(&row.allowed_origins),
            visible_roles: row.role_filter.as_deref().map(words),
            token_endpoint_auth_method: Some(row.token_endpoint_auth_method).filter(|m| !m.is_empty()),
            backchannel_logout_uri: row.backchannel_logout_uri,
            backchannel_logout_session_required: row.backchannel_logout_session_required,
            dpop_bound_access_tokens: row.dpop_bound_access_tokens,
            created_at: to_datetime(row.created_at),
            updated_at: to_datetime(row.updated_at),
        }
    }
}

#[derive(Debug, Object)]
pub struct CreateClientRequest {
    #[oai(validator(max_length = 64))]
    pub client_id: ClientIdWord,
    #[oai(validator(max_length = 128))]
    pub name: String,
    /// Confidential clients get a generated secret; public ones none.
    pub confidential: bool,
    #[oai(validator(max_items = 8, max_length = 32))]
    pub grant_types: Vec<String>,
    #[oai(default, validator(max_items = 64, max_length = 64))]
    pub scopes: Vec<ScopeToken>,
    #[oai(skip_serializing_if_is_none, validator(max_length = 256))]
    pub audience: Option<String>,
    #[oai(default, validator(max_items = 64, max_length = 64))]
    pub roles: Vec<RoleName>,
    /// Required with the `authorization_code` grant: https, loopback http (any port for
    /// an IP literal) or a private-use scheme; matched exactly.
    #[oai(default, validator(max_items = 16, max_length = 2000))]
    pub redirect_uris: Vec<String>,
    #[oai(default, validator(max_items = 16, max_length = 2000))]
    pub post_logout_redirect_uris: Vec<String>,
    /// Only a full admin may make a first-party client.
    #[oai(default)]
    pub first_party: bool,
    #[oai(default, validator(max_items = 16, max_length = 256))]
    pub allowed_origins: Vec<String>,
    #[oai(skip_serializing_if_is_none, validator(max_items = 64, max_length = 64))]
    pub visible_roles: Option<Vec<RoleName>>,
    /// `none` (public), `client_secret_basic` or `client_secret_post` (confidential);
    /// omitted: `none` for public, either secret method for confidential.
    #[oai(skip_serializing_if_is_none)]
    pub token_endpoint_auth_method: Option<AuthMethodWord>,
    /// https (http only on a loopback host), no fragment; Latchkey POSTs a logout token
    /// here when a session of its user ends.
    #[oai(skip_serializing_if_is_none, validator(max_length = 2000))]
    pub backchannel_logout_uri: Option<String>,
    /// Whether every logout token it gets must carry `sid`.
    #[oai(default)]
    pub backchannel_logout_session_required: bool,
    /// Refuse its token requests without a DPoP proof (RFC 9449 §5.2).
    #[oai(default)]
    pub dpop_bound_access_tokens: bool,
}

// No Debug: it carries secrets.
#[derive(Object)]
pub struct CreatedClientResponse {
    pub client: ClientResponse,
    /// For confidential clients: the secret, shown this once.
    #[oai(skip_serializing_if_is_none)]
    pub client_secret: Option<String>,
}

#[derive(Debug, Object)]
pub struct UpdateClientRequest {
    #[oai(skip_serializing_if_is_none, validator(max_length = 128))]
    pub name: Option<String>,
    #[oai(skip_serializing_if_is_none, validator(max_items = 8, max_length = 32))]
    pub grant_types: Option<Vec<String>>,
    #[oai(skip_serializing_if_is_none, validator(max_items = 64, max_length = 64))]
    pub scopes: Option<Vec<ScopeToken>>,
    /// A new audience, or `null` for the server default; omit to keep it.
    #[oai(validator(max_length = 256))]
    pub audience: MaybeUndefined<String>,
    #[oai(skip_serializing_if_is_none, validator(max_items = 64, max_length = 64))]
    pub roles: Option<Vec<RoleName>>,
    #[oai(skip_serializing_if_is_none, validator(max_items = 16, max_length = 2000))]
    pub redirect_uris: Option<Vec<String>>,
    #[oai(skip_serializing_if_is_none, validator(max_items = 16, max_length = 2000))]
    pub post_logout_redirect_uris: Option<Vec<String>>,
    #[oai(skip_serializing_if_is_none)]
    pub first_party: Option<bool>,
    #[oai(skip_serializing_if_is_none, validator(max_items = 16, max_length = 256))]
    pub allowed_origins: Option<Vec<String>>,
    /// The roles its tokens may carry, or `null` for the default filter; omit to keep it.
    #[oai(validator(max_items = 64, max_length = 64))]
    pub visible_roles: MaybeUndefined<Vec<RoleName>>,
    #[oai(skip_serializing_if_is_none)]
    pub token_endpoint_auth_method: Option<AuthMethodWord>,
    /// A new back-channel logout URI, or `null` for none; omit to keep it.
    #[oai(validator(max_length = 2000))]
    pub backchannel_logout_uri: MaybeUndefined<String>,
    #[oai(skip_serializing_if_is_none)]
    pub backchannel_logout_session_required: Option<bool>,
    #[oai(skip_serializing_if_is_none)]
    pub dpop_bound_access_tokens: Option<bool>,
}

// No Debug: it carries secrets.
#[derive(Object)]
pub struct ClientSecretResponse {
    pub client_id: String,
    /// The new secret, shown this once; the previous one no longer works.
    pub client_secret: String,
}

#[derive(Debug, Object)]
pub struct AdminSessionResponse {
    pub id: String,
    pub user_id: String,
    pub username: String,
    pub client_id: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub idle_expires_at: DateTime<Utc>,
    pub absolute_expires_at: DateTime<Utc>,
    #[oai(skip_serializing_if_is_none)]
    pub ip: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub user_agent: Option<String>,
}

impl From<SessionWithUser> for AdminSessionResponse {
    fn from(s: SessionWithUser) -> Self {
        let row = s.row;
        Self {
            id: row.id,
            user_id: row.user_id,
            username: s.username,
            client_id: row.client_id,
            created_at: to_datetime(row.created_at),
            last_used_at: to_datetime(row.last_used_at),
            idle_expires_at: to_datetime(row.idle_expires_at),
            absolute_expires_at: to_datetime(row.absolute_expires_at),
            ip: row.ip,
            user_agent: row.user_agent,
        }
    }
}

#[derive(Debug, Object)]
pub struct RevokedCount {
    pub revoked: u64,
}

#[derive(Debug, Object)]
pub struct AuditEventResponse {
    /// Increasing; use it with `after_id` to follow new events.
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    /// User id, client id, `cli`, `anonymous` or `self-registration`.
    pub actor: String,
    /// The username, when `actor` is a user's id.
    #[oai(skip_serializing_if_is_none)]
    pub actor_name: Option<String>,
    pub action: String,
    #[oai(skip_serializing_if_is_none)]
    pub target: Option<String>,
    /// The username, when `target` is a user's id.
    #[oai(skip_serializing_if_is_none)]
    pub target_name: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub ip: Option<String>,
    pub outcome: String,
    pub details: serde_json::Value,
    /// Its place in the log's hash chain (`GET /admin/audit/chain`).
    #[oai(skip_serializing_if_is_none)]
    pub chain_seq: Option<i64>,
    /// Its link: SHA-256 over the previous event's link and its own content, hex.
    #[oai(skip_serializing_if_is_none)]
    pub chain_hash: Option<String>,
}

/// The ends of the audit log's hash chain. Record the head somewhere the database's
/// writers cannot reach (a log, a ticket, another system), and later check it with
/// `latchkey audit verify --known SEQ:HASH`: a rebuilt chain does not hold it.
#[derive(Debug, Object)]
pub struct AuditChainResponse {
    /// The newest event's place in the chain (0 when the log is empty).
    pub head_seq: i64,
    /// The newest event's link (lowercase hex SHA-256).
    #[oai(validator(pattern = "^[0-9a-f]{64}$"))]
    pub head_hash: String,
    /// Where the chain starts: the last event the retention purge deleted (0 when none).
    pub anchor_seq: i64,
    #[oai(validator(pattern = "^[0-9a-f]{64}$"))]
    pub anchor_hash: String,
}

impl From<crate::store::audit::ChainEnds> for AuditChainResponse {
    fn from(ends: crate::store::audit::ChainEnds) -> Self {
        Self {
            head_seq: ends.head.seq,
            head_hash: ends.head.hash,
            anchor_seq: ends.anchor.seq,
            anchor_hash: ends.anchor.hash,
        }
    }
}

impl From<AuditEntry> for AuditEventResponse {
    fn from(AuditEntry { row, actor_name, target_name }: AuditEntry) -> Self {
        Self {
            id: row.id,
            occurred_at: to_datetime(row.occurred_at),
            actor: row.actor,
            actor_name,
            action: row.action,
            target: row.target,
            target_name,
            ip: row.ip,
            outcome: row.outcome,
            details: serde_json::from_str(&row.details).unwrap_or(serde_json::Value::Null),
            chain_seq: row.chain_seq,
            chain_hash: row.chain_hash,
        }
    }
}

/// How a client's back-channel logout tokens are delivered.
#[derive(Debug, Object)]
pub struct BackchannelDeliveryResponse {
    pub client_id: String,
    /// Absent: the client takes no logout tokens.
    #[oai(skip_serializing_if_is_none)]
    pub backchannel_logout_uri: Option<String>,
    pub backchannel_logout_session_required: bool,
    /// Waiting for delivery, failing ones included.
    pub pending: u64,
    /// Waiting after at least one failed attempt.
    pub failing: u64,
    /// Delivered, since the last purge.
    pub delivered: u64,
    /// Given up after the last attempt; `POST …/backchannel-logout/retry` queues them again.
    pub dead: u64,
    #[oai(skip_serializing_if_is_none)]
    pub last_delivered_at: Option<DateTime<Utc>>,
    /// The client's most recent messages, newest first (at most 20).
    pub recent: Vec<OutboxMessageResponse>,
}

#[derive(Debug, Object)]
pub struct OutboxMessageResponse {
    /// Also the `jti` of every logout token sent for it.
    pub id: String,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    /// When a pending message is next attempted.
    #[oai(skip_serializing_if_is_none)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub finished_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed (`answered HTTP 503`, `no answer within 5 s`, …).
    #[oai(skip_serializing_if_is_none)]
    pub last_error: Option<String>,
}

impl From<crate::domain::clients::BackchannelView> for BackchannelDeliveryResponse {
    fn from(view: crate::domain::clients::BackchannelView) -> Self {
        Self {
            client_id: view.client_id,
            backchannel_logout_uri: view.uri,
            backchannel_logout_session_required: view.session_required,
            pending: view.state.pending,
            failing: view.state.failing,
            delivered: view.state.delivered,
            dead: view.state.dead,
            last_delivered_at: view.state.last_delivered_at.map(to_datetime),
            recent: view
                .recent
                .into_iter()
                .map(|m| {
                    let pending = m.state == crate::store::entities::OutboxState::Pending;
                    OutboxMessageResponse {
                        id: m.id,
                        state: m.state.as_str().into(),
                        attempts: m.attempts.max(0) as u32,
                        created_at: to_datetime(m.created_at),
                        next_attempt_at: pending.then(|| to_datetime(m.next_attempt_at)),
                        finished_at: m.finished_at.map(to_datetime),
                        last_error: m.last_error,
                    }
                })
                .collect(),
        }
    }
}

#[derive(Debug, Object)]
pub struct RequeuedCount {
    pub requeued: u64,
}

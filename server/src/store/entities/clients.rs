use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "clients")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub client_id: String,
    pub name: String,
    pub client_type: super::ClientType,
    pub secret_hash: Option<String>,
    pub grant_types: String,
    pub scopes: String,
    pub audience: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Space-separated; matched as exact strings.
    pub redirect_uris: String,
    pub post_logout_redirect_uris: String,
    /// Ours: skips consent, and its tokens may carry our audience and every role.
    pub first_party: bool,
    pub allowed_origins: String,
    /// Space-separated role names its user tokens may carry; `None` is the default.
    pub role_filter: Option<String>,
    /// `none`, `client_secret_basic` or `client_secret_post`; empty: either secret method.
    pub token_endpoint_auth_method: String,
    /// Where logout tokens are POSTed (Back-Channel Logout 1.0); `None`: it takes none.
    pub backchannel_logout_uri: Option<String>,
    /// Whether every logout token it gets must carry `sid`.
    pub backchannel_logout_session_required: bool,
    /// Every token request must carry a DPoP proof (RFC 9449 §5.2).
    pub dpop_bound_access_tokens: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

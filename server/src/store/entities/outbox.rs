use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub kind: super::OutboxKind,
    /// Whom it is for: a client id for a logout token.
    pub recipient: String,
    /// JSON, read according to `kind`; never a secret.
    pub payload: String,
    pub state: super::OutboxState,
    /// Attempts claimed so far (the claim counts it before the attempt is made).
    pub attempts: i32,
    pub created_at: i64,
    /// When it is next due; a claim moves it past the claiming node's lease.
    pub next_attempt_at: i64,
    pub lease_owner: Option<String>,
    pub last_error: Option<String>,
    pub finished_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

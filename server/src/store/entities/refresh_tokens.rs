use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refresh_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub session_id: String,
    pub parent_id: Option<String>,
    pub token_hash: String,
    pub state: super::TokenState,
    pub created_at: i64,
    pub used_at: Option<i64>,
    pub expires_at: i64,
    /// While the token is rotated and within the grace window: its child, sealed under
    /// a key derived from this token (`security::sealed_child`).
    pub child_sealed: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(belongs_to = "super::sessions::Entity", from = "Column::SessionId", to = "super::sessions::Column::Id")]
    Session,
}

impl Related<super::sessions::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Session.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

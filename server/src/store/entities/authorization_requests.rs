use sea_orm::entity::prelude::*;

/// A sign-in in progress at the hosted pages, between `/oauth2/authorize` and the code.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "authorization_requests")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub browser_hash: String,
    pub client_id: String,
    pub params: String,
    pub user_id: Option<String>,
    pub amr: Option<String>,
    pub auth_time: Option<i64>,
    pub stage: String,
    pub notice: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

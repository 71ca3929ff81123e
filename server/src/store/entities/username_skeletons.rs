use sea_orm::entity::prelude::*;

/// One row per account: the UTS #39 skeleton of its login name, unique, so no two
/// accounts can have look-alike names.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "username_skeletons")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub skeleton: String,
    pub user_id: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

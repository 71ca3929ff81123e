//! The built-in client the hosted account page (`/account`) signs in through: public,
//! first-party (no consent), the code flow only. Its one redirect URI is
//! `{issuer}/account`, which only the running server knows: it sets it at start-up.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Clients {
    Table,
    ClientId,
    Name,
    ClientType,
    GrantTypes,
    Scopes,
    CreatedAt,
    UpdatedAt,
    FirstParty,
    TokenEndpointAuthMethod,
}

const ACCOUNT_CLIENT_ID: &str = "latchkey-account";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let insert = Query::insert()
            .into_table(Clients::Table)
            .columns([
                Clients::ClientId,
                Clients::Name,
                Clients::ClientType,
                Clients::GrantTypes,
                Clients::Scopes,
                Clients::CreatedAt,
                Clients::UpdatedAt,
                Clients::FirstParty,
                Clients::TokenEndpointAuthMethod,
            ])
            .values_panic([
                ACCOUNT_CLIENT_ID.into(),
                "Your account".into(),
                "public".into(),
                "authorization_code".into(),
                "openid".into(),
                0i64.into(),
                0i64.into(),
                true.into(),
                "none".into(),
            ])
            // An operator's own client of that name stays as it is.
            .on_conflict(OnConflict::column(Clients::ClientId).do_nothing().to_owned())
            .to_owned();
        manager.get_connection().execute(&insert).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let delete = Query::delete()
            .from_table(Clients::Table)
            .and_where(Expr::col(Clients::ClientId).eq(ACCOUNT_CLIENT_ID))
            .to_owned();
        manager.get_connection().execute(&delete).await?;
        Ok(())
    }
}

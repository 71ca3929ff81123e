//! Back-channel logout (OpenID Connect Back-Channel Logout 1.0): each client may register
//! the URI it is told at when a user's session with it ends, and the messages telling
//! it wait in a durable outbox, written in the transaction that ends the session.
//!
//! The outbox is one mechanism for every kind of message the server sends on its own
//! (`kind`): a row is due once `next_attempt_at` has passed; a node claims it by moving
//! `next_attempt_at` past its lease and counting the attempt, so a node that dies while
//! sending leaves it due again once the lease has run out.

use sea_orm_migration::prelude::*;

use crate::ddl::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Clients {
    Table,
    /// Where the logout token is POSTed; NULL when the client takes none.
    BackchannelLogoutUri,
    /// Whether the client needs `sid` in every logout token.
    BackchannelLogoutSessionRequired,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    /// What the message is (`backchannel_logout`), and so how `payload` reads.
    Kind,
    /// Whom it is for: a client id for a logout token.
    Recipient,
    /// JSON; never a secret (a logout token is signed when it is sent).
    Payload,
    /// `pending`, `delivered` or `dead`.
    State,
    Attempts,
    CreatedAt,
    NextAttemptAt,
    /// The node that claimed the last attempt.
    LeaseOwner,
    /// Why the last attempt failed, in words that carry no secret.
    LastError,
    FinishedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE takes one change at a time.
        let uri = text_null(Clients::BackchannelLogoutUri);
        manager.alter_table(Table::alter().table(Clients::Table).add_column(uri).to_owned()).await?;
        let required =
            ColumnDef::new(Clients::BackchannelLogoutSessionRequired).boolean().not_null().default(false).to_owned();
        manager.alter_table(Table::alter().table(Clients::Table).add_column(required).to_owned()).await?;
        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .col(id_pk(Outbox::Id))
                    .col(text(Outbox::Kind))
                    .col(text(Outbox::Recipient))
                    .col(text(Outbox::Payload))
                    .col(text(Outbox::State))
                    .col(ColumnDef::new(Outbox::Attempts).integer().not_null().default(0))
                    .col(unix_time(Outbox::CreatedAt))
                    .col(unix_time(Outbox::NextAttemptAt))
                    .col(text_null(Outbox::LeaseOwner))
                    .col(text_null(Outbox::LastError))
                    .col(unix_time_null(Outbox::FinishedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("idx_outbox_due", Outbox::Table, Outbox::State).col(Outbox::NextAttemptAt).to_owned())
            .await?;
        manager
            .create_index(
                index("idx_outbox_recipient", Outbox::Table, Outbox::Recipient).col(Outbox::CreatedAt).to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Outbox::Table).to_owned()).await?;
        for column in [Clients::BackchannelLogoutSessionRequired, Clients::BackchannelLogoutUri] {
            manager.alter_table(Table::alter().table(Clients::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}

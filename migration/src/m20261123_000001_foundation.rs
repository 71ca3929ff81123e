//! Users, roles and their permissions, signing keys and the audit log.

use crate::ddl::*;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Username,
    UsernameNormalized,
    Email,
    PasswordHash,
    Status,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Roles {
    Table,
    Name,
    Description,
    Builtin,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RolePermissions {
    Table,
    RoleName,
    Permission,
}

#[derive(DeriveIden)]
enum UserRoles {
    Table,
    UserId,
    RoleName,
}

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    Kid,
    Algorithm,
    Bits,
    State,
    PublicN,
    PublicE,
    PrivateKeyEncrypted,
    CreatedAt,
    ActivatedAt,
    RetiredAt,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    OccurredAt,
    Actor,
    Action,
    Target,
    Ip,
    Outcome,
    Details,
}

/// Permissions the built-in `admin` role is seeded with. The list is data: operators
/// add their own permission strings to their own roles.
const ADMIN_PERMISSIONS: &[&str] = &[
    "users:read",
    "users:write",
    "roles:read",
    "roles:write",
    "sessions:read",
    "sessions:revoke",
    "clients:read",
    "clients:write",
    "keys:read",
    "keys:rotate",
    "audit:read",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(id_pk(Users::Id))
                    .col(text(Users::Username))
                    .col(ColumnDef::new(Users::UsernameNormalized).string_len(255).not_null().unique_key())
                    .col(text_null(Users::Email))
                    .col(text(Users::PasswordHash))
                    .col(ColumnDef::new(Users::Status).string_len(16).not_null().default("active"))
                    .col(unix_time(Users::CreatedAt))
                    .col(unix_time(Users::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Roles::Table)
                    .col(ColumnDef::new(Roles::Name).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(Roles::Description).text().not_null().default(""))
                    .col(ColumnDef::new(Roles::Builtin).boolean().not_null().default(false))
                    .col(unix_time(Roles::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RolePermissions::Table)
                    .col(ColumnDef::new(RolePermissions::RoleName).string_len(64).not_null())
                    .col(ColumnDef::new(RolePermissions::Permission).string_len(128).not_null())
                    .primary_key(Index::create().col(RolePermissions::RoleName).col(RolePermissions::Permission))
                    .foreign_key(&mut role_cascade(
                        RolePermissions::Table,
                        RolePermissions::RoleName,
                        Roles::Table,
                        Roles::Name,
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(UserRoles::Table)
                    .col(uuid_ref(UserRoles::UserId))
                    .col(ColumnDef::new(UserRoles::RoleName).string_len(64).not_null())
                    .primary_key(Index::create().col(UserRoles::UserId).col(UserRoles::RoleName))
                    .foreign_key(&mut cascade(UserRoles::Table, UserRoles::UserId, Users::Table, Users::Id))
                    .foreign_key(&mut role_cascade(UserRoles::Table, UserRoles::RoleName, Roles::Table, Roles::Name))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("idx_user_roles_role", UserRoles::Table, UserRoles::RoleName)).await?;

        manager
            .create_table(
                Table::create()
                    .table(SigningKeys::Table)
                    .col(ColumnDef::new(SigningKeys::Kid).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(SigningKeys::Algorithm).string_len(16).not_null())
                    .col(ColumnDef::new(SigningKeys::Bits).integer().not_null())
                    .col(ColumnDef::new(SigningKeys::State).string_len(16).not_null())
                    .col(text(SigningKeys::PublicN))
                    .col(text(SigningKeys::PublicE))
                    .col(text(SigningKeys::PrivateKeyEncrypted))
                    .col(unix_time(SigningKeys::CreatedAt))
                    .col(unix_time_null(SigningKeys::ActivatedAt))
                    .col(unix_time_null(SigningKeys::RetiredAt))
                    .to_owned(),
            )
            .await?;
        // At most one active key, enforced by the database so that two nodes starting
        // on an empty database cannot both install one.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX idx_signing_keys_one_active ON signing_keys (state) WHERE state = 'active'",
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(ColumnDef::new(AuditEvents::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(unix_time(AuditEvents::OccurredAt))
                    .col(text(AuditEvents::Actor))
                    .col(ColumnDef::new(AuditEvents::Action).string_len(64).not_null())
                    .col(text_null(AuditEvents::Target))
                    .col(text_null(AuditEvents::Ip))
                    .col(ColumnDef::new(AuditEvents::Outcome).string_len(16).not_null())
                    .col(ColumnDef::new(AuditEvents::Details).text().not_null().default("{}"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("idx_audit_events_occurred_at", AuditEvents::Table, AuditEvents::OccurredAt))
            .await?;

        seed_builtin_roles(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(
            manager,
            [
                AuditEvents::Table.into_iden(),
                SigningKeys::Table.into_iden(),
                UserRoles::Table.into_iden(),
                RolePermissions::Table.into_iden(),
                Roles::Table.into_iden(),
                Users::Table.into_iden(),
            ],
        )
        .await
    }
}

async fn seed_builtin_roles(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let insert_roles = Query::insert()
        .into_table(Roles::Table)
        .columns([Roles::Name, Roles::Description, Roles::Builtin, Roles::CreatedAt])
        .values_panic(["admin".into(), "Full administrative access".into(), true.into(), 0i64.into()])
        .values_panic(["user".into(), "Default role of every registered user".into(), true.into(), 0i64.into()])
        .to_owned();
    db.execute(&insert_roles).await?;

    let mut insert_permissions = Query::insert()
        .into_table(RolePermissions::Table)
        .columns([RolePermissions::RoleName, RolePermissions::Permission])
        .to_owned();
    for permission in ADMIN_PERMISSIONS {
        insert_permissions.values_panic(["admin".into(), (*permission).into()]);
    }
    db.execute(&insert_permissions).await?;
    Ok(())
}

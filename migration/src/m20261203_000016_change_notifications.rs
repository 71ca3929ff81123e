//! PostgreSQL only: every change to a row that a node may cache commits a
//! `NOTIFY latchkey_changes` naming it, in the changing transaction, so every node
//! drops its copy when (and only if) the change commits. Triggers rather than calls in
//! the code, so no path can forget one: the server's, the CLI's, a migration's, or an
//! operator's own SQL. The payloads are `kind:key` (see the server's `store::cache`):
//!
//! - `session:<id>` — a session changed or went, except the columns a refresh touches
//!   (`last_used_at`; `idle_expires_at` while it moves later — an earlier one, as after
//!   the idle timeout was shortened, notifies; `dpop_jkt`, set once by the refresh that
//!   binds it, which no cached read uses), so refreshing notifies nothing;
//! - `user:<id>` — a user changed or went, or their roles changed;
//! - `client:<id>` — a client changed or went, or its roles changed;
//! - `role:<name>` — a role's permissions changed, or the role went;
//! - `truncate:<table>` — any of those tables was truncated (nodes empty their caches).
//!
//! SQLite runs one node and caches nothing, so it gets none of this.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `latchkey_notify_change(kind, key_column)`: notifies `kind:<key>` for the changed
/// row (old and new key, when an update changes it).
const FUNCTION: &str = r#"
CREATE OR REPLACE FUNCTION latchkey_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kind text := TG_ARGV[0];
    key_column text := TG_ARGV[1];
    old_key text;
    new_key text;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        old_key := to_jsonb(OLD) ->> key_column;
        PERFORM pg_notify('latchkey_changes', kind || ':' || old_key);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_key := to_jsonb(NEW) ->> key_column;
        IF old_key IS DISTINCT FROM new_key THEN
            PERFORM pg_notify('latchkey_changes', kind || ':' || new_key);
        END IF;
    END IF;
    RETURN NULL;
END
$$
"#;

/// A truncate has no rows to name: `truncate:<table>`, which nodes answer by emptying
/// their caches.
const TRUNCATE_FUNCTION: &str = r#"
CREATE OR REPLACE FUNCTION latchkey_notify_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('latchkey_changes', 'truncate:' || TG_TABLE_NAME);
    RETURN NULL;
END
$$
"#;

const TRUNCATED: &[&str] = &["sessions", "users", "user_roles", "clients", "client_roles", "roles", "role_permissions"];

/// (trigger, table, events, kind, key column, condition).
const TRIGGERS: &[(&str, &str, &str, &str, &str, &str)] = &[
    (
        "sessions_notify_change",
        "sessions",
        "UPDATE",
        "session",
        "id",
        "WHEN ((to_jsonb(OLD) - ARRAY['last_used_at', 'idle_expires_at', 'dpop_jkt']) \
         IS DISTINCT FROM (to_jsonb(NEW) - ARRAY['last_used_at', 'idle_expires_at', 'dpop_jkt']) \
         OR NEW.idle_expires_at < OLD.idle_expires_at)",
    ),
    ("sessions_notify_delete", "sessions", "DELETE", "session", "id", ""),
    ("users_notify_change", "users", "UPDATE OR DELETE", "user", "id", ""),
    ("user_roles_notify_change", "user_roles", "INSERT OR UPDATE OR DELETE", "user", "user_id", ""),
    ("clients_notify_change", "clients", "UPDATE OR DELETE", "client", "client_id", ""),
    ("client_roles_notify_change", "client_roles", "INSERT OR UPDATE OR DELETE", "client", "client_id", ""),
    ("roles_notify_change", "roles", "UPDATE OR DELETE", "role", "name", ""),
    ("role_permissions_notify_change", "role_permissions", "INSERT OR UPDATE OR DELETE", "role", "role_name", ""),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(FUNCTION).await?;
        for (name, table, events, kind, key_column, condition) in TRIGGERS {
            db.execute_unprepared(&format!(
                "CREATE TRIGGER {name} AFTER {events} ON {table} FOR EACH ROW {condition} \
                 EXECUTE FUNCTION latchkey_notify_change('{kind}', '{key_column}')"
            ))
            .await?;
        }
        db.execute_unprepared(TRUNCATE_FUNCTION).await?;
        for table in TRUNCATED {
            db.execute_unprepared(&format!(
                "CREATE TRIGGER {table}_notify_truncate AFTER TRUNCATE ON {table} FOR EACH STATEMENT \
                 EXECUTE FUNCTION latchkey_notify_truncate()"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        for (name, table, ..) in TRIGGERS {
            db.execute_unprepared(&format!("DROP TRIGGER {name} ON {table}")).await?;
        }
        for table in TRUNCATED {
            db.execute_unprepared(&format!("DROP TRIGGER {table}_notify_truncate ON {table}")).await?;
        }
        db.execute_unprepared("DROP FUNCTION latchkey_notify_change()").await?;
        db.execute_unprepared("DROP FUNCTION latchkey_notify_truncate()").await?;
        Ok(())
    }
}

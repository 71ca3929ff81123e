//! The `scale` run: the same refresh and login load against databases holding 10³…10⁶
//! users and ten rotated refresh tokens per user, to show that lookups stay indexed
//! (flat rates) as tables grow. Rows are bulk-inserted with one shared, precomputed
//! password hash — not through the API.

use anyhow::Context;
use sea_orm::sea_query::{Alias, Query, SimpleExpr};
use sea_orm::{ConnectionTrait, Database};

const BATCH: usize = 1000;

fn insert(table: &str, columns: &[&str], rows: Vec<Vec<SimpleExpr>>) -> sea_orm::sea_query::InsertStatement {
    let mut stmt = Query::insert();
    stmt.into_table(Alias::new(table)).columns(columns.iter().map(|c| Alias::new(*c)));
    for row in rows {
        stmt.values_panic(row);
    }
    stmt.to_owned()
}

/// Adds `users` users, one session each, and ten rotated refresh tokens per session.
pub async fn seed(database_url: &str, users: usize, password_hash: &str) -> anyhow::Result<()> {
    let db = Database::connect(database_url).await.context("connecting to the bench database")?;
    let now = chrono::Utc::now().timestamp();
    let far = now + 30 * 24 * 3600;
    let mut start = 0;
    while start < users {
        let end = (start + BATCH).min(users);
        let ids: Vec<String> = (start..end).map(|i| format!("00000000-0000-7000-8000-{i:012}")).collect();
        let user_rows = ids
            .iter()
            .enumerate()
            .map(|(k, id)| {
                let name = format!("scale-user-{}", start + k);
                vec![
                    id.clone().into(),
                    name.clone().into(),
                    name.into(),
                    password_hash.into(),
                    "active".into(),
                    now.into(),
                    now.into(),
                ]
            })
            .collect();
        db.execute(&insert(
            "users",
            &["id", "username", "username_normalized", "password_hash", "status", "created_at", "updated_at"],
            user_rows,
        ))
        .await?;
        let session_rows = ids
            .iter()
            .map(|id| {
                let sid = id.replacen("00000000", "11111111", 1);
                vec![
                    sid.into(),
                    id.clone().into(),
                    "spa".into(),
                    now.into(),
                    now.into(),
                    far.into(),
                    far.into(),
                    "pwd".into(),
                    now.into(),
                    "openid profile".into(),
                ]
            })
            .collect();
        db.execute(&insert(
            "sessions",
            &[
                "id",
                "user_id",
                "client_id",
                "created_at",
                "last_used_at",
                "idle_expires_at",
                "absolute_expires_at",
                "amr",
                "auth_time",
                "scope",
            ],
            session_rows,
        ))
        .await?;
        for generation in 0..10u64 {
            let token_rows = (start..end)
                .map(|i| {
                    let sid = format!("11111111-0000-7000-8000-{i:012}");
                    let tid = format!("22222222-{generation:04}-7000-8000-{i:012}");
                    vec![
                        tid.into(),
                        sid.into(),
                        format!("{:056x}{generation:08x}", i).into(),
                        "rotated".into(),
                        now.into(),
                        now.into(),
                        far.into(),
                    ]
                })
                .collect();
            db.execute(&insert(
                "refresh_tokens",
                &["id", "session_id", "token_hash", "state", "created_at", "used_at", "expires_at"],
                token_rows,
            ))
            .await?;
        }
        start = end;
    }
    db.close().await?;
    Ok(())
}

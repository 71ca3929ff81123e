//! Migrations go up, down and up again on a fresh database of the engine under test.

use latchkey_server::store;
use sea_orm::{ConnectionTrait, Statement};

use crate::harness::{backend, fresh_database_url, test_config};

async fn table_count(db: &store::Db) -> i64 {
    let sql = if store::is_postgres(db) {
        "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> 'seaql_migrations'"
    } else {
        "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'seaql_migrations'"
    };
    let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap().unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

#[tokio::test]
async fn up_down_up() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await;
    let config = test_config(dir.path(), url).validate().unwrap();
    let db = store::connect(&config).await.unwrap();
    store::migrate_up(&db).await.unwrap();
    let tables = table_count(&db).await;
    assert!(tables >= 9, "{tables} tables on {}", backend());
    assert_eq!(store::pending_migrations(&db).await.unwrap(), 0);
    store::migrate_down_all(&db).await.unwrap();
    assert_eq!(table_count(&db).await, 0, "down removes every table on {}", backend());
    store::migrate_up(&db).await.unwrap();
    assert_eq!(table_count(&db).await, tables);
    // Seeded data came back too: the built-in roles and first-party clients.
    assert!(store::clients::find(&db, "spa").await.unwrap().is_some());
    assert!(store::roles::missing(&db, &["admin".into(), "user".into()]).await.unwrap().is_empty());
}

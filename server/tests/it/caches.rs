//! PostgreSQL's caches (`store::postgres::cache`): what one node caches, a change made
//! anywhere else drops at its notification — with no polling interval and no
//! time-to-live — and a node whose listener connection is gone trusts nothing it holds.
//! Two nodes on one database; the changes are made on the other node, or as an
//! operator's SQL, so only the notification can tell the caching node.

use std::time::Duration;

use latchkey_server::store::postgres::cache::ListenerStatus;
use sea_orm::ConnectionTrait;
use tokio::sync::watch;

use super::harness::{TestServer, missing_prerequisite, postgres_admin_url, user_with_roles};

const PREREQUISITE: &str = "PostgreSQL (TEST_DATABASE_URL): only that engine caches";

/// Two nodes, the second's listener connected.
async fn two_nodes(test: &str) -> (TestServer, TestServer, watch::Receiver<ListenerStatus>) {
    if postgres_admin_url().is_none() {
        missing_prerequisite(test, PREREQUISITE);
    }
    let first = TestServer::start().await;
    let second = first.second_node().await;
    let mut status = second.state.tokens.listener_status().expect("the PostgreSQL engine");
    wait(&mut status, "the listener connects", |s| s.listening).await;
    (first, second, status)
}

/// Waits for the listener's status to satisfy `condition` (woken by each change of it;
/// the bound only turns a hang into a failure).
async fn wait(
    status: &mut watch::Receiver<ListenerStatus>,
    what: &str,
    condition: impl FnMut(&ListenerStatus) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(10), status.wait_for(condition))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting until {what}"))
        .expect("the listener's status is kept while its server runs");
}

fn hits(server: &TestServer, cache: &str) -> u64 {
    server.state.metrics.cache.lookups.with_label_values(&[cache, "hit"]).get()
}

/// Calls `request` on `server` until one answer came from its `cache`, each answering
/// `status`. The changes that made the row (a sign-in's attempt counter, a new client's
/// roles) notify every node a moment later and drop what was cached meanwhile, so the
/// first rounds may read it again.
async fn until_cached<F, Fut>(server: &TestServer, cache: &str, status: u16, mut request: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    for _ in 0..10 {
        assert_eq!(request().await.status(), status);
        let before = hits(server, cache);
        assert_eq!(request().await.status(), status);
        if hits(server, cache) > before {
            return;
        }
    }
    panic!("the {cache} cache never answered");
}

/// `me` on `server` until it is answered from the session cache.
async fn cached_me(server: &TestServer, access_token: &str) {
    until_cached(server, "session", 200, || server.me(access_token)).await;
}

fn session_of(access_token: &str) -> String {
    let claims: serde_json::Value =
        jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(access_token).unwrap().claims;
    claims["sid"].as_str().unwrap().to_string()
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL): the PostgreSQL pass runs it"]
async fn a_session_revoked_on_one_node_is_refused_by_the_other_at_its_notification() {
    let (first, second, mut status) = two_nodes("caches::revoked_session").await;
    let (access, cookie) = first.signed_in("ada").await;
    cached_me(&second, &access).await;

    let seen = status.borrow().sessions_changed;
    let logout = first.cookie_post("/auth/logout", &cookie).send().await.unwrap();
    assert!(logout.status().is_success(), "logout on the first node: {}", logout.status());
    wait(&mut status, "the second node applies the session's notification", |s| s.sessions_changed > seen).await;
    assert_eq!(second.me(&access).await.status(), 401, "the second node no longer answers from its copy");
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL): the PostgreSQL pass runs it"]
async fn an_operators_sql_is_seen_too_and_a_node_reads_its_own_changes_at_once() {
    let (first, second, mut status) = two_nodes("caches::operator_sql").await;
    let (access, _) = first.signed_in("ada").await;
    cached_me(&second, &access).await;
    cached_me(&first, &access).await;

    // Revoked by hand, outside any server: the trigger notifies all the same.
    let seen = status.borrow().sessions_changed;
    let revoke = format!("UPDATE sessions SET revoked_at = 1 WHERE id = '{}'", session_of(&access));
    first.state.db.execute_unprepared(&revoke).await.unwrap();
    wait(&mut status, "the second node applies the notification", |s| s.sessions_changed > seen).await;
    assert_eq!(second.me(&access).await.status(), 401);
    // The first node wrote it through its own pool: its next read is fresh, whether or
    // not its own notification has come back yet.
    assert_eq!(first.me(&access).await.status(), 401);
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL): the PostgreSQL pass runs it"]
async fn a_node_whose_listener_is_killed_trusts_nothing_until_it_has_reconnected() {
    let (first, second, mut status) = two_nodes("caches::listener_killed").await;
    let (access, _) = first.signed_in("ada").await;
    cached_me(&second, &access).await;

    let ListenerStatus { backend_pid, connects, .. } = *status.borrow();
    let pid = backend_pid.expect("a listening connection");
    first.state.db.execute_unprepared(&format!("SELECT pg_terminate_backend({pid})")).await.unwrap();
    wait(&mut status, "the second node notices", |s| !s.listening).await;

    // Revoked while the second node hears nothing: its notification is lost to it.
    let revoke = format!("UPDATE sessions SET revoked_at = 1 WHERE id = '{}'", session_of(&access));
    first.state.db.execute_unprepared(&revoke).await.unwrap();
    let bypassed = second.state.metrics.cache.lookups.with_label_values(&["session", "bypass"]).get();
    assert_eq!(second.me(&access).await.status(), 401, "a node without its listener reads the database");
    assert_eq!(second.state.metrics.cache.lookups.with_label_values(&["session", "bypass"]).get(), bypassed + 1);

    wait(&mut status, "the listener reconnects", |s| s.listening && s.connects > connects).await;
    assert_ne!(status.borrow().backend_pid, Some(pid), "on a new connection");
    // Caching again, and hearing again.
    let (again, cookie) = first.login("ada").await;
    cached_me(&second, &again).await;
    let seen = status.borrow().sessions_changed;
    first.cookie_post("/auth/logout", &cookie).send().await.unwrap();
    wait(&mut status, "the reconnected listener applies a notification", |s| s.sessions_changed > seen).await;
    assert_eq!(second.me(&again).await.status(), 401);
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL): the PostgreSQL pass runs it"]
async fn role_permissions_and_clients_cached_on_one_node_follow_changes_made_elsewhere() {
    let (first, second, mut status) = two_nodes("caches::roles_and_clients").await;
    for sql in [
        "INSERT INTO roles (name, description, builtin, created_at) VALUES ('auditor', 'reads users', false, 0)",
        "INSERT INTO role_permissions (role_name, permission) VALUES ('auditor', 'users:read')",
    ] {
        first.state.db.execute_unprepared(sql).await.unwrap();
    }
    let (_, access) = user_with_roles(&first, "eve", &["auditor"]).await;
    let users = |server: &TestServer| server.get("/admin/users").bearer_auth(&access).send();
    until_cached(&second, "permissions", 200, || async { users(&second).await.unwrap() }).await;
    let seen = status.borrow().roles_changed;
    first.state.db.execute_unprepared("DELETE FROM role_permissions WHERE role_name = 'auditor'").await.unwrap();
    wait(&mut status, "the role's notification", |s| s.roles_changed > seen).await;
    assert_eq!(users(&second).await.unwrap().status(), 403, "the permission is gone on the other node too");

    let secret = first.create_client("svc", true, &["client_credentials"], &["user"]).await.unwrap();
    let token = |server: &TestServer| {
        server
            .post("/oauth2/token")
            .basic_auth("svc", Some(&secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    until_cached(&second, "client", 200, || async { token(&second).await.unwrap() }).await;
    let seen = status.borrow().clients_changed;
    first.state.db.execute_unprepared("DELETE FROM clients WHERE client_id = 'svc'").await.unwrap();
    wait(&mut status, "the client's notification", |s| s.clients_changed > seen).await;
    assert_eq!(token(&second).await.unwrap().status(), 401, "a deleted client is unknown on the other node too");
}

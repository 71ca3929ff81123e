//! The fixes from the security audit, one test (or more) per finding. Each fails on the
//! code before its fix: the finding's probe is the test.

use std::time::Duration;

use latchkey_server::config::Quota;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{
    Fetch, PASSWORD, TestServer, assert_error, backend, call, enable_totp, finish_mfa, mfa_token, user_with_roles,
};

async fn make_role(server: &TestServer, admin: &str, name: &str, permissions: &[&str]) {
    let body = json!({"name": name, "permissions": permissions});
    let (status, body) = call(server, admin, Method::POST, "/admin/roles", Some(body)).await;
    assert_eq!(status, 201, "{body}");
}

fn assert_refused(status: u16, body: &Value, what: &str) {
    assert_eq!(status, 403, "{what} on {}: {body}", backend());
    assert_eq!(body["error"], "insufficient_permissions", "{what}: {body}");
}

async fn refused_grants(server: &TestServer) -> usize {
    server.audit_actions().await.iter().filter(|(action, _)| action == "grant.refused").count()
}

/// Finding 1, `users:write`: neither one's own roles nor a new user's may reach past
/// what the actor holds, and an account holding more cannot be taken over.
#[tokio::test]
async fn users_write_alone_cannot_grant_admin_or_take_over_an_admin() {
    let server = TestServer::start().await;
    let (root_id, root) = user_with_roles(&server, "root", &["admin"]).await;
    make_role(&server, &root, "user-manager", &["users:read", "users:write"]).await;
    make_role(&server, &root, "auditor", &["audit:read"]).await;
    let (own_id, manager) = user_with_roles(&server, "manager", &["user-manager"]).await;

    let own_roles = format!("/admin/users/{own_id}/roles");
    let (status, body) =
        call(&server, &manager, Method::PUT, &own_roles, Some(json!({"roles": ["user", "admin"]}))).await;
    assert_refused(status, &body, "granting oneself admin");
    assert!(body["error_description"].as_str().unwrap().contains("admin role"), "{body}");
    let (status, body) =
        call(&server, &manager, Method::PUT, &own_roles, Some(json!({"roles": ["user-manager", "auditor"]}))).await;
    assert_refused(status, &body, "granting oneself a role with audit:read");
    assert!(body["error_description"].as_str().unwrap().contains("audit:read"), "names what is missing: {body}");

    let new_admin = json!({"username": "minion", "password": PASSWORD, "roles": ["admin"]});
    let (status, body) = call(&server, &manager, Method::POST, "/admin/users", Some(new_admin)).await;
    assert_refused(status, &body, "creating an admin");

    // What it holds, it may hand out.
    let peer = json!({"username": "peer", "password": PASSWORD, "roles": ["user-manager"]});
    let (status, body) = call(&server, &manager, Method::POST, "/admin/users", Some(peer)).await;
    assert_eq!(status, 201, "{body}");

    // An admin's password, status, roles, lock, TOTP and existence are out of its reach.
    let root_path = format!("/admin/users/{root_id}");
    for (method, path, body) in [
        (Method::PUT, format!("{root_path}/password"), Some(json!({"password": "taken over at last"}))),
        (Method::PATCH, root_path.clone(), Some(json!({"status": "disabled"}))),
        (Method::PATCH, root_path.clone(), Some(json!({"email": "attacker@example.com"}))),
        (Method::PUT, format!("{root_path}/roles"), Some(json!({"roles": ["user"]}))),
        (Method::POST, format!("{root_path}/unlock"), None),
        (Method::DELETE, format!("{root_path}/totp"), None),
        (Method::DELETE, root_path.clone(), None),
    ] {
        let (status, answer) = call(&server, &manager, method.clone(), &path, body).await;
        assert_refused(status, &answer, &format!("{method} {path}"));
    }
    assert_eq!(server.me(&root).await.status(), 200, "the admin's session is untouched");
    assert_eq!(refused_grants(&server).await, 10, "every refusal is audited");
    server.stop().await;
}

/// Finding 1, `roles:write`: the built-in `user` role (every account's) is a full admin's
/// alone and never carries Latchkey's own permissions; custom roles only what one holds.
#[tokio::test]
async fn roles_write_alone_cannot_widen_the_user_role_or_mint_permissions() {
    let server = TestServer::start().await;
    let (_, root) = user_with_roles(&server, "root", &["admin"]).await;
    make_role(&server, &root, "role-manager", &["roles:read", "roles:write"]).await;
    make_role(&server, &root, "key-reader", &["keys:read"]).await;
    let (_, manager) = user_with_roles(&server, "manager", &["role-manager"]).await;

    let everything = json!({"permissions": ["users:read", "users:write", "keys:read", "keys:rotate"]});
    let (status, body) = call(&server, &manager, Method::PATCH, "/admin/roles/user", Some(everything)).await;
    assert_refused(status, &body, "widening the user role");
    let (status, body) = call(
        &server,
        &manager,
        Method::POST,
        "/admin/roles",
        Some(json!({"name": "sneaky", "permissions": ["keys:rotate"]})),
    )
    .await;
    assert_refused(status, &body, "a role with a permission it lacks");
    let (status, body) =
        call(&server, &manager, Method::PATCH, "/admin/roles/key-reader", Some(json!({"description": "mine"}))).await;
    assert_refused(status, &body, "editing a role that grants more than it holds");
    let (status, body) = call(&server, &manager, Method::DELETE, "/admin/roles/key-reader", None).await;
    assert_refused(status, &body, "deleting a role that grants more than it holds");
    let (status, _) = call(
        &server,
        &manager,
        Method::POST,
        "/admin/roles",
        Some(json!({"name": "readers", "permissions": ["roles:read"]})),
    )
    .await;
    assert_eq!(status, 201, "a role within its own permissions");

    // A self-registered user still cannot read the keys.
    let (walker, _) = server.signed_in("walker").await;
    let (status, _) = call(&server, &walker, Method::GET, "/admin/keys", None).await;
    assert_eq!(status, 403);

    // Even a full admin cannot put Latchkey's permissions on the user role; its own may.
    let (status, body) =
        call(&server, &root, Method::PATCH, "/admin/roles/user", Some(json!({"permissions": ["keys:read"]}))).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("builtin_role")), "{body}");
    let (status, body) =
        call(&server, &root, Method::PATCH, "/admin/roles/user", Some(json!({"permissions": ["billing:read"]}))).await;
    assert_eq!(status, 200, "{body}");
    // The admin role holds every permission, custom ones too: it may grant billing:read.
    let (status, _) = call(
        &server,
        &root,
        Method::POST,
        "/admin/roles",
        Some(json!({"name": "billing", "permissions": ["billing:read", "billing:write"]})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(refused_grants(&server).await, 4);
    server.stop().await;
}

/// Finding 1, `clients:write`: a client with the admin role, or a first-party one (whose
/// tokens carry Latchkey's own audience and open the admin API), is a full admin's to
/// make; a third-party client's tokens never carry that audience.
#[tokio::test]
async fn clients_write_alone_cannot_mint_an_admin_service() {
    let server = TestServer::start().await;
    let (_, root) = user_with_roles(&server, "root", &["admin"]).await;
    make_role(&server, &root, "client-manager", &["clients:read", "clients:write"]).await;
    make_role(&server, &root, "reporter", &["reports:read"]).await;
    let (_, manager) = user_with_roles(&server, "manager", &["client-manager"]).await;
    let client = |id: &str, roles: &[&str], audience: Option<&str>| {
        let mut body = json!({"client_id": id, "name": id, "confidential": true,
            "grant_types": ["client_credentials"], "roles": roles});
        if let Some(audience) = audience {
            body["audience"] = json!(audience);
        }
        body
    };

    let (status, body) =
        call(&server, &manager, Method::POST, "/admin/clients", Some(client("svc", &["admin"], Some("reports")))).await;
    assert_refused(status, &body, "a client with the admin role");
    let (status, body) =
        call(&server, &manager, Method::POST, "/admin/clients", Some(client("svc", &["reporter"], Some("reports"))))
            .await;
    assert_refused(status, &body, "a client with a role it does not hold");
    let mut first_party = client("svc", &[], None);
    first_party["first_party"] = json!(true);
    let (status, body) = call(&server, &manager, Method::POST, "/admin/clients", Some(first_party.clone())).await;
    assert_refused(status, &body, "a first-party client (Latchkey's audience by default)");
    first_party["audience"] = json!("latchkey");
    let (status, body) = call(&server, &manager, Method::POST, "/admin/clients", Some(first_party)).await;
    assert_refused(status, &body, "a first-party client with Latchkey's audience");
    let (status, body) =
        call(&server, &manager, Method::POST, "/admin/clients", Some(client("svc", &[], Some("latchkey")))).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_audience")), "a third party with ours: {body}");
    // The default, a third-party client: allowed, and its tokens do not open our API.
    let (status, body) =
        call(&server, &manager, Method::POST, "/admin/clients", Some(client("plain", &[], None))).await;
    assert_eq!(status, 201, "{body}");
    let secret = body["client_secret"].as_str().unwrap();
    let token: Value = server
        .post("/oauth2/token")
        .basic_auth("plain", Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .fetch_json()
        .await;
    let access = token["access_token"].as_str().unwrap();
    let (status, _) = call(&server, access, Method::GET, "/admin/clients", None).await;
    assert_eq!(status, 401, "a third-party client's token carries its own audience, not ours");
    let (status, body) = call(
        &server,
        &manager,
        Method::POST,
        "/admin/clients",
        Some(json!({"client_id": "0190e2a4-0000-7000-8000-000000000000", "name": "x", "confidential": true,
            "grant_types": ["client_credentials"], "audience": "reports"})),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_client_id")), "UUID-shaped id: {body}");

    let (status, body) = call(
        &server,
        &manager,
        Method::POST,
        "/admin/clients",
        Some(client("svc", &["client-manager"], Some("reports"))),
    )
    .await;
    assert_eq!(status, 201, "within its own permissions and another audience: {body}");

    // An admin service made by the full admin: the manager cannot get at its secret.
    let mut admin_service = client("root-svc", &["admin"], None);
    admin_service["first_party"] = json!(true);
    let (status, _) = call(&server, &root, Method::POST, "/admin/clients", Some(admin_service)).await;
    assert_eq!(status, 201);
    for (method, path, body) in [
        (Method::POST, "/admin/clients/root-svc/secret", None),
        (Method::PATCH, "/admin/clients/root-svc", Some(json!({"name": "mine now"}))),
        (Method::DELETE, "/admin/clients/root-svc", None),
        (Method::PATCH, "/admin/clients/svc", Some(json!({"first_party": true}))),
    ] {
        let (status, answer) = call(&server, &manager, method.clone(), path, body).await;
        assert_refused(status, &answer, &format!("{method} {path}"));
    }
    assert_eq!(refused_grants(&server).await, 8);
    server.stop().await;
}

fn login_body(username: &str, password: &str) -> Value {
    json!({"username": username, "password": password})
}

/// Sends `count` logins for `username` at once, `right_at` carrying the right password.
async fn login_burst(server: &TestServer, username: &str, count: usize, right_at: Option<usize>) -> Vec<u16> {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(count));
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let (http, url, barrier) = (server.http.clone(), server.url("/auth/login"), barrier.clone());
            let password = if Some(i) == right_at { PASSWORD } else { "wrong password" };
            let body = login_body(username, password);
            tokio::spawn(async move {
                barrier.wait().await;
                http.post(url).header("x-requested-with", "latchkey").json(&body).sent().await.status().as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses
}

async fn failures(server: &TestServer, user_id: &str) -> (i32, i32) {
    let row = latchkey_server::store::users::find_by_id(&server.state.db, user_id).await.unwrap().unwrap();
    (row.failed_logins, row.totp_failures)
}

/// Finding 2: a parallel burst of passwords gets exactly `threshold` verifications; the
/// rest are refused by the reservation before any hash is compared (the answer is the
/// same generic 401). Before the fix every request checked a snapshot read before its
/// hash, and the counter (one per verification) ran far past the threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parallel_password_burst_gets_no_more_checks_than_the_threshold() {
    let server = TestServer::start_with(|raw| {
        raw.lockout.threshold = 5;
        raw.lockout.base_secs = 30;
        raw.passwords.hashing_threads = 2;
    })
    .await;
    let victim = server.register("victim").await;
    let id = victim["id"].as_str().unwrap();
    for round in 0..3 {
        let dummies = server.state.passwords.dummy_verifications();
        let statuses = login_burst(&server, "victim", 30, None).await;
        assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
        let (counted, _) = failures(&server, id).await;
        assert_eq!(counted, 5 + round, "exactly the threshold, then one per expired lock on {}", backend());
        // The refused attempts still paid for a hash (against the dummy): no timing oracle.
        let refused = 30 - if round == 0 { 5 } else { 1 };
        assert_eq!(server.state.passwords.dummy_verifications() - dummies, refused);
        // The lock doubles after each further failure; let it pass (injected clock).
        server.clock.advance(30 << round);
    }
    // 29 wrong and the right one at once: the right one wins only if it was among the
    // reserved; either way no more than one verification ran past the lock.
    let statuses = login_burst(&server, "victim", 30, Some(15)).await;
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    let (counted, _) = failures(&server, id).await;
    assert!(admitted <= 1 && (admitted == 1 || counted == 8), "{statuses:?}, {counted} counted");
    server.stop().await;
}

/// Finding 2 for TOTP: 49 wrong codes at once on one challenge are 5 checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parallel_totp_burst_gets_no_more_checks_than_the_threshold() {
    let server = TestServer::start_with(|raw| raw.lockout.threshold = 5).await;
    let user = server.register("otp-victim").await;
    let (uri, _) = enable_totp(&server, "otp-victim").await;
    let token = mfa_token(&server, "otp-victim").await;
    // Codes that are wrong for certain: none of the steps the server accepts now.
    let totp = totp_rs::Totp::from_url(&uri).unwrap();
    let now = server.clock.now_secs() as u64;
    let valid: Vec<String> = [now - 30, now, now + 30].iter().map(|t| totp.generate(*t).to_string()).collect();
    let wrong: Vec<String> = (100_000..).map(|n: u32| n.to_string()).filter(|c| !valid.contains(c)).take(49).collect();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(49));
    let tasks: Vec<_> = (0..49)
        .map(|i| {
            let (http, url, barrier) = (server.http.clone(), server.url("/auth/login/mfa"), barrier.clone());
            let body = json!({"mfa_token": token, "code": wrong[i]});
            tokio::spawn(async move {
                barrier.wait().await;
                http.post(url).header("x-requested-with", "latchkey").json(&body).sent().await.status()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 401);
    }
    let (_, totp) = failures(&server, user["id"].as_str().unwrap()).await;
    assert_eq!(totp, 5, "TOTP attempts reserved before the check on {}", backend());
    server.stop().await;
}

/// Finding 2 and the shared username bucket across nodes: two server processes on one
/// database (a SQLite file, or PostgreSQL) hold the lockout once, not once per node, and
/// hand out the username bucket's burst once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_share_the_lockout_and_the_username_bucket() {
    let (dir, url) = crate::harness::database_for_nodes().await;
    let relaxed = [
        ("LATCHKEY_RATE_LIMITS__LOGIN__PER_MINUTE", "100000"),
        ("LATCHKEY_RATE_LIMITS__LOGIN__BURST", "100000"),
        ("LATCHKEY_RATE_LIMITS__REGISTER__PER_MINUTE", "100000"),
        ("LATCHKEY_RATE_LIMITS__REGISTER__BURST", "100000"),
        ("LATCHKEY_RATE_LIMITS__USERNAME__PER_MINUTE", "1"),
        ("LATCHKEY_RATE_LIMITS__USERNAME__BURST", "12"),
        ("LATCHKEY_LOCKOUT__THRESHOLD", "5"),
    ];
    let mut a = crate::refresh::spawn_node_with(&url, dir.path(), &relaxed);
    let base_a = crate::refresh::wait_for_listen(&mut a);
    let mut b = crate::refresh::spawn_node_with(&url, dir.path(), &relaxed);
    let base_b = crate::refresh::wait_for_listen(&mut b);
    let http = reqwest::Client::new();
    let registered = http.post(format!("{base_a}/auth/register")).json(&login_body("shared", PASSWORD)).sent().await;
    assert_eq!(registered.status(), 201);
    let id = registered.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();

    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(40));
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let base = if i % 2 == 0 { base_a.clone() } else { base_b.clone() };
            let (http, barrier) = (http.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                http.post(format!("{base}/auth/login"))
                    .header("x-requested-with", "latchkey")
                    .json(&login_body("shared", "wrong password"))
                    .sent()
                    .await
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for task in tasks {
        *statuses.entry(task.await.unwrap()).or_default() += 1;
    }
    a.kill().ok();
    b.kill().ok();
    assert_eq!(statuses.get(&429), Some(&28), "the username burst (12) once across both nodes: {statuses:?}");
    assert_eq!(statuses.get(&401), Some(&12), "{statuses:?}");
    let db = sea_orm::Database::connect(&url).await.unwrap();
    let row = latchkey_server::store::users::find_by_id(&db, &id).await.unwrap().unwrap();
    assert_eq!(row.failed_logins, 5, "five checks across two nodes on {}", backend());
}

/// Finding 3: password grants at the token endpoint spend the login bucket, not the
/// token endpoint's generous one.
#[tokio::test]
async fn password_spraying_through_the_token_endpoint_meets_the_login_limit() {
    let server = TestServer::start_with(|raw| {
        raw.rate_limits.login = Quota::new(30, 10);
        raw.rate_limits.token = Quota::new(1200, 200);
    })
    .await;
    let mut limited = 0;
    for i in 0..40 {
        let resp = server
            .post("/oauth2/token")
            .form(&[
                ("grant_type", "password"),
                ("client_id", "latchkey-admin"),
                ("username", &format!("sprayed{i}")),
                ("password", "Winter2026!"),
            ])
            .sent()
            .await;
        if resp.status() == 429 {
            assert!(resp.headers().get("retry-after").is_some());
            limited += 1;
        } else {
            assert_eq!(resp.status(), 400, "invalid_grant for an unknown user");
        }
    }
    assert_eq!(limited, 30, "the login burst is 10");
    // Other grants still use the token bucket.
    let resp = server
        .post("/oauth2/token")
        .form(&[("grant_type", "refresh_token"), ("client_id", "spa"), ("refresh_token", "lk_rt_nothing")])
        .sent()
        .await;
    assert_eq!(resp.status(), 400);
    server.stop().await;
}

async fn audit_rows(server: &TestServer) -> usize {
    latchkey_server::store::audit::list_recent(&server.state.db, 100_000).await.unwrap().len()
}

/// Finding 4: unauthenticated requests cannot write unbounded strings to the audit log.
#[tokio::test]
async fn oversized_usernames_are_refused_before_anything_is_written() {
    let server = TestServer::start().await;
    let before = audit_rows(&server).await;
    let huge = "x".repeat(60_000);
    for _ in 0..20 {
        let resp = server
            .post("/oauth2/token")
            .form(&[
                ("grant_type", "password"),
                ("client_id", "latchkey-admin"),
                ("username", &huge),
                ("password", "p"),
            ])
            .sent()
            .await;
        assert_eq!(resp.status(), 400);
    }
    // Within the schema's bound but longer than any username: refused before the audit.
    let long = "y".repeat(200);
    let resp = server.spa_post("/auth/login").json(&login_body(&long, "whatever password")).sent().await;
    assert_error(resp, 400, "invalid_username").await;
    assert_eq!(audit_rows(&server).await, before, "nothing was written");
    server.stop().await;
}

/// Finding 5: a connection that never finishes its headers is closed after the header
/// timeout, and the connection caps hold.
#[tokio::test]
async fn slow_headers_are_cut_off_and_connections_are_capped() {
    let server = TestServer::start_with(|raw| {
        raw.connections.header_read_timeout_secs = 1;
        raw.connections.max_connections_per_ip = 4;
    })
    .await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let started = std::time::Instant::now();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf)).await;
    let closed = matches!(read, Ok(Ok(0)) | Ok(Err(_)));
    assert!(closed, "a partial-header connection stays open: {read:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());

    // Four idle connections from one address fill its quota; the fifth is closed at once.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let mut fifth = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _ = fifth.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let read = tokio::time::timeout(Duration::from_secs(2), fifth.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "over the cap: {read:?}");
    drop(idle);
    // Once they are gone the address is served again.
    let mut ok = false;
    for _ in 0..50 {
        if let Ok(resp) = server.get("/healthz").send().await {
            ok = resp.status() == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok);
    server.stop().await;

    // The cap in all holds too: two idle connections fill it, a third is closed at once.
    let server = TestServer::start_with(|raw| raw.connections.max_connections = 2).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let held =
        [tokio::net::TcpStream::connect(&addr).await.unwrap(), tokio::net::TcpStream::connect(&addr).await.unwrap()];
    let mut third = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _ = third.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let read = tokio::time::timeout(Duration::from_secs(2), third.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "over the global cap: {read:?}");
    drop(held);
    server.stop().await;
}

/// Finding 6: a huge page number is a 400, and every list stays well-formed past its end.
#[tokio::test]
async fn huge_page_numbers_are_refused_not_panicked_on() {
    let server = TestServer::start().await;
    let (_, root) = user_with_roles(&server, "root", &["admin"]).await;
    for list in ["/admin/users", "/admin/sessions", "/admin/clients", "/admin/audit"] {
        let (status, body) =
            call(&server, &root, Method::GET, &format!("{list}?page=18446744073709551615"), None).await;
        assert_eq!(status, 400, "{list}: {body}");
        let (status, body) =
            call(&server, &root, Method::GET, &format!("{list}?page=1000000&page_size=200"), None).await;
        assert_eq!(status, 200, "{list}: {body}");
        assert_eq!(body["items"], json!([]));
    }
    server.stop().await;
}

/// Finding 7: an `mfa_token` issued before a password change, a TOTP reset or a disable
/// no longer completes.
#[tokio::test]
async fn mfa_challenges_end_with_the_factor_they_were_issued_under() {
    let server = TestServer::start().await;
    let (_, root) = user_with_roles(&server, "root", &["admin"]).await;
    let user = server.register("mia").await;
    let id = user["id"].as_str().unwrap().to_string();
    let (uri, _) = enable_totp(&server, "mia").await;
    let code_at = |offset: i64| {
        totp_rs::Totp::from_url(&uri).unwrap().generate((server.clock.now_secs() + offset) as u64).to_string()
    };

    // The user's own password change.
    let stale = mfa_token(&server, "mia").await;
    let fresh = mfa_token(&server, "mia").await;
    server.clock.advance(30); // the enrolment used this step's code
    let ok = finish_mfa(&server, &fresh, json!({"code": code_at(0)})).await;
    assert_eq!(ok.status(), 200);
    let access = ok.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    let changed = server
        .post("/auth/password")
        .bearer_auth(&access)
        .json(&json!({"current_password": PASSWORD, "new_password": "a brand new password"}))
        .sent()
        .await;
    assert_eq!(changed.status(), 204);
    server.clock.advance(30);
    assert_eq!(finish_mfa(&server, &stale, json!({"code": code_at(0)})).await.status(), 401, "after password change");

    // An admin's password reset, TOTP reset and disable.
    let password_path = format!("/admin/users/{id}/password");
    let reset_password = || call(&server, &root, Method::PUT, &password_path, Some(json!({"password": PASSWORD})));
    let (status, _) = reset_password().await;
    assert_eq!(status, 204);
    let stale = mfa_token(&server, "mia").await;
    let (status, _) = reset_password().await;
    assert_eq!(status, 204);
    server.clock.advance(30);
    assert_eq!(finish_mfa(&server, &stale, json!({"code": code_at(0)})).await.status(), 401, "after admin reset");

    let stale = mfa_token(&server, "mia").await;
    let (status, _) =
        call(&server, &root, Method::PATCH, &format!("/admin/users/{id}"), Some(json!({"status": "disabled"}))).await;
    assert_eq!(status, 200);
    let (status, _) =
        call(&server, &root, Method::PATCH, &format!("/admin/users/{id}"), Some(json!({"status": "active"}))).await;
    assert_eq!(status, 200);
    server.clock.advance(30);
    assert_eq!(finish_mfa(&server, &stale, json!({"code": code_at(0)})).await.status(), 401, "after disable");

    let stale = mfa_token(&server, "mia").await;
    let (status, _) = call(&server, &root, Method::DELETE, &format!("/admin/users/{id}/totp"), None).await;
    assert_eq!(status, 204);
    assert_eq!(finish_mfa(&server, &stale, json!({"code": code_at(0)})).await.status(), 401, "after TOTP reset");
    server.stop().await;
}

/// Finding 8: two recovery codes racing on one `mfa_token` spend one code, not two.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_recovery_codes_spend_only_the_winners() {
    let server = TestServer::start().await;
    let user = server.register("rhea").await;
    let id = user["id"].as_str().unwrap().to_string();
    let (_, codes) = enable_totp(&server, "rhea").await;
    let mut spent = 0;
    for pair in codes.chunks(2).take(4) {
        let token = mfa_token(&server, "rhea").await;
        let (first, second) = tokio::join!(
            finish_mfa(&server, &token, json!({"recovery_code": pair[0]})),
            finish_mfa(&server, &token, json!({"recovery_code": pair[1]})),
        );
        let mut statuses = [first.status().as_u16(), second.status().as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 401], "one completion wins");
        spent += 1;
        let left = latchkey_server::store::mfa::unused_recovery_codes(&server.state.db, &id).await.unwrap();
        assert_eq!(left, 10 - spent, "only the winner's code is spent on {}", backend());
    }
    server.stop().await;
}

/// Finding 9: behind a proxy that writes only `Forwarded`, a client's own
/// `X-Forwarded-For` does not pick its bucket.
#[tokio::test]
async fn only_the_named_forwarding_header_is_read() {
    let server = TestServer::start_with(|raw| {
        raw.rate_limits.trusted_proxies = vec!["127.0.0.1/32".into()];
        raw.rate_limits.client_ip_header = latchkey_server::config::ClientIpHeader::Forwarded;
        raw.rate_limits.register = Quota::new(1, 2);
    })
    .await;
    let register = |n: usize, spoofed: &str| {
        server
            .post("/auth/register")
            .header("forwarded", "for=198.51.100.4;proto=https")
            .header("x-forwarded-for", spoofed.to_string())
            .json(&login_body(&format!("reg{n}"), PASSWORD))
            .send()
    };
    let statuses = [
        register(0, "203.0.113.1").await.unwrap().status(),
        register(1, "203.0.113.2").await.unwrap().status(),
        register(2, "203.0.113.3").await.unwrap().status(),
    ];
    assert_eq!(statuses.map(|s| s.as_u16()), [201, 201, 429], "one bucket: the proxy's Forwarded address");
    server.stop().await;
}

/// Finding 10: the data directory is 0700 and the database files 0600.
#[cfg(unix)]
#[tokio::test]
async fn data_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    if crate::harness::postgres_admin_url().is_some() {
        return; // SQLite's files; the PostgreSQL pass has none.
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = format!("sqlite://{}?mode=rwc", data.join("latchkey.db").display());
    let raw = crate::harness::test_config(dir.path(), url);
    let server = TestServer::start_raw(raw, dir).await;
    server.register("filer").await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    for file in ["latchkey.db", "latchkey.db-wal", "latchkey.db-shm"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    server.stop().await;
}

/// Finding 11: look-alike usernames are refused beside the original.
#[tokio::test]
async fn look_alike_usernames_cannot_register() {
    let server = TestServer::start().await;
    server.register("admin").await;
    for (name, code) in [
        ("admin\u{200b}", "invalid_username"),
        ("\u{ff41}dmin", "username_taken"),
        ("\u{0430}dmin", "username_taken"),
        ("ADMIN", "username_taken"),
        ("adrnin", "username_taken"),
    ] {
        let resp = server.post("/auth/register").json(&login_body(name, PASSWORD)).sent().await;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], code, "{name:?} → {status} {body}");
    }
    server.register("administrator").await;
    server.stop().await;
}

/// Finding 12: `/auth/logout-all` is for user tokens only.
#[tokio::test]
async fn logout_all_refuses_service_tokens() {
    let server = TestServer::start().await;
    let secret = server.create_client("svc-logout", true, &["client_credentials"], &[]).await.unwrap();
    let token: Value = server
        .post("/oauth2/token")
        .basic_auth("svc-logout", Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .fetch_json()
        .await;
    let resp = server.post("/auth/logout-all").bearer_auth(token["access_token"].as_str().unwrap()).sent().await;
    assert_eq!(resp.status(), 401);
    server.stop().await;
}

/// Finding 13: `/metrics` on the main listener answers only this host, unproxied.
#[tokio::test]
async fn metrics_on_the_main_listener_are_local_only() {
    let server = TestServer::start().await;
    let direct = server.get("/metrics").sent().await;
    assert_eq!(direct.status(), 200);
    let proxied = server.get("/metrics").header("x-forwarded-for", "203.0.113.9").sent().await;
    assert_eq!(proxied.status(), 404);
    let proxied = server.get("/metrics").header("forwarded", "for=203.0.113.9").sent().await;
    assert_eq!(proxied.status(), 404);
    server.stop().await;
}

/// Finding 13: a retired key's wiped private part is gone from the database files, WAL
/// included.
#[tokio::test]
async fn a_wiped_private_key_leaves_the_sqlite_files() {
    let server = TestServer::start().await;
    let Some(db_file) = server.sqlite_file() else {
        return; // SQLite's files; the PostgreSQL pass has none.
    };
    let (_, root) = user_with_roles(&server, "root", &["admin"]).await;
    let first = latchkey_server::store::keys::list(&server.state.db).await.unwrap();
    let ciphertext = first[0].private_key_encrypted.clone();
    let (status, _) = call(&server, &root, Method::POST, "/admin/keys/rotate", None).await;
    assert_eq!(status, 201);
    // Activate the new key, retire the old one, then outlive every token it signed.
    for _ in 0..3 {
        server.clock.advance(3 * 24 * 3600);
        latchkey_server::domain::keys::maintain(&server.state).await.unwrap();
    }
    let rows = latchkey_server::store::keys::list(&server.state.db).await.unwrap();
    let old = rows.iter().find(|r| r.kid == first[0].kid).unwrap();
    assert_eq!(old.private_key_encrypted, "", "wiped");
    let needle = &ciphertext.as_bytes()[..48];
    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", db_file.display());
        let bytes = std::fs::read(&path).unwrap_or_default();
        assert!(!bytes.windows(needle.len()).any(|w| w == needle), "ciphertext still in {path}");
    }
    server.stop().await;
}

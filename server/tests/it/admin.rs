//! The admin API: the permission matrix, last-admin protections, disabling users,
//! paging, custom roles on client_credentials tokens, audit events, bad input.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use latchkey_server::security::Secret;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Fetch, PASSWORD, TestServer, backend, call, refresh_cookie, user_with_roles};

/// One admin operation, the permission it needs, and fixtures made fresh per call.
struct Op {
    permission: &'static str,
    method: Method,
    /// The path as the OpenAPI document spells it, e.g. `/admin/users/{id}`.
    template: &'static str,
    path: String,
    body: Option<Value>,
}

struct Fixtures {
    user_id: String,
    session_id: String,
    n: String,
    /// A pending signing key, if one exists (the rotate operation leaves one); revoking
    /// the active key would end the run for every later operation.
    pending_kid: String,
    /// A browser session of the user, and a consent of theirs to client{n}.
    sso_id: String,
    /// A passkey of the user.
    passkey_id: String,
}

async fn fixtures(server: &TestServer, admin: &str, n: usize) -> Fixtures {
    let (_, user) = call(
        server,
        admin,
        Method::POST,
        "/admin/users",
        Some(
            json!({"username": format!("target{n}"), "password": PASSWORD, "email": format!("target{n}@example.com")}),
        ),
    )
    .await;
    let user_id = user["user"]["id"].as_str().unwrap().to_string();
    // A verified address, which a reset link may be mailed to.
    call(server, admin, Method::PATCH, &format!("/admin/users/{user_id}"), Some(json!({"email_verified": true}))).await;
    call(
        server,
        admin,
        Method::POST,
        "/admin/roles",
        // No permissions: the grant bound (tested in `grants`) stays out of the gate's way.
        Some(json!({"name": format!("role{n}"), "permissions": []})),
    )
    .await;
    call(
        server,
        admin,
        Method::POST,
        "/admin/clients",
        Some(json!({"client_id": format!("client{n}"), "name": "c", "confidential": true, "grant_types": ["client_credentials"],
            "backchannel_logout_uri": "https://rp.example/backchannel"})),
    )
    .await;
    let (_, cookie) = server.login(&format!("target{n}")).await;
    let _ = cookie;
    let (_, sessions) = call(server, admin, Method::GET, &format!("/admin/users/{user_id}/sessions"), None).await;
    let session_id = sessions["items"][0]["id"].as_str().unwrap().to_string();
    let keys = latchkey_server::store::keys::list(&server.state.db).await.unwrap();
    let pending_kid = keys
        .into_iter()
        .find(|k| k.state.as_str() == "pending")
        .map_or_else(|| "no-pending-key".to_string(), |k| k.kid);
    let sso_id = browser_session_and_consent(server, &user_id, &format!("client{n}")).await;
    let passkey_id = stored_passkey(server, &user_id).await;
    Fixtures { user_id, session_id, n: format!("{n}"), pending_kid, sso_id, passkey_id }
}

/// Stores a live browser session of `user_id` and their consent to `client_id`, as
/// the hosted pages would: the session's id.
async fn browser_session_and_consent(server: &TestServer, user_id: &str, client_id: &str) -> String {
    use latchkey_server::store::audit::NewAuditEvent;
    use latchkey_server::store::authorization::{self, ConsentRow, SsoSessionRow};
    let now = server.clock.now_secs();
    let id = uuid::Uuid::now_v7().to_string();
    let session = SsoSessionRow {
        id: id.clone(),
        token_hash: latchkey_server::security::sha256_hex(&id),
        user_id: user_id.into(),
        created_at: now,
        last_seen_at: now,
        idle_expires_at: now + 3600,
        absolute_expires_at: now + 3600,
        auth_time: now,
        amr: "pwd".into(),
        ip: None,
        user_agent: None,
        revoked_at: None,
        revoked_reason: None,
    };
    let event = || NewAuditEvent::success(now, user_id, "fixture", user_id);
    authorization::create_sso_session(&server.state.db, session, None, event()).await.unwrap();
    let consent =
        ConsentRow { user_id: user_id.into(), client_id: client_id.into(), scope: "openid".into(), granted_at: now };
    authorization::save_consent(&server.state.db, consent, event()).await.unwrap();
    id
}

/// A passkey row of `user_id`, as a registration leaves it (the admin API lists and
/// deletes rows; it never reads the credential).
async fn stored_passkey(server: &TestServer, user_id: &str) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    let row = latchkey_server::store::passkeys::PasskeyRow {
        id: id.clone(),
        user_id: user_id.into(),
        credential_id: format!("cred-{id}"),
        name: "Phone".into(),
        credential: "{}".into(),
        sign_count: 0,
        backup_eligible: true,
        backup_state: true,
        created_at: 0,
        last_used_at: None,
    };
    let event = latchkey_server::store::audit::NewAuditEvent::success(0, user_id, "fixture", user_id);
    latchkey_server::store::passkeys::insert(&server.state.db, row, 25, event).await.unwrap();
    id
}

fn ops(f: &Fixtures) -> Vec<Op> {
    let (user_id, session_id, n, kid, sso_id) = (&f.user_id, &f.session_id, &f.n, &f.pending_kid, &f.sso_id);
    let passkey_id = &f.passkey_id;
    let op = |permission, method, template, path: String, body| Op { permission, method, template, path, body };
    vec![
        op("users:read", Method::GET, "/admin/users", "/admin/users".into(), None),
        op("users:read", Method::GET, "/admin/users/{id}", format!("/admin/users/{user_id}"), None),
        op(
            "users:write",
            Method::POST,
            "/admin/users",
            "/admin/users".into(),
            Some(json!({"username": format!("new{n}")})),
        ),
        op(
            "users:write",
            Method::PATCH,
            "/admin/users/{id}",
            format!("/admin/users/{user_id}"),
            Some(json!({"email": "t@example.com"})),
        ),
        op(
            "users:write",
            Method::PUT,
            "/admin/users/{id}/password",
            format!("/admin/users/{user_id}/password"),
            Some(json!({"password": "a new password"})),
        ),
        op(
            "users:write",
            Method::PUT,
            "/admin/users/{id}/roles",
            format!("/admin/users/{user_id}/roles"),
            Some(json!({"roles": ["user"]})),
        ),
        op("users:write", Method::POST, "/admin/users/{id}/unlock", format!("/admin/users/{user_id}/unlock"), None),
        op(
            "users:write",
            Method::POST,
            "/admin/users/{id}/verification-mail",
            format!("/admin/users/{user_id}/verification-mail"),
            None,
        ),
        op(
            "users:write",
            Method::POST,
            "/admin/users/{id}/reset-mail",
            format!("/admin/users/{user_id}/reset-mail"),
            None,
        ),
        op("users:write", Method::DELETE, "/admin/users/{id}/totp", format!("/admin/users/{user_id}/totp"), None),
        op("users:read", Method::GET, "/admin/users/{id}/passkeys", format!("/admin/users/{user_id}/passkeys"), None),
        op(
            "users:write",
            Method::DELETE,
            "/admin/users/{id}/passkeys/{passkey_id}",
            format!("/admin/users/{user_id}/passkeys/{passkey_id}"),
            None,
        ),
        op(
            "sessions:read",
            Method::GET,
            "/admin/users/{id}/sessions",
            format!("/admin/users/{user_id}/sessions"),
            None,
        ),
        op("sessions:read", Method::GET, "/admin/sessions", "/admin/sessions".into(), None),
        op(
            "sessions:read",
            Method::GET,
            "/admin/users/{id}/browser-sessions",
            format!("/admin/users/{user_id}/browser-sessions"),
            None,
        ),
        op(
            "sessions:revoke",
            Method::DELETE,
            "/admin/users/{id}/browser-sessions/{session_id}",
            format!("/admin/users/{user_id}/browser-sessions/{sso_id}"),
            None,
        ),
        op("users:read", Method::GET, "/admin/users/{id}/consents", format!("/admin/users/{user_id}/consents"), None),
        op(
            "users:write",
            Method::DELETE,
            "/admin/users/{id}/consents/{client_id}",
            format!("/admin/users/{user_id}/consents/client{n}"),
            None,
        ),
        op("sessions:revoke", Method::DELETE, "/admin/sessions/{id}", format!("/admin/sessions/{session_id}"), None),
        op(
            "sessions:revoke",
            Method::DELETE,
            "/admin/users/{id}/sessions",
            format!("/admin/users/{user_id}/sessions"),
            None,
        ),
        op("roles:read", Method::GET, "/admin/roles", "/admin/roles".into(), None),
        op("roles:read", Method::GET, "/admin/roles/{name}", format!("/admin/roles/role{n}"), None),
        op(
            "roles:write",
            Method::POST,
            "/admin/roles",
            "/admin/roles".into(),
            Some(json!({"name": format!("extra{n}")})),
        ),
        op(
            "roles:write",
            Method::PATCH,
            "/admin/roles/{name}",
            format!("/admin/roles/role{n}"),
            Some(json!({"description": "d"})),
        ),
        op("roles:write", Method::DELETE, "/admin/roles/{name}", format!("/admin/roles/role{n}"), None),
        op("clients:read", Method::GET, "/admin/clients", "/admin/clients".into(), None),
        op("clients:read", Method::GET, "/admin/clients/{client_id}", format!("/admin/clients/client{n}"), None),
        op(
            "clients:write",
            Method::POST,
            "/admin/clients",
            "/admin/clients".into(),
            Some(json!({"client_id": format!("made{n}"), "name": "m", "confidential": false,
                "grant_types": ["refresh_token"], "audience": "reports-api"})),
        ),
        op(
            "clients:write",
            Method::PATCH,
            "/admin/clients/{client_id}",
            format!("/admin/clients/client{n}"),
            Some(json!({"name": "renamed"})),
        ),
        op(
            "clients:write",
            Method::POST,
            "/admin/clients/{client_id}/secret",
            format!("/admin/clients/client{n}/secret"),
            None,
        ),
        op(
            "clients:read",
            Method::GET,
            "/admin/clients/{client_id}/backchannel-logout",
            format!("/admin/clients/client{n}/backchannel-logout"),
            None,
        ),
        op(
            "clients:write",
            Method::POST,
            "/admin/clients/{client_id}/backchannel-logout/retry",
            format!("/admin/clients/client{n}/backchannel-logout/retry"),
            None,
        ),
        op("clients:write", Method::DELETE, "/admin/clients/{client_id}", format!("/admin/clients/client{n}"), None),
        op("audit:read", Method::GET, "/admin/audit", "/admin/audit".into(), None),
        op("audit:read", Method::GET, "/admin/audit/chain", "/admin/audit/chain".into(), None),
        op("keys:read", Method::GET, "/admin/keys", "/admin/keys".into(), None),
        op("keys:rotate", Method::POST, "/admin/keys/rotate", "/admin/keys/rotate".into(), None),
        op("keys:rotate", Method::POST, "/admin/keys/{kid}/revoke", format!("/admin/keys/{kid}/revoke"), None),
        op("users:write", Method::DELETE, "/admin/users/{id}", format!("/admin/users/{user_id}"), None),
    ]
}

/// Every `/admin` operation of the OpenAPI document, as (METHOD, path template).
fn admin_operations_in_the_spec() -> std::collections::BTreeSet<(String, String)> {
    let spec: Value = serde_json::from_str(&latchkey_server::api::spec_json()).unwrap();
    let mut out = std::collections::BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        if path.starts_with("/admin") {
            for method in item.as_object().unwrap().keys() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn permission_matrix() {
    // Mail to files, so the operations that mail links can succeed.
    let outbox = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(|raw| {
        raw.mail = Some(latchkey_server::config::RawMail {
            transport: "file".into(),
            from: "Latchkey <no-reply@latchkey.test>".into(),
            dir: Some(outbox.path().to_path_buf()),
            ..Default::default()
        })
    })
    .await;
    let (_, admin) = user_with_roles(&server, "root", &["admin"]).await;
    let (_, nobody) = user_with_roles(&server, "nobody", &[]).await;

    // One role per permission, one user per role.
    let permissions = [
        "users:read",
        "users:write",
        "roles:read",
        "roles:write",
        "sessions:read",
        "sessions:revoke",
        "clients:read",
        "clients:write",
        "audit:read",
        "keys:read",
        "keys:rotate",
    ];
    let mut holders = std::collections::HashMap::new();
    for permission in permissions {
        let role = format!("only-{}", permission.replace(':', "-"));
        let (status, _) = call(
            &server,
            &admin,
            Method::POST,
            "/admin/roles",
            Some(json!({"name": role, "permissions": [permission]})),
        )
        .await;
        assert_eq!(status, 201);
        let (_, token) = user_with_roles(&server, &format!("holder-{}", permission.replace(':', "-")), &[&role]).await;
        holders.insert(permission, token);
    }

    // Without a token: 401. Without the permission: 403 insufficient_scope. With it: 2xx.
    let anonymous = server.get("/admin/users").sent().await;
    assert_eq!(anonymous.status(), 401);
    // The list covers the document: a new admin operation without a row fails here.
    let placeholder = Fixtures {
        user_id: "u".into(),
        session_id: "s".into(),
        n: "0".into(),
        pending_kid: "k".into(),
        sso_id: "b".into(),
        passkey_id: "p".into(),
    };
    let covered: std::collections::BTreeSet<(String, String)> =
        ops(&placeholder).iter().map(|op| (op.method.to_string(), op.template.to_string())).collect();
    assert_eq!(covered, admin_operations_in_the_spec(), "every admin operation is in the matrix, and only those");
    let count = ops(&placeholder).len();
    for i in 0..count {
        let fixtures = fixtures(&server, &admin, i).await;
        let op = ops(&fixtures).remove(i);
        let (status, body) = call(&server, &nobody, op.method.clone(), &op.path, op.body.clone()).await;
        assert_eq!(status, 403, "{} {} without {} on {}", op.method, op.path, op.permission, backend());
        assert_eq!(body["error"], "insufficient_scope");
        // A holder of a *different* permission is refused too.
        let other = permissions.iter().find(|p| **p != op.permission).unwrap();
        let (status, _) = call(&server, &holders[other], op.method.clone(), &op.path, op.body.clone()).await;
        assert_eq!(status, 403, "{} {} with only {other}", op.method, op.path);
        let (status, body) = call(&server, &holders[op.permission], op.method.clone(), &op.path, op.body.clone()).await;
        assert!((200..300).contains(&status), "{} {} with {} gave {status}: {body}", op.method, op.path, op.permission);
    }
    server.stop().await;
}

#[tokio::test]
async fn last_admin_is_protected() {
    let server = TestServer::start().await;
    let (root_id, root) = user_with_roles(&server, "root", &["admin"]).await;
    for (method, path, body) in [
        (Method::PATCH, format!("/admin/users/{root_id}"), Some(json!({"status": "disabled"}))),
        (Method::DELETE, format!("/admin/users/{root_id}"), None),
        (Method::PUT, format!("/admin/users/{root_id}/roles"), Some(json!({"roles": ["user"]}))),
    ] {
        let (status, err) = call(&server, &root, method.clone(), &path, body).await;
        assert_eq!(status, 409, "{method} {path} on {}", backend());
        assert_eq!(err["error"], "last_admin");
    }
    let (status, _) = call(&server, &root, Method::DELETE, "/admin/roles/admin", None).await;
    assert_eq!(status, 409, "built-in roles cannot be deleted");
    let (status, _) = call(&server, &root, Method::PATCH, "/admin/roles/admin", Some(json!({"permissions": []}))).await;
    assert_eq!(status, 409, "admin keeps every permission");

    // With a second admin, the first may step down.
    let (second_id, second) = user_with_roles(&server, "second", &["admin"]).await;
    let (status, _) =
        call(&server, &second, Method::PUT, &format!("/admin/users/{root_id}/roles"), Some(json!({"roles": ["user"]})))
            .await;
    assert_eq!(status, 200);
    let (status, err) = call(
        &server,
        &second,
        Method::PATCH,
        &format!("/admin/users/{second_id}"),
        Some(json!({"status": "disabled"})),
    )
    .await;
    assert_eq!((status, err["error"].as_str()), (409, Some("last_admin")));
    server.stop().await;
}

#[tokio::test]
async fn disabling_a_user_ends_sessions_and_blocks_login_and_refresh() {
    let server = TestServer::start().await;
    let (_, admin) = user_with_roles(&server, "root", &["admin"]).await;
    let (victim_id, victim_access) = user_with_roles(&server, "victim", &[]).await;
    let (_, cookie) = server.login("victim").await;
    let (status, user) =
        call(&server, &admin, Method::PATCH, &format!("/admin/users/{victim_id}"), Some(json!({"status": "disabled"})))
            .await;
    assert_eq!(status, 200);
    assert_eq!(user["status"], "disabled");
    assert_eq!(server.me(&victim_access).await.status(), 401);
    assert_eq!(server.refresh(&cookie).await.status(), 401);
    let login = server.spa_post("/auth/login").json(&json!({"username": "victim", "password": PASSWORD})).sent().await;
    assert_eq!(login.status(), 401);
    let (_, sessions) = call(&server, &admin, Method::GET, &format!("/admin/users/{victim_id}/sessions"), None).await;
    assert_eq!(sessions["total"], 0);

    // Re-enabled, the user logs in again; an admin password reset ends sessions too.
    call(&server, &admin, Method::PATCH, &format!("/admin/users/{victim_id}"), Some(json!({"status": "active"}))).await;
    let (_, cookie) = server.login("victim").await;
    let (status, _) = call(
        &server,
        &admin,
        Method::PUT,
        &format!("/admin/users/{victim_id}/password"),
        Some(json!({"password": "brand new password"})),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(server.refresh(&cookie).await.status(), 401);
    assert_eq!(server.login_status("victim", PASSWORD).await, 401, "the old password is refused");
    assert_eq!(server.login_status("victim", "brand new password").await, 200, "the new one works");
    server.stop().await;
}

/// Revoking a session (or all of a user's) ends its refresh token and its access tokens
/// at once on our own API.
#[tokio::test]
async fn admin_session_revocation_stops_refresh_and_access_tokens() {
    let server = TestServer::start().await;
    let (_, admin) = user_with_roles(&server, "root", &["admin"]).await;
    let (victim_id, _) = user_with_roles(&server, "victim", &[]).await;
    let (first_access, first_cookie) = server.login("victim").await;
    let (second_access, second_cookie) = server.login("victim").await;
    let (third_access, third_cookie) = server.login("victim").await;
    let (_, sessions) = call(&server, &admin, Method::GET, &format!("/admin/users/{victim_id}/sessions"), None).await;
    // The first session is the one made by `user_with_roles`; find the ones made here.
    let ids: Vec<String> =
        sessions["items"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().into()).collect();
    assert_eq!(ids.len(), 4);
    let sid_of = |token: &str| {
        let payload = token.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap(),
        )
        .unwrap();
        claims["sid"].as_str().unwrap().to_string()
    };
    let first_sid = sid_of(&first_access);
    assert!(ids.contains(&first_sid));
    let (status, _) = call(&server, &admin, Method::DELETE, &format!("/admin/sessions/{first_sid}"), None).await;
    assert_eq!(status, 204);
    assert_eq!(server.me(&first_access).await.status(), 401, "its access token stops at once");
    assert_eq!(server.refresh(&first_cookie).await.status(), 401, "its refresh token is dead");
    assert_eq!(server.me(&second_access).await.status(), 200, "other sessions go on");

    let (status, body) =
        call(&server, &admin, Method::DELETE, &format!("/admin/users/{victim_id}/sessions"), None).await;
    assert_eq!((status, body["revoked"].as_u64()), (200, Some(3)));
    for (access, cookie) in [(&second_access, &second_cookie), (&third_access, &third_cookie)] {
        assert_eq!(server.me(access).await.status(), 401);
        assert_eq!(server.refresh(cookie).await.status(), 401);
    }
    server.stop().await;
}

#[tokio::test]
async fn paging_over_a_thousand_users_is_stable_and_complete() {
    let server = TestServer::start().await;
    let (_, admin) = user_with_roles(&server, "root", &["admin"]).await;
    let hash = server.state.passwords.hash(&Secret::new(PASSWORD.into())).await.unwrap();
    for i in 0..1000 {
        let new = latchkey_server::store::users::NewUser {
            id: uuid::Uuid::now_v7().to_string(),
            username: format!("bulk{i:04}"),
            username_normalized: format!("bulk{i:04}"),
            skeleton: latchkey_server::domain::users::username_skeleton(&format!("bulk{i:04}")),
            email: None,
            password_hash: hash.clone(),
            self_registered: false,
            now: 0,
        };
        let event = latchkey_server::store::audit::NewAuditEvent {
            occurred_at: 0,
            actor: "test".into(),
            action: "user.create",
            target: None,
            ip: None,
            outcome: "success",
            details: json!({}),
        };
        latchkey_server::store::users::create(&server.state.db, new, &["user".into()], None, event).await.unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut page = 1;
    loop {
        let (status, body) =
            call(&server, &admin, Method::GET, &format!("/admin/users?q=bulk&page={page}&page_size=37"), None).await;
        assert_eq!(status, 200);
        assert_eq!(body["total"], 1000);
        let items = body["items"].as_array().unwrap();
        if items.is_empty() {
            break;
        }
        for item in items {
            assert!(seen.insert(item["id"].as_str().unwrap().to_string()), "duplicate while paging");
        }
        page += 1;
    }
    assert_eq!(seen.len(), 1000, "every user exactly once on {}", backend());
    assert_eq!(page, 1000 / 37 + 2);

    // Filters.
    let (_, admins) = call(&server, &admin, Method::GET, "/admin/users?role=admin", None).await;
    assert_eq!(admins["total"], 1);
    let (_, none) = call(&server, &admin, Method::GET, "/admin/users?q=bulk_%25", None).await;
    assert_eq!(none["total"], 0, "LIKE wildcards in the search text are literal");
    server.stop().await;
}

#[tokio::test]
async fn custom_role_on_client_credentials_verifies_via_jwks() {
    let server = TestServer::start().await;
    let (_, admin) = user_with_roles(&server, "root", &["admin"]).await;
    let (status, role) = call(
        &server,
        &admin,
        Method::POST,
        "/admin/roles",
        Some(json!({"name": "billing-reader", "description": "Reads invoices", "permissions": ["billing:read"]})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(role["permissions"], json!(["billing:read"]));
    let (status, created) = call(
        &server,
        &admin,
        Method::POST,
        "/admin/clients",
        Some(json!({"client_id": "invoicer", "name": "Invoicer", "confidential": true, "grant_types": ["client_credentials"], "scopes": ["billing"], "roles": ["billing-reader"], "first_party": true})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["client_secret"].as_str().unwrap().to_string();
    assert_eq!(created["client"]["roles"], json!(["billing-reader"]));

    let token: Value = server
        .post("/oauth2/token")
        .basic_auth("invoicer", Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .fetch_json()
        .await;
    let access = token["access_token"].as_str().unwrap();
    let jwks: JwkSet = reqwest::get(server.url("/.well-known/jwks.json")).await.unwrap().json().await.unwrap();
    let kid = jsonwebtoken::decode_header(access).unwrap().kid.unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[&server.base]);
    validation.set_audience(&["latchkey"]);
    let claims =
        jsonwebtoken::decode::<Value>(access, &DecodingKey::from_jwk(jwks.find(&kid).unwrap()).unwrap(), &validation)
            .unwrap()
            .claims;
    assert_eq!(claims["sub"], "invoicer");
    assert_eq!(claims["roles"], json!(["billing-reader"]));

    // Rotating the secret kills the old one.
    let (status, rotated) = call(&server, &admin, Method::POST, "/admin/clients/invoicer/secret", None).await;
    assert_eq!(status, 200);
    let old = server
        .post("/oauth2/token")
        .basic_auth("invoicer", Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .sent()
        .await;
    assert_eq!(old.status(), 401);
    let new_secret = rotated["client_secret"].as_str().unwrap();
    let new = server
        .post("/oauth2/token")
        .basic_auth("invoicer", Some(new_secret))
        .form(&[("grant_type", "client_credentials")])
        .sent()
        .await;
    assert_eq!(new.status(), 200);

    // A user's new role appears in the token at the next refresh.
    let (uid, _) = user_with_roles(&server, "reader", &[]).await;
    let (_, cookie) = server.login("reader").await;
    call(
        &server,
        &admin,
        Method::PUT,
        &format!("/admin/users/{uid}/roles"),
        Some(json!({"roles": ["user", "billing-reader"]})),
    )
    .await;
    let refreshed = server.refresh(&cookie).await;
    assert!(refresh_cookie(refreshed.headers()).is_some());
    let body: Value = refreshed.json().await.unwrap();
    let claims =
        jsonwebtoken::dangerous::insecure_decode::<Value>(body["access_token"].as_str().unwrap()).unwrap().claims;
    assert_eq!(claims["roles"], json!(["billing-reader", "user"]));
    server.stop().await;
}

#[tokio::test]
async fn mutations_are_audited_and_bad_input_is_rejected() {
    let server = TestServer::start().await;
    let (root_id, admin) = user_with_roles(&server, "root", &["admin"]).await;
    let (status, created) = call(
        &server,
        &admin,
        Method::POST,
        "/admin/users",
        Some(json!({"username": "olive", "email": "olive@example.com", "roles": ["admin"]})),
    )
    .await;
    assert_eq!(status, 201);
    let otp = created["one_time_password"].as_str().expect("generated password shown once");
    let olive = created["user"]["id"].as_str().unwrap().to_string();
    let login = server.spa_post("/auth/login").json(&json!({"username": "olive", "password": otp})).sent().await;
    assert_eq!(login.status(), 200, "the one-time password works");
    call(&server, &admin, Method::PATCH, &format!("/admin/users/{olive}"), Some(json!({"email": null}))).await;
    call(&server, &admin, Method::POST, "/admin/roles", Some(json!({"name": "auditors"}))).await;
    call(&server, &admin, Method::DELETE, &format!("/admin/users/{olive}"), None).await;

    let (status, events) =
        call(&server, &admin, Method::GET, &format!("/admin/audit?actor={root_id}&page_size=200"), None).await;
    assert_eq!(status, 200);
    let events = events["items"].as_array().unwrap();
    for (action, target) in
        [("user.create", olive.as_str()), ("user.update", &olive), ("role.create", "auditors"), ("user.delete", &olive)]
    {
        assert!(
            events.iter().any(|e| e["action"] == action && e["target"] == target && e["actor"] == root_id.as_str()),
            "no audit event {action} on {target}: {events:?}"
        );
    }
    assert!(events.windows(2).all(|w| w[0]["id"].as_i64() > w[1]["id"].as_i64()), "newest first");
    assert!(!serde_json::to_string(events).unwrap().contains(otp), "no secrets in the audit log");
    // Readers get names beside the ids of users; a deleted user's id keeps no name,
    // and targets that are not users (a role) have none.
    let role_created = events.iter().find(|e| e["action"] == "role.create").unwrap();
    assert_eq!(role_created["actor_name"], "root", "{role_created}");
    assert!(role_created.get("target_name").is_none(), "{role_created}");
    let created = events.iter().find(|e| e["action"] == "user.create").unwrap();
    assert!(created.get("target_name").is_none(), "olive was deleted since: {created}");

    let cases: Vec<(Method, String, Option<Value>, u16, &str)> = vec![
        (
            Method::POST,
            "/admin/users".into(),
            Some(json!({"username": "x1", "roles": ["wizard"]})),
            400,
            "unknown_role",
        ),
        (Method::POST, "/admin/users".into(), Some(json!({"username": "ROOT"})), 409, "username_taken"),
        (Method::GET, "/admin/users?page_size=500".into(), None, 400, "invalid_request"),
        (Method::GET, "/admin/users?page=0".into(), None, 400, "invalid_request"),
        (Method::GET, "/admin/users?status=sleeping".into(), None, 400, "invalid_status"),
        (Method::GET, "/admin/users/not-an-id".into(), None, 400, "invalid_id"),
        (Method::GET, format!("/admin/users/{}", uuid::Uuid::now_v7()), None, 404, "not_found"),
        (
            Method::PUT,
            format!("/admin/users/{root_id}/roles"),
            Some(json!({"roles": ["admin", "wizard"]})),
            400,
            "unknown_role",
        ),
        (Method::POST, "/admin/roles".into(), Some(json!({"name": "Bad Name"})), 400, "invalid_role_name"),
        (Method::POST, "/admin/roles".into(), Some(json!({"name": "auditors"})), 409, "role_exists"),
        (
            Method::POST,
            "/admin/roles".into(),
            Some(json!({"name": "p", "permissions": ["nocolon"]})),
            400,
            "invalid_permission",
        ),
        (Method::DELETE, "/admin/clients/spa".into(), None, 409, "builtin_client"),
        (
            Method::POST,
            "/admin/clients".into(),
            Some(json!({"client_id": "spa", "name": "dup", "confidential": false, "grant_types": []})),
            409,
            "client_exists",
        ),
        (
            Method::POST,
            "/admin/clients".into(),
            Some(
                json!({"client_id": "pub", "name": "p", "confidential": false, "grant_types": ["client_credentials"]}),
            ),
            400,
            "invalid_grant_type",
        ),
        (Method::POST, "/admin/clients/spa/secret".into(), None, 409, "public_client"),
        (Method::DELETE, format!("/admin/sessions/{}", uuid::Uuid::now_v7()), None, 404, "not_found"),
        (Method::PATCH, format!("/admin/users/{root_id}"), Some(json!({"status": ["x"]})), 400, "invalid_request"),
    ];
    for (method, path, body, status, code) in cases {
        let (got, err) = call(&server, &admin, method.clone(), &path, body).await;
        assert_eq!(got, status, "{method} {path}: {err}");
        assert_eq!(err["error"], code, "{method} {path}: {err}");
    }
    server.stop().await;
}

//! The browser flow: cookie attributes, CSRF and CORS, logout variants.

use serde_json::Value;

use crate::harness::{Fetch, SPA_ORIGIN, TestServer, assert_error, backend, refresh_cookie, set_cookie_header};

#[tokio::test]
async fn refresh_cookie_attributes_are_exact_and_never_in_a_body() {
    let server = TestServer::start().await;
    server.register("dana").await;
    let resp = server
        .spa_post("/auth/login")
        .json(&serde_json::json!({"username": "dana", "password": crate::harness::PASSWORD}))
        .sent()
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let set_cookie = set_cookie_header(resp.headers());
    let token = refresh_cookie(resp.headers()).unwrap();
    assert!(token.starts_with("lk_rt_") && token.len() == 6 + 43, "{token}");
    assert_eq!(
        set_cookie,
        format!("lk_refresh={token}; Path=/auth; Max-Age=1209600; HttpOnly; Secure; SameSite=Strict")
    );
    let body = resp.text().await.unwrap();
    assert!(!body.contains(&token) && !body.contains("refresh"), "refresh token leaked into the body: {body}");

    let refreshed = server.refresh(&token).await;
    assert_eq!(refreshed.status(), 200);
    let rotated = refresh_cookie(refreshed.headers()).unwrap();
    assert_ne!(rotated, token);
    let body = refreshed.text().await.unwrap();
    assert!(!body.contains(&rotated));
    server.stop().await;
}

#[tokio::test]
async fn csrf_defence_on_cookie_endpoints() {
    let server = TestServer::start().await;
    let (_, cookie) = server.signed_in("erin").await;

    let without_header = server.post("/auth/refresh").header("cookie", format!("lk_refresh={cookie}")).sent().await;
    assert_error(without_header, 403, "csrf_check_failed").await;

    let foreign_origin = server
        .spa_post("/auth/refresh")
        .header("origin", "https://evil.example")
        .header("cookie", format!("lk_refresh={cookie}"))
        .sent()
        .await;
    assert_eq!(foreign_origin.status(), 403);

    for path in ["/auth/login", "/auth/logout"] {
        let resp = server.post(path).header("content-type", "application/json").body("{}").sent().await;
        assert_eq!(resp.status(), 403, "{path} without the CSRF header");
    }

    // The allowed SPA origin with the header works, and the token was not burnt above.
    let allowed = server
        .spa_post("/auth/refresh")
        .header("origin", SPA_ORIGIN)
        .header("cookie", format!("lk_refresh={cookie}"))
        .sent()
        .await;
    assert_eq!(allowed.status(), 200, "{}", backend());
    assert_eq!(allowed.headers()["access-control-allow-origin"], SPA_ORIGIN);
    assert_eq!(allowed.headers()["access-control-allow-credentials"], "true");
    server.stop().await;
}

#[tokio::test]
async fn cors_preflight_allows_only_the_allow_list() {
    let server = TestServer::start().await;
    let preflight = |origin: &'static str| {
        server
            .http
            .request(reqwest::Method::OPTIONS, server.url("/auth/refresh"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "x-requested-with, content-type")
            .send()
    };
    let ok = preflight(SPA_ORIGIN).await.unwrap();
    assert!(ok.status().is_success(), "{}", ok.status());
    assert_eq!(ok.headers()["access-control-allow-origin"], SPA_ORIGIN);
    assert_eq!(ok.headers()["access-control-allow-credentials"], "true");
    let allowed_headers = ok.headers()["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    assert!(allowed_headers.contains("x-requested-with"), "{allowed_headers}");

    let denied = preflight("https://evil.example").await.unwrap();
    assert!(!denied.status().is_success());
    assert!(denied.headers().get("access-control-allow-origin").is_none());
    server.stop().await;
}

#[tokio::test]
async fn logout_logout_all_and_session_delete_end_refresh() {
    let server = TestServer::start().await;
    let (access_a, cookie_a) = server.signed_in("frank").await;
    let (_access_b, cookie_b) = server.login("frank").await;
    let (_access_c, cookie_c) = server.login("frank").await;

    // Own sessions, current one marked.
    let sessions: Value = server.get("/auth/sessions").bearer_auth(&access_a).fetch_json().await;
    let sessions = sessions.as_array().unwrap().clone();
    assert_eq!(sessions.len(), 3);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);

    // Logout (cookie) ends session A and clears the cookie; A's access token dies too.
    let logout = server.cookie_post("/auth/logout", &cookie_a).sent().await;
    assert_eq!(logout.status(), 204);
    assert!(set_cookie_header(logout.headers()).starts_with("lk_refresh=; Path=/auth; Max-Age=0"));
    assert_eq!(server.refresh(&cookie_a).await.status(), 401);
    assert_eq!(server.me(&access_a).await.status(), 401);

    // Delete session B by id with C's access token.
    let refreshed_c = server.refresh(&cookie_c).await;
    let cookie_c = refresh_cookie(refreshed_c.headers()).unwrap();
    let access_c: Value = refreshed_c.json().await.unwrap();
    let access_c = access_c["access_token"].as_str().unwrap().to_string();
    let live: Value = server.get("/auth/sessions").bearer_auth(&access_c).fetch_json().await;
    let b_id = live
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == false)
        .map(|s| s["id"].as_str().unwrap().to_string())
        .unwrap();
    let del = server.delete(&format!("/auth/sessions/{b_id}")).bearer_auth(&access_c).sent().await;
    assert_eq!(del.status(), 204);
    assert_eq!(server.refresh(&cookie_b).await.status(), 401);
    let again = server.delete(&format!("/auth/sessions/{b_id}")).bearer_auth(&access_c).sent().await;
    assert_eq!(again.status(), 404);

    // Logout-all ends C as well.
    let all = server.post("/auth/logout-all").bearer_auth(&access_c).sent().await;
    assert_eq!(all.status(), 204);
    assert_eq!(server.refresh(&cookie_c).await.status(), 401);
    assert_eq!(server.me(&access_c).await.status(), 401);

    let actions: Vec<String> = server.audit_actions().await.into_iter().map(|(a, _)| a).collect();
    assert!(actions.contains(&"session.revoke".to_string()));
    assert!(actions.contains(&"session.revoke_all".to_string()));
    server.stop().await;
}

#[tokio::test]
async fn registration_can_be_disabled() {
    let server = TestServer::start_with(|raw| raw.registration_enabled = false).await;
    let resp = server.try_register("gina", "long enough pw").await;
    assert_error(resp, 403, "registration_disabled").await;
    server.stop().await;
}

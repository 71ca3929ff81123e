//! Rate limits, lockout, the hashing queue, TOTP and recovery codes.

use std::collections::HashMap;

use latchkey_server::config::Quota;
use serde_json::{Value, json};

use crate::harness::{Fetch, PASSWORD, TestServer, assert_error, backend, refresh_cookie};

async fn login_from(server: &TestServer, ip: Option<&str>, username: &str, password: &str) -> reqwest::Response {
    let mut req = server.spa_post("/auth/login").json(&json!({"username": username, "password": password}));
    if let Some(ip) = ip {
        req = req.header("x-forwarded-for", ip);
    }
    req.sent().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_is_rate_limited_and_locked_out_then_recovers() {
    let server = TestServer::start_with(|raw| {
        raw.rate_limits.trusted_proxies = vec!["127.0.0.1/32".into()];
        raw.rate_limits.login = Quota::new(1, 10);
        raw.lockout.threshold = 5;
        raw.lockout.base_secs = 30;
        raw.lockout.max_secs = 600;
    })
    .await;
    let victim = server.register("victim").await;

    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for _ in 0..200 {
        let resp = login_from(&server, Some("203.0.113.7"), "victim", "not the password").await;
        let status = resp.status().as_u16();
        if status == 429 {
            assert!(resp.headers().get("retry-after").is_some());
            assert_eq!(resp.json::<Value>().await.unwrap()["error"], "rate_limited");
        }
        *statuses.entry(status).or_default() += 1;
    }
    assert_eq!(statuses.get(&401), Some(&10), "the burst reaches the handler: {statuses:?}");
    assert_eq!(statuses.get(&429), Some(&190), "the rest is refused: {statuses:?}");

    // Another IP is not rate limited, but the account is locked: the right password
    // gets the same generic 401 as a wrong one.
    let locked = login_from(&server, Some("198.51.100.9"), "victim", PASSWORD).await;
    assert_eq!(locked.status(), 401, "{}", backend());
    let wrong = login_from(&server, Some("198.51.100.9"), "victim", "still wrong!").await;
    assert_eq!(locked.text().await.unwrap(), wrong.text().await.unwrap(), "no account-state oracle");

    let user = latchkey_server::domain::users::get(&server.state, victim["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(user.failed_logins, 5, "attempts during the lock are not counted");
    let until = user.locked_until.expect("the account is locked");
    assert_eq!(until - server.clock.now_secs(), 30, "the fifth failure locks for the base 30 s");

    // Each failure after a lock has passed doubles it: 60 s, then 120 s (injected clock).
    let id = victim["id"].as_str().unwrap();
    for (step, expected) in [(30, 60), (60, 120), (120, 240)] {
        server.clock.advance(step - 1);
        let still_locked = login_from(&server, Some("198.51.100.9"), "victim", PASSWORD).await;
        assert_eq!(still_locked.status(), 401, "one second before the lock ends");
        server.clock.advance(1);
        let wrong = login_from(&server, Some("198.51.100.9"), "victim", "wrong again").await;
        assert_eq!(wrong.status(), 401);
        let user = latchkey_server::domain::users::get(&server.state, id).await.unwrap();
        assert_eq!(user.locked_until.unwrap() - server.clock.now_secs(), expected, "{}", backend());
    }

    // Once the backoff has passed (moved clock, no sleeping), the victim gets in.
    server.clock.advance(240);
    let ok = login_from(&server, Some("198.51.100.9"), "victim", PASSWORD).await;
    assert_eq!(ok.status(), 200);
    let user = latchkey_server::domain::users::get(&server.state, victim["id"].as_str().unwrap()).await.unwrap();
    assert_eq!((user.failed_logins, user.locked_until), (0, None), "success resets the counter");
    let actions: Vec<String> = server.audit_actions().await.into_iter().map(|(a, _)| a).collect();
    assert!(actions.contains(&"lockout".to_string()));
    server.stop().await;
}

#[tokio::test]
async fn forwarded_headers_count_only_from_trusted_proxies() {
    // No trusted proxy: X-Forwarded-For is ignored, every request shares the peer's bucket.
    let server = TestServer::start_with(|raw| raw.rate_limits.register = Quota::new(1, 3)).await;
    let register = |ip: &'static str, n: usize| {
        server
            .post("/auth/register")
            .header("x-forwarded-for", ip)
            .json(&json!({"username": format!("spoof{n}"), "password": PASSWORD}))
            .send()
    };
    let ips = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"];
    let mut codes = Vec::new();
    for (n, ip) in ips.iter().enumerate() {
        codes.push(register(ip, n).await.unwrap().status().as_u16());
    }
    assert_eq!(codes, vec![201, 201, 201, 429], "spoofed headers do not buy new buckets");
    server.stop().await;

    // Behind a trusted proxy: the right-most untrusted hop is the client.
    let server = TestServer::start_with(|raw| {
        raw.rate_limits.register = Quota::new(1, 1);
        raw.rate_limits.trusted_proxies = vec!["127.0.0.0/8".into(), "10.0.0.0/8".into()];
    })
    .await;
    let send = |headers: Vec<(&'static str, &'static str)>, n: usize| {
        let mut req =
            server.post("/auth/register").json(&json!({"username": format!("proxied{n}"), "password": PASSWORD}));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    let a = send(vec![("x-forwarded-for", "198.51.100.1")], 0).await.unwrap().status();
    let b = send(vec![("x-forwarded-for", "198.51.100.2, 10.1.2.3")], 1).await.unwrap().status();
    let c = send(vec![("forwarded", r#"for="[2001:db8::7]:4711";proto=https"#)], 2).await.unwrap().status();
    assert_eq!((a.as_u16(), b.as_u16(), c.as_u16()), (201, 201, 201), "three clients, three buckets");
    // A client prepending a fake hop does not escape its bucket: the real hop is right-most.
    let d = send(vec![("x-forwarded-for", "6.6.6.6, 198.51.100.1")], 3).await.unwrap().status();
    assert_eq!(d, 429);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_failures_are_all_counted() {
    let server = TestServer::start_with(|raw| raw.lockout.threshold = 1000).await;
    let user = server.register("counted").await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let http = server.http.clone();
            let url = server.url("/auth/login");
            tokio::spawn(async move {
                http.post(url)
                    .header("x-requested-with", "latchkey")
                    .json(&json!({"username": "counted", "password": "wrong password"}))
                    .sent()
                    .await
                    .status()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 401);
    }
    let view = latchkey_server::domain::users::get(&server.state, user["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(view.failed_logins, 20, "atomic increments on {}", backend());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_hashing_queue_answers_503_with_retry_after() {
    let server = TestServer::start_with(|raw| {
        raw.passwords.hashing_threads = 1;
        raw.passwords.max_queued = 1;
        raw.passwords.argon2_memory_kib = 262_144;
        raw.passwords.argon2_iterations = 3;
    })
    .await;
    let login = |n: usize| {
        let (http, url) = (server.http.clone(), server.url("/auth/login"));
        async move {
            let resp = http
                .post(url)
                .header("x-requested-with", "latchkey")
                .json(&json!({"username": format!("nobody{n}"), "password": "whatever pw"}))
                .sent()
                .await;
            (resp.status().as_u16(), resp.headers().get("retry-after").is_some())
        }
    };
    // A first login occupies the one hashing thread (about a second at these settings)...
    let first = tokio::spawn(login(0));
    crate::harness::eventually("the first hash to start", std::time::Duration::from_secs(10), || async {
        server.state.passwords.running() == 1
    })
    .await;
    // ...then fifteen at once: one waits in the queue of one, fourteen are refused.
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(15));
    let tasks: Vec<_> = (1..16)
        .map(|n| {
            let (barrier, login) = (barrier.clone(), login(n));
            tokio::spawn(async move {
                barrier.wait().await;
                login.await
            })
        })
        .collect();
    assert_eq!(first.await.unwrap(), (401, false));
    let mut busy = 0;
    for task in tasks {
        let (status, retry_after) = task.await.unwrap();
        assert!(status == 401 || status == 503, "{status}");
        if status == 503 {
            assert!(retry_after);
            busy += 1;
        }
    }
    assert_eq!(busy, 14, "with one thread busy and a queue of one");
    server.stop().await;
}

/// Computes a code like an authenticator app would, from the otpauth URI.
fn code(uri: &str, unix_time: i64) -> String {
    totp_rs::Totp::from_url(uri).unwrap().generate(unix_time as u64).to_string()
}

#[tokio::test]
async fn totp_enrolment_login_replay_skew_and_recovery_codes() {
    let server = TestServer::start().await;
    let user = server.register("tess").await;
    let (access, _) = server.login("tess").await;
    let post = |path: &'static str, token: Option<String>, body: Value| {
        let mut req = server.spa_post(path).json(&body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };

    // Enrol: password re-checked, then confirm with a code computed from the URI.
    let bad = post("/auth/totp/setup", Some(access.clone()), json!({"password": "wrong password"})).await.unwrap();
    assert_eq!(bad.status(), 401);
    let setup: Value = post("/auth/totp/setup", Some(access.clone()), json!({"password": PASSWORD}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let uri = setup["otpauth_uri"].as_str().unwrap().to_string();
    assert!(uri.starts_with("otpauth://totp/Latchkey:tess?"), "{uri}");
    assert!(setup["qr_svg"].as_str().unwrap().starts_with("<svg"));
    assert!(uri.contains(setup["secret"].as_str().unwrap()));
    let now = server.clock.now_secs();
    let wrong = post("/auth/totp/confirm", Some(access.clone()), json!({"code": "000000"})).await.unwrap();
    assert_eq!(wrong.status(), 400);
    let confirmed = post("/auth/totp/confirm", Some(access.clone()), json!({"code": code(&uri, now)})).await.unwrap();
    assert_eq!(confirmed.status(), 200);
    let recovery: Vec<String> = confirmed.json::<Value>().await.unwrap()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(recovery.len(), 10);

    // Login now needs the code.
    let begin = |_: ()| async {
        let resp = post("/auth/login", None, json!({"username": "tess", "password": PASSWORD})).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(refresh_cookie(resp.headers()).is_none(), "no session before the second factor");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["mfa_required"], true);
        assert!(body.get("access_token").is_none());
        body["mfa_token"].as_str().unwrap().to_string()
    };
    let finish = |mfa_token: String, body: Value| {
        let mut body = body;
        body["mfa_token"] = json!(mfa_token);
        post("/auth/login/mfa", None, body)
    };

    // The confirmation step was used at enrolment: a step is accepted once only.
    server.clock.advance(30);
    let now = server.clock.now_secs();
    let token = begin(()).await;
    let ok = finish(token, json!({"code": code(&uri, now)})).await.unwrap();
    assert_eq!(ok.status(), 200, "{}", backend());
    assert!(refresh_cookie(ok.headers()).is_some());
    let access2 = ok.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(&access2).unwrap().claims;
    assert_eq!(claims["amr"], json!(["pwd", "otp"]));

    let token = begin(()).await;
    let replay = finish(token.clone(), json!({"code": code(&uri, now)})).await.unwrap();
    assert_eq!(replay.status(), 401, "the same code twice is refused");
    assert_eq!(replay.json::<Value>().await.unwrap()["error"], "invalid_code");

    // ±1 step is accepted, ±2 is not (each at a fresh, later step, so none is a replay).
    for (delta_steps, accepted) in [(2, false), (-2, false), (-1, true), (1, true)] {
        server.clock.advance(120);
        let now = server.clock.now_secs();
        let token = begin(()).await;
        let resp = finish(token, json!({"code": code(&uri, now + 30 * delta_steps)})).await.unwrap();
        assert_eq!(resp.status() == 200, accepted, "step delta {delta_steps}: {}", resp.status());
    }

    // A recovery code works once.
    let token = begin(()).await;
    let used = finish(token, json!({"recovery_code": recovery[0].to_uppercase()})).await.unwrap();
    assert_eq!(used.status(), 200);
    let token = begin(()).await;
    let again = finish(token, json!({"recovery_code": recovery[0]})).await.unwrap();
    assert_eq!(again.status(), 401);

    // A used mfa_token cannot be used again.
    let token = begin(()).await;
    server.clock.advance(60);
    let now = server.clock.now_secs();
    assert_eq!(finish(token.clone(), json!({"code": code(&uri, now)})).await.unwrap().status(), 200);
    server.clock.advance(60);
    let now = server.clock.now_secs();
    assert_eq!(finish(token, json!({"code": code(&uri, now)})).await.unwrap().status(), 401);

    // The password grant asks for the code, then takes it in `totp`.
    let grant = |totp: Option<String>| {
        let mut form = vec![
            ("grant_type", "password".to_string()),
            ("client_id", "latchkey-admin".to_string()),
            ("username", "tess".to_string()),
            ("password", PASSWORD.to_string()),
        ];
        if let Some(code) = totp {
            form.push(("totp", code));
        }
        server.post("/oauth2/token").form(&form).send()
    };
    let needs = grant(None).await.unwrap();
    assert_error(needs, 400, "mfa_required").await;
    server.clock.advance(60);
    let now = server.clock.now_secs();
    let granted = grant(Some(code(&uri, now))).await.unwrap();
    assert_eq!(granted.status(), 200);

    // An admin resets it (audited); then the password alone logs in again.
    let admin_account = latchkey_server::domain::users::NewAccount {
        username: "root".into(),
        password: latchkey_server::security::Secret::new(PASSWORD.into()),
        email: None,
        roles: vec!["admin".into()],
    };
    latchkey_server::domain::users::create(
        &server.state,
        admin_account,
        &latchkey_server::domain::rbac::Grantor::operator("test"),
        None,
    )
    .await
    .unwrap();
    let (admin, _) = server.login("root").await;
    let user_id = user["id"].as_str().unwrap();
    let reset = server.delete(&format!("/admin/users/{user_id}/totp")).bearer_auth(&admin).sent().await;
    assert_eq!(reset.status(), 204);
    let (_, _) = server.login("tess").await;
    let actions = server.audit_actions().await;
    assert!(actions.iter().any(|(a, t)| a == "totp.reset" && t.as_deref() == Some(user_id)));
    assert!(actions.iter().any(|(a, _)| a == "totp.enable"));
    server.stop().await;
}

#[tokio::test]
async fn password_change_ends_other_sessions() {
    let server = TestServer::start().await;
    let (access, cookie) = server.signed_in("pat").await;
    let (_, other) = server.login("pat").await;
    let change = |current: &str| {
        server
            .post("/auth/password")
            .bearer_auth(&access)
            .json(&json!({"current_password": current, "new_password": "a brand new password"}))
            .send()
    };
    assert_eq!(change("wrong password").await.unwrap().status(), 401);
    assert_eq!(change(PASSWORD).await.unwrap().status(), 204);
    assert_eq!(server.refresh(&other).await.status(), 401, "other sessions end");
    assert_eq!(server.refresh(&cookie).await.status(), 200, "this one stays");
    assert_eq!(server.login_status("pat", PASSWORD).await, 401, "the old password is refused");
    assert_eq!(server.login_status("pat", "a brand new password").await, 200, "the new one works");
    server.stop().await;
}

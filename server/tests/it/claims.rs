//! What the README promises and no other test exercised: one test per claim, each able
//! to fail. The README sentence each proves is quoted in its doc comment.

use std::time::Duration;

use latchkey_server::config::Quota;
use latchkey_server::security::sha256_hex;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{
    Fetch, PASSWORD, TestServer, backend, call, enable_totp, eventually, finish_mfa, mfa_token, refresh_cookie,
    user_with_roles,
};

/// "The last active admin cannot be deleted, disabled or lose `admin`; that check and the
/// change are one transaction, serialised against any other such change." Two admins
/// demoting each other at the same moment: one wins, one gets `last_admin`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_last_admin_check_is_serialised() {
    for round in 0..4 {
        let server = TestServer::start().await;
        let (a_id, a) = user_with_roles(&server, "a", &["admin"]).await;
        let (b_id, b) = user_with_roles(&server, "b", &["admin"]).await;
        let demote = |token: String, target: String| {
            let http = server.http.clone();
            let url = server.url(&format!("/admin/users/{target}/roles"));
            async move { http.put(url).bearer_auth(token).json(&json!({"roles": []})).sent().await }
        };
        let (one, two) = tokio::join!(demote(a, b_id), demote(b, a_id));
        let mut statuses = [one.status().as_u16(), two.status().as_u16()];
        statuses.sort_unstable();
        // One demotion commits; the other either sees the last admin (409) or, if it
        // resolved its caller after the first committed, finds its caller no admin (403).
        assert!(statuses == [200, 409] || statuses == [200, 403], "round {round}: {statuses:?} on {}", backend());
        assert!(latchkey_server::store::users::any_active_with_role(&server.state.db, "admin").await.unwrap());
        server.stop().await;
    }
}

/// "Permissions are read from the database on every admin request, so granting or
/// removing a role applies to the admin API at once."
#[tokio::test]
async fn a_demoted_admins_live_token_is_refused_at_once() {
    let server = TestServer::start().await;
    let (_, root) = user_with_roles(&server, "root", &["admin"]).await;
    let (deputy_id, deputy) = user_with_roles(&server, "deputy", &["admin"]).await;
    assert_eq!(call(&server, &deputy, Method::GET, "/admin/users", None).await.0, 200);
    let path = format!("/admin/users/{deputy_id}/roles");
    assert_eq!(call(&server, &root, Method::PUT, &path, Some(json!({"roles": ["user"]}))).await.0, 200);
    let (status, body) = call(&server, &deputy, Method::GET, "/admin/users", None).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("insufficient_scope")), "the same token, at once");
    server.stop().await;
}

/// "`rate_limits.username`, per normalised username, on password and TOTP attempts from
/// any IP" — and its buckets are dropped once full again.
#[tokio::test]
async fn the_username_bucket_limits_refills_and_is_purged() {
    let server = TestServer::start_with(|raw| raw.rate_limits.username = Quota::new(60, 3)).await;
    server.register("bucketed").await;
    let statuses: Vec<u16> = {
        let mut out = Vec::new();
        for _ in 0..4 {
            out.push(server.login_status("  BUCKETED ", "wrong password").await);
        }
        out
    };
    assert_eq!(statuses, [401, 401, 401, 429], "three at once, per normalised name");
    server.clock.advance(1);
    assert_eq!(server.login_status("bucketed", "wrong password").await, 401, "a token a second");
    assert_eq!(server.login_status("bucketed", "wrong password").await, 429);
    server.clock.advance(3600);
    let purged = latchkey_server::domain::maintenance::purge(&server.state).await.unwrap().unwrap();
    assert_eq!(purged.attempt_buckets, 1, "the full bucket holds nothing worth keeping");
    server.stop().await;
}

/// "Password and TOTP failures count separately." and "`POST /admin/users/{id}/unlock`"
/// clears both.
#[tokio::test]
async fn password_and_totp_failures_count_separately_and_unlock_clears_both() {
    let server = TestServer::start_with(|raw| raw.lockout.threshold = 3).await;
    let (_, root) = user_with_roles(&server, "root", &["admin"]).await;
    let user = server.register("two-factor").await;
    let id = user["id"].as_str().unwrap().to_string();
    enable_totp(&server, "two-factor").await;
    assert_eq!(server.login_status("two-factor", "wrong password").await, 401);
    assert_eq!(server.login_status("two-factor", "wrong password").await, 401);
    let token = mfa_token(&server, "two-factor").await;
    for _ in 0..3 {
        assert_eq!(finish_mfa(&server, &token, json!({"code": "000000"})).await.status(), 401);
    }
    let row = latchkey_server::store::users::find_by_id(&server.state.db, &id).await.unwrap().unwrap();
    assert_eq!((row.failed_logins, row.totp_failures), (0, 3), "the right password cleared its own counter only");
    assert!(row.totp_locked_until.is_some() && row.locked_until.is_none());
    let (status, view) = call(&server, &root, Method::POST, &format!("/admin/users/{id}/unlock"), None).await;
    assert_eq!((status, view["failed_logins"].as_i64()), (200, Some(0)));
    let row = latchkey_server::store::users::find_by_id(&server.state.db, &id).await.unwrap().unwrap();
    assert_eq!((row.totp_failures, row.totp_locked_until), (0, None));
    server.stop().await;
}

/// "Refresh tokens, recovery codes and client secrets are stored only as SHA-256; TOTP
/// secrets are encrypted at rest": the database holds none of them in plain text.
#[tokio::test]
async fn secrets_are_stored_hashed_or_encrypted() {
    use sea_orm::{ConnectionTrait, Statement};
    let server = TestServer::start().await;
    let (_, cookie) = server.signed_in("vault").await;
    let (uri, codes) = enable_totp(&server, "vault").await;
    let totp_secret = url::Url::parse(&uri).unwrap().query_pairs().find(|(k, _)| k == "secret").unwrap().1.to_string();
    let client_secret = server.create_client("vault-svc", true, &["client_credentials"], &[]).await.unwrap();

    let mut dump = String::new();
    for table in ["refresh_tokens", "recovery_codes", "clients", "users", "sessions", "mfa_challenges"] {
        let backend = server.state.db.get_database_backend();
        let rows = server
            .state
            .db
            .query_all_raw(Statement::from_string(backend, format!("SELECT * FROM {table}")))
            .await
            .unwrap();
        for row in rows {
            for column in row.column_names() {
                let value: Option<String> = row.try_get("", &column).ok().flatten();
                if let Some(value) = value {
                    dump.push_str(&value);
                    dump.push('\n');
                }
            }
        }
    }
    for (what, secret) in
        [("refresh token", cookie.as_str()), ("TOTP secret", totp_secret.as_str()), ("client secret", &client_secret)]
    {
        assert!(!dump.contains(secret), "the {what} is in the database on {}", backend());
    }
    for code in &codes {
        assert!(!dump.contains(code.as_str()), "a recovery code is in the database");
    }
    assert!(dump.contains(&sha256_hex(&cookie)), "the refresh token's SHA-256 is what is kept");
    assert!(dump.contains(&sha256_hex(&client_secret)));
    server.stop().await;
}

/// "`DELETE /auth/totp` turns it off", "`POST /auth/totp/recovery-codes` … the old ones
/// stop working", and the `mfa_token` lives `expires_in` seconds.
#[tokio::test]
async fn totp_disable_recovery_regeneration_and_mfa_token_expiry() {
    let server = TestServer::start().await;
    server.register("otto").await;
    let (uri, old_codes) = enable_totp(&server, "otto").await;
    let totp = totp_rs::Totp::from_url(&uri).unwrap();

    // The mfa_token expires (injected clock).
    let token = mfa_token(&server, "otto").await;
    server.clock.advance(301);
    let code = totp.generate(server.clock.now_secs() as u64).to_string();
    assert_eq!(finish_mfa(&server, &token, json!({"code": code})).await.status(), 401, "expired after 300 s");

    let token = mfa_token(&server, "otto").await;
    let done = finish_mfa(&server, &token, json!({"code": code})).await;
    assert_eq!(done.status(), 200);
    let access = done.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    let regenerated =
        server.post("/auth/totp/recovery-codes").bearer_auth(&access).json(&json!({"password": PASSWORD})).sent().await;
    assert_eq!(regenerated.status(), 200);
    let new_codes: Vec<String> = regenerated.json::<Value>().await.unwrap()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let token = mfa_token(&server, "otto").await;
    assert_eq!(finish_mfa(&server, &token, json!({"recovery_code": old_codes[0]})).await.status(), 401);
    assert_eq!(finish_mfa(&server, &token, json!({"recovery_code": new_codes[0]})).await.status(), 200);

    let disabled = server
        .delete("/auth/totp")
        .bearer_auth(&access)
        .json(&json!({"password": PASSWORD, "recovery_code": new_codes[1]}))
        .sent()
        .await;
    assert_eq!(disabled.status(), 204);
    let (fresh, _) = server.login("otto").await;
    assert!(!fresh.is_empty(), "a password login needs no second factor any more");
    server.stop().await;
}

/// A user cannot revoke another user's session (`DELETE /auth/sessions/{id}`).
#[tokio::test]
async fn a_user_cannot_revoke_another_users_session() {
    let server = TestServer::start().await;
    server.register("alice").await;
    server.register("mallory").await;
    let (alice, alice_cookie) = server.login("alice").await;
    let (mallory, _) = server.login("mallory").await;
    let sessions: Value = server.get("/auth/sessions").bearer_auth(&alice).fetch_json().await;
    let alice_session = sessions[0]["id"].as_str().unwrap();
    let attempt = server.delete(&format!("/auth/sessions/{alice_session}")).bearer_auth(&mallory).sent().await;
    assert_eq!(attempt.status(), 404, "as if it did not exist");
    assert_eq!(server.refresh(&alice_cookie).await.status(), 200, "alice's session lives");
    server.stop().await;
}

/// "The single answer for any refresh token that cannot be used: revoked, expired,
/// unknown" — byte-identical bodies, on both refresh paths.
#[tokio::test]
async fn dead_refresh_tokens_get_byte_identical_answers() {
    let server = TestServer::start_with(|raw| raw.tokens.refresh_grace_secs = 0).await;
    let (_, revoked) = server.signed_in("rita").await;
    let logout = server.cookie_post("/auth/logout", &revoked).sent().await;
    assert_eq!(logout.status(), 204);
    let (_, expired) = server.login("rita").await;
    server.clock.advance(15 * 24 * 3600); // past the 14-day idle timeout
    let unknown = "lk_rt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string();

    let mut cookie_answers = Vec::new();
    let mut token_answers = Vec::new();
    for token in [&revoked, &expired, &unknown] {
        let resp = server.refresh(token).await;
        cookie_answers.push((resp.status().as_u16(), resp.text().await.unwrap()));
        let resp = server
            .post("/oauth2/token")
            .form(&[("grant_type", "refresh_token"), ("client_id", "spa"), ("refresh_token", token)])
            .sent()
            .await;
        token_answers.push((resp.status().as_u16(), resp.text().await.unwrap()));
    }
    assert!(cookie_answers.windows(2).all(|w| w[0] == w[1]), "{cookie_answers:?}");
    assert!(token_answers.windows(2).all(|w| w[0] == w[1]), "{token_answers:?}");
    assert_eq!(cookie_answers[0].0, 401);
    assert_eq!(token_answers[0].0, 400);
    server.stop().await;
}

/// "Argon2id on a bounded pool … so a login flood cannot starve other requests": `me`
/// stays fast while every hashing slot is busy (a generous bound: this is a test, not a
/// benchmark).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_does_not_starve_other_requests() {
    let server = TestServer::start_with(|raw| {
        raw.passwords.argon2_memory_kib = 65_536;
        raw.passwords.argon2_iterations = 3;
        raw.passwords.hashing_threads = 2;
    })
    .await;
    let (access, _) = server.signed_in("steady").await;
    let flood_until = std::time::Instant::now() + Duration::from_secs(3);
    let flooders: Vec<_> = (0..8)
        .map(|i| {
            let (http, url) = (server.http.clone(), server.url("/auth/login"));
            tokio::spawn(async move {
                let mut logins = 0u32;
                while std::time::Instant::now() < flood_until {
                    let body = json!({"username": format!("flood{i}"), "password": "wrong password"});
                    let resp = http.post(&url).header("x-requested-with", "latchkey").json(&body).send().await;
                    logins += u32::from(resp.is_ok());
                }
                logins
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await; // let the flood fill the pool
    let mut latencies = Vec::new();
    for _ in 0..40 {
        let started = std::time::Instant::now();
        assert_eq!(server.me(&access).await.status(), 200);
        latencies.push(started.elapsed());
    }
    let mut logins = 0;
    for flooder in flooders {
        logins += flooder.await.unwrap();
    }
    latencies.sort();
    let p95 = latencies[latencies.len() * 95 / 100];
    assert!(logins >= 8, "the flood ran ({logins} logins)");
    assert!(p95 < Duration::from_millis(500), "me p95 {p95:?} while hashing is saturated");
    server.stop().await;
}

/// "When the database is down … the JWKS, discovery and `/healthz` keep working" is in
/// the restart test; here: the refresh race of DESIGN ("exactly one wins across any
/// number of nodes") on whichever engine the suite runs, two processes on one database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_race_one_refresh_token() {
    let (dir, url) = crate::harness::database_for_nodes().await;
    let mut a = crate::refresh::spawn_node_with(&url, dir.path(), &[]);
    let base_a = crate::refresh::wait_for_listen(&mut a);
    let mut b = crate::refresh::spawn_node_with(&url, dir.path(), &[]);
    let base_b = crate::refresh::wait_for_listen(&mut b);
    let http = reqwest::Client::new();
    let reg = http
        .post(format!("{base_a}/auth/register"))
        .json(&json!({"username": "racer", "password": PASSWORD}))
        .sent()
        .await;
    assert_eq!(reg.status(), 201);
    let login = http
        .post(format!("{base_b}/auth/login"))
        .header("x-requested-with", "latchkey")
        .json(&json!({"username": "racer", "password": PASSWORD}))
        .sent()
        .await;
    let cookie = refresh_cookie(login.headers()).unwrap();
    let (counts, children) = crate::refresh::race(&[base_a, base_b], &cookie, 50).await;
    a.kill().ok();
    b.kill().ok();
    crate::refresh::assert_one_rotation(&counts, &children, 50, &format!("two processes on {}", backend()));
}

/// The resident memory of a process, from `/proc` (MiB).
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// "SQLite runs with `synchronous = NORMAL` (a commit survives the process crashing)" and
/// PostgreSQL flushes every commit: a node killed with SIGKILL under a refresh load keeps
/// every rotation it acknowledged. And "a refresh whose answer was lost does not end the
/// session": after the restart, every client's last *received* token — whose rotation
/// the server may have committed for a request it never answered — gets 200 and the
/// child the server committed, and the session goes on rotating.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_keeps_every_acknowledged_rotation_and_strands_no_client() {
    let (dir, url) = crate::harness::database_for_nodes().await;
    // The restart must land inside the grace window on a real clock: a wide one.
    let open = [
        ("LATCHKEY_RATE_LIMITS__REGISTER", "{per_minute=1000,burst=1000}"),
        ("LATCHKEY_TOKENS__REFRESH_GRACE_SECS", "60"),
    ];
    let mut node = crate::refresh::spawn_node_with(&url, dir.path(), &open);
    let base = crate::refresh::wait_for_listen(&mut node);
    let http = reqwest::Client::new();
    let mut cookies = Vec::new();
    for i in 0..8 {
        let body = json!({"username": format!("durable{i}"), "password": PASSWORD});
        assert_eq!(http.post(format!("{base}/auth/register")).json(&body).sent().await.status(), 201);
        let login =
            http.post(format!("{base}/auth/login")).header("x-requested-with", "latchkey").json(&body).sent().await;
        cookies.push(refresh_cookie(login.headers()).unwrap());
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = cookies
        .into_iter()
        .map(|mut cookie| {
            let (http, base, stop) = (http.clone(), base.clone(), stop.clone());
            tokio::spawn(async move {
                let mut acknowledged = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let sent = http
                        .post(format!("{base}/auth/refresh"))
                        .header("x-requested-with", "latchkey")
                        .header("cookie", format!("lk_refresh={cookie}"))
                        .send()
                        .await;
                    match sent {
                        Ok(resp) if resp.status() == 200 => {
                            cookie = refresh_cookie(resp.headers()).unwrap();
                            acknowledged += 1;
                        }
                        _ => break, // the node is gone
                    }
                }
                (cookie, acknowledged)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await; // a load in full swing
    node.kill().unwrap(); // SIGKILL: no shutdown, no flush
    node.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    let mut last_received = Vec::new();
    let db = sea_orm::Database::connect(&url).await.unwrap();
    for client in clients {
        let (last, acknowledged) = client.await.unwrap();
        total += acknowledged;
        last_received.push(last.clone());
        use latchkey_server::store::entities::refresh_tokens;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let found = refresh_tokens::Entity::find()
            .filter(refresh_tokens::Column::TokenHash.eq(sha256_hex(&last)))
            .one(&db)
            .await
            .unwrap();
        assert!(found.is_some(), "an acknowledged rotation was lost on {}", backend());
    }
    assert!(total >= 8, "the load ran ({total} rotations acknowledged)");
    // The restarted node serves the same tokens, and strands nobody.
    let mut again = crate::refresh::spawn_node_with(&url, dir.path(), &open);
    let base = crate::refresh::wait_for_listen(&mut again);
    assert_eq!(http.get(format!("{base}/readyz")).sent().await.status(), 200);
    let mut answered_again = 0;
    for last in last_received {
        use latchkey_server::store::entities::{TokenState, refresh_tokens};
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let row = refresh_tokens::Entity::find()
            .filter(refresh_tokens::Column::TokenHash.eq(sha256_hex(&last)))
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        let committed_child = match row.state {
            TokenState::Rotated => Some(
                refresh_tokens::Entity::find()
                    .filter(refresh_tokens::Column::ParentId.eq(row.id.as_str()))
                    .one(&db)
                    .await
                    .unwrap()
                    .expect("a rotated token has its child")
                    .token_hash,
            ),
            _ => None,
        };
        let resp = crate::harness::refresh_at(&http, &base, &last).await;
        assert_eq!(resp.status(), 200, "a client holding its last received token is not stranded on {}", backend());
        let child = refresh_cookie(resp.headers()).unwrap();
        if let Some(committed) = committed_child {
            assert_eq!(sha256_hex(&child), committed, "the lost answer's child, not a new one");
            answered_again += 1;
        }
        assert_eq!(
            crate::harness::refresh_at(&http, &base, &child).await.status(),
            200,
            "and the session goes on rotating"
        );
    }
    eprintln!("{answered_again} of 8 clients had lost an answer; each got its child again on {}", backend());
    again.kill().ok();
}

/// "SIGTERM stops accepting and drains in-flight requests": a login whose hash is still
/// running when the signal arrives gets its answer, and the process exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    let (dir, url) = crate::harness::database_for_nodes().await;
    // About a second per hash, so the login is surely in flight when the signal lands.
    let slow = [("LATCHKEY_PASSWORDS__ARGON2_MEMORY_KIB", "262144"), ("LATCHKEY_PASSWORDS__ARGON2_ITERATIONS", "3")];
    let mut node = crate::refresh::spawn_node_with(&url, dir.path(), &slow);
    let base = crate::refresh::wait_for_listen(&mut node);
    let http = reqwest::Client::new();
    let body = json!({"username": "drained", "password": PASSWORD});
    assert_eq!(http.post(format!("{base}/auth/register")).json(&body).sent().await.status(), 201);
    let in_flight = {
        let (http, base, body) = (http.clone(), base.clone(), body.clone());
        tokio::spawn(async move {
            http.post(format!("{base}/auth/login"))
                .header("x-requested-with", "latchkey")
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    // The login is in flight once its hash is running (the node's own gauge says so).
    eventually("the login's hash to start", Duration::from_secs(20), || async {
        let metrics = http.get(format!("{base}/metrics")).sent().await.text().await.unwrap();
        metrics.lines().any(|l| l == "latchkey_argon2_running 1")
    })
    .await;
    signal(node.id(), "TERM");
    let status = in_flight.await.unwrap();
    assert_eq!(status.ok(), Some(200), "the in-flight login is answered");
    let exit = tokio::task::spawn_blocking(move || node.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "a clean exit after draining: {exit:?}");
    assert!(http.get(format!("{base}/healthz")).send().await.is_err(), "no longer accepting");
}

/// "Argon2's working memory … gives it back after two idle seconds" (RSS from `/proc`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argon2_memory_is_returned_when_idle() {
    let (dir, url) = crate::harness::database_for_nodes().await;
    let big = [
        ("LATCHKEY_PASSWORDS__ARGON2_MEMORY_KIB", "65536"),
        ("LATCHKEY_PASSWORDS__ARGON2_ITERATIONS", "1"),
        ("LATCHKEY_PASSWORDS__HASHING_THREADS", "2"),
    ];
    let mut node = crate::refresh::spawn_node_with(&url, dir.path(), &big);
    let base = crate::refresh::wait_for_listen(&mut node);
    let pid = node.id();
    let http = reqwest::Client::new();
    eventually("the start-up hash's memory is returned", Duration::from_secs(8), || async { rss_mib(pid) < 60.0 })
        .await;
    let idle = rss_mib(pid);
    let logins: Vec<_> = (0..6)
        .map(|i| {
            let (http, base) = (http.clone(), base.clone());
            tokio::spawn(async move {
                let body = json!({"username": format!("mem{i}"), "password": "wrong password"});
                http.post(format!("{base}/auth/login")).header("x-requested-with", "latchkey").json(&body).send().await
            })
        })
        .collect();
    for login in logins {
        assert!(login.await.unwrap().is_ok());
    }
    let busy = rss_mib(pid);
    assert!(busy > idle + 100.0, "two 64 MiB blocks in use: {idle:.1} → {busy:.1} MiB");
    eventually("Argon2 memory returned after two idle seconds", Duration::from_secs(8), || async {
        rss_mib(pid) < idle + 20.0
    })
    .await;
    node.kill().ok();
}

/// "Secrets never reach logs": a scenario at `trace` handling a password, refresh and
/// access tokens, a TOTP secret, recovery codes and a client secret; none is in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_even_at_trace() {
    let (dir, url) = crate::harness::database_for_nodes().await;
    let mut node = crate::refresh::spawn_node_with(&url, dir.path(), &[("RUST_LOG", "trace")]);
    let (base, log) = crate::refresh::wait_for_listen_keeping_log(&mut node);
    let http = reqwest::Client::new();
    let password = "a very distinctive password";
    let body = json!({"username": "logged", "password": password});
    assert_eq!(http.post(format!("{base}/auth/register")).json(&body).sent().await.status(), 201);
    let login = http.post(format!("{base}/auth/login")).header("x-requested-with", "latchkey").json(&body).sent().await;
    let cookie = refresh_cookie(login.headers()).unwrap();
    let access = login.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    let refreshed = http
        .post(format!("{base}/auth/refresh"))
        .header("x-requested-with", "latchkey")
        .header("cookie", format!("lk_refresh={cookie}"))
        .sent()
        .await;
    let rotated = refresh_cookie(refreshed.headers()).unwrap();
    let setup: Value = http
        .post(format!("{base}/auth/totp/setup"))
        .bearer_auth(&access)
        .json(&json!({"password": password}))
        .fetch_json()
        .await;
    let secret = setup["secret"].as_str().unwrap().to_string();
    let code = totp_rs::Totp::from_url(setup["otpauth_uri"].as_str().unwrap()).unwrap().generate_current().to_string();
    let confirmed: Value = http
        .post(format!("{base}/auth/totp/confirm"))
        .bearer_auth(&access)
        .json(&json!({"code": code}))
        .fetch_json()
        .await;
    let codes: Vec<String> =
        confirmed["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    let db = sea_orm::Database::connect(&url).await.unwrap();
    let user = latchkey_server::store::users::find_by_username(&db, "logged").await.unwrap().unwrap();
    sea_orm::ConnectionTrait::execute_unprepared(
        &db,
        &format!("INSERT INTO user_roles (user_id, role_name) VALUES ('{}', 'admin')", user.id),
    )
    .await
    .unwrap();
    let created: Value = http
        .post(format!("{base}/admin/clients"))
        .bearer_auth(&access)
        .json(&json!({"client_id": "logged-svc", "name": "s", "confidential": true,
            "grant_types": ["client_credentials"], "audience": "elsewhere"}))
        .fetch_json()
        .await;
    let client_secret = created["client_secret"].as_str().expect("a client secret").to_string();
    let mfa = http
        .post(format!("{base}/auth/login"))
        .header("x-requested-with", "latchkey")
        .json(&body)
        .sent()
        .await
        .json::<Value>()
        .await
        .unwrap();
    let mfa_token = mfa["mfa_token"].as_str().unwrap().to_string();
    // A graceful stop writes every line and ends with poem's last one.
    signal(node.id(), "TERM");
    tokio::task::spawn_blocking(move || node.wait()).await.unwrap().unwrap();
    eventually("the node's last log line", Duration::from_secs(10), || async { log.text().contains("server stopped") })
        .await;
    let text = log.text();
    // Nothing in the stack logs below debug; the request lines are there at least.
    assert!(text.contains("\"level\":\"DEBUG\""), "the log ran at its most verbose");
    let mut secrets = vec![
        ("password", password.to_string()),
        ("refresh token", cookie),
        ("rotated refresh token", rotated),
        ("access token", access),
        ("TOTP secret", secret),
        ("client secret", client_secret),
        ("mfa token", mfa_token),
    ];
    secrets.extend(codes.into_iter().map(|c| ("recovery code", c)));
    for (what, secret) in secrets {
        assert!(!text.contains(&secret), "the {what} is in the trace log");
    }
}

/// "The server refuses to start with pending migrations" (`run_migrations = false`), and
/// "a log line when no admin exists".
#[tokio::test]
async fn pending_migrations_refuse_start_and_a_missing_admin_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("fresh.db").display());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env("LATCHKEY_LISTEN", "127.0.0.1:0")
        .env("LATCHKEY_DATABASE_URL", &url)
        .env("LATCHKEY_MASTER_KEY_FILE", dir.path().join("master.key"))
        .env("LATCHKEY_RUN_MIGRATIONS", "false")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("migration(s)") && stderr.contains("latchkey migrate"), "{stderr}");

    let mut node = crate::refresh::spawn_node_with(&url, dir.path(), &[]);
    let (_, log) = crate::refresh::wait_for_listen_keeping_log(&mut node);
    node.kill().ok();
    assert!(log.text().contains("no admin account exists yet"), "{}", log.text());
}

/// Writes a PKCS#1 RSA key of `bits` with the system's openssl (a test tool only).
fn pkcs1_pem(dir: &std::path::Path, bits: u32) -> String {
    let path = dir.join(format!("rsa{bits}.pem"));
    let status = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&path)
        .arg(bits.to_string())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl for the key-import test");
    assert!(status.success());
    std::fs::read_to_string(path).unwrap()
}

/// "`latchkey keys import FILE.pem` … PKCS#8 or PKCS#1" and "at least 2048 bits".
#[tokio::test]
async fn keys_import_takes_pkcs1_and_refuses_short_keys() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pem = pkcs1_pem(dir.path(), 2048);
    assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "PKCS#1");
    let state = &server.state;
    let now = server.clock.now_secs();
    let row = latchkey_server::domain::keys::import_pem(&state.db, &state.master_key, &pem, now).await.unwrap();
    assert_eq!((row.state.as_str(), row.bits), ("pending", 2048));
    let short = pkcs1_pem(dir.path(), 1024);
    let err = latchkey_server::domain::keys::import_pem(&state.db, &state.master_key, &short, now).await.unwrap_err();
    assert!(err.to_string().contains("2048"), "{err}");
    server.stop().await;
}

/// `sqlite_synchronous = "full"` reaches every connection that commits, the inline writer
/// of the hot paths as well as the pool; the default stays `normal`.
#[tokio::test]
async fn sqlite_synchronous_full_applies_to_every_writer() {
    use sea_orm::{ConnectionTrait, Statement};
    if crate::harness::postgres_admin_url().is_some() {
        return; // a SQLite setting; PostgreSQL flushes every commit anyway
    }
    for (mode, expected) in [
        (latchkey_server::config::SqliteSynchronousMode::Normal, 1),
        (latchkey_server::config::SqliteSynchronousMode::Full, 2),
    ] {
        let server = TestServer::start_with(|raw| raw.sqlite_synchronous = mode).await;
        let db = &server.state.db;
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), "PRAGMA synchronous"))
            .await
            .unwrap()
            .unwrap();
        let pool: i64 = row.try_get_by_index(0).unwrap();
        let latchkey_server::store::Engine::Sqlite(inline) = &server.state.tokens else {
            panic!("a SQLite file runs the SQLite engine")
        };
        assert_eq!((pool, inline.writer_synchronous().unwrap()), (expected, expected), "{mode:?}");
        server.register("durable").await;
        server.stop().await;
    }
}

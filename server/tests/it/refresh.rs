//! Refresh-token rotation under concurrency, reuse detection, grace window, expiry.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::harness::{Fetch, TestServer, assert_error, backend, refresh_cookie};

/// Fires `n` refreshes of one cookie at once; returns status → count and the distinct
/// cookies the 200s carried (one rotation means one child, however many got it).
pub async fn race(bases: &[String], cookie: &str, n: usize) -> (HashMap<u16, usize>, Vec<String>) {
    let http = reqwest::Client::new();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let http = http.clone();
            let base = bases[i % bases.len()].clone();
            let cookie = cookie.to_string();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let resp = crate::harness::refresh_at(&http, &base, &cookie).await;
                (resp.status().as_u16(), refresh_cookie(resp.headers()))
            })
        })
        .collect();
    let mut counts = HashMap::new();
    let mut children = Vec::new();
    for task in tasks {
        let (status, cookie) = task.await.unwrap();
        *counts.entry(status).or_insert(0) += 1;
        if let (200, Some(cookie)) = (status, cookie)
            && !children.contains(&cookie)
        {
            children.push(cookie);
        }
    }
    (counts, children)
}

/// Checks the outcome of [`race`]: exactly one rotation — every 200 carries the same
/// child — and every other answer is the grace window's 409.
pub fn assert_one_rotation(counts: &HashMap<u16, usize>, children: &[String], n: usize, on: &str) -> String {
    assert_eq!(children.len(), 1, "exactly one child on {on}: {counts:?}");
    let (ok, raced) = (counts.get(&200).copied().unwrap_or(0), counts.get(&409).copied().unwrap_or(0));
    assert!(ok >= 1 && ok + raced == n, "200 (the child) or 409 only on {on}: {counts:?}");
    children[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_refreshes_have_exactly_one_winner() {
    let server = TestServer::start().await;
    let (_, cookie) = server.signed_in("henry").await;

    let (counts, children) = race(std::slice::from_ref(&server.base), &cookie, 50).await;
    let winner = assert_one_rotation(&counts, &children, 50, backend());

    // Nobody revoked anything: the winner's token still works, and so does the session.
    let next = server.refresh(&winner).await;
    assert_eq!(next.status(), 200);
    let actions = server.audit_actions().await;
    assert!(!actions.iter().any(|(a, _)| a == "refresh_token.reuse"));
    server.stop().await;
}

#[tokio::test]
async fn reuse_after_the_grace_window_revokes_the_whole_session() {
    let server = TestServer::start().await;
    let (_, first) = server.signed_in("irene").await;
    let rotated = server.refresh(&first).await;
    assert_eq!(rotated.status(), 200);
    let second = refresh_cookie(rotated.headers()).unwrap();
    let body: Value = rotated.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(server.me(&access).await.status(), 200);

    // Inside the window, its child unused: the answer was lost, so the same child again.
    let again = server.refresh(&first).await;
    assert_eq!(again.status(), 200);
    assert_eq!(refresh_cookie(again.headers()).as_deref(), Some(second.as_str()), "the same child, not a new one");
    // Its child used: a race, the distinct answer, nothing revoked.
    let third = server.refresh(&second).await;
    assert_eq!(third.status(), 200);
    let third = refresh_cookie(third.headers()).unwrap();
    let raced = server.refresh(&first).await;
    assert_eq!(raced.status(), 409);
    let raced: Value = raced.json().await.unwrap();
    assert_eq!(raced["error"], "invalid_grant");
    assert!(raced["error_description"].as_str().unwrap().contains("already rotated"));

    // Past the window: reuse. The session and every token in it die.
    server.clock.advance(11);
    let reused = server.refresh(&first).await;
    assert_error(reused, 401, "invalid_grant").await;
    assert_eq!(server.refresh(&third).await.status(), 401, "the live token died with the session");
    assert_eq!(server.me(&access).await.status(), 401, "the session check rejects its access tokens");

    let sid = jsonwebtoken::dangerous::insecure_decode::<Value>(&access).unwrap().claims["sid"].clone();
    let actions = server.audit_actions().await;
    assert!(actions.iter().any(|(a, t)| a == "refresh_token.reuse" && t.as_deref() == sid.as_str()), "{actions:?}");
    server.stop().await;
}

#[tokio::test]
async fn strict_mode_has_no_grace() {
    let server = TestServer::start_with(|raw| raw.tokens.refresh_grace_secs = 0).await;
    let (_, first) = server.signed_in("jack").await;
    let second = refresh_cookie(server.refresh(&first).await.headers()).unwrap();
    assert_eq!(server.refresh(&first).await.status(), 401);
    assert_eq!(server.refresh(&second).await.status(), 401);
    server.stop().await;
}

#[tokio::test]
async fn idle_timeout_and_absolute_lifetime_follow_the_clock() {
    let server = TestServer::start_with(|raw| {
        raw.tokens.session_idle_timeout_secs = 100;
        raw.tokens.session_absolute_lifetime_secs = 250;
    })
    .await;
    server.register("kate").await;

    // Idle: unused for longer than the idle timeout.
    let (_, idle) = server.login("kate").await;
    server.clock.advance(101);
    assert_eq!(server.refresh(&idle).await.status(), 401);

    // Active use keeps it alive, but never past the absolute lifetime.
    let (_, mut cookie) = server.login("kate").await;
    for step in 1..=2 {
        server.clock.advance(90);
        let resp = server.refresh(&cookie).await;
        assert_eq!(resp.status(), 200, "refresh {step} within the idle timeout");
        let set_cookie = crate::harness::set_cookie_header(resp.headers());
        let max_age: i64 = set_cookie.split("Max-Age=").nth(1).unwrap().split(';').next().unwrap().parse().unwrap();
        assert!(max_age <= 250 - 90 * step, "cookie outlives the session: {set_cookie}");
        cookie = refresh_cookie(resp.headers()).unwrap();
    }
    server.clock.advance(71); // 251 s after login
    assert_eq!(server.refresh(&cookie).await.status(), 401);
    server.stop().await;
}

pub fn spawn_node_with(database_url: &str, dir: &std::path::Path, extra: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .arg("serve")
        .env("LATCHKEY_LISTEN", "127.0.0.1:0")
        .env("LATCHKEY_PUBLIC_URL", "http://127.0.0.1:1")
        .env("LATCHKEY_DATABASE_URL", database_url)
        .env("LATCHKEY_MASTER_KEY_FILE", dir.join("master.key"))
        .env("LATCHKEY_LOG_FORMAT", "json")
        .env("LATCHKEY_PASSWORDS__ARGON2_MEMORY_KIB", "1024")
        .env("LATCHKEY_PASSWORDS__ARGON2_ITERATIONS", "1")
        .env("RUST_LOG", "info")
        .envs(extra.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn latchkey")
}

/// Reads the node's JSON log until it says where it listens.
pub fn wait_for_listen(child: &mut Child) -> String {
    wait_for_listen_keeping_log(child).0
}

/// Every line a node wrote to its log so far (it keeps filling in the background).
#[derive(Clone, Default)]
pub struct NodeLog(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl NodeLog {
    pub fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

/// [`wait_for_listen`], keeping every log line for the test to read.
pub fn wait_for_listen_keeping_log(child: &mut Child) -> (String, NodeLog) {
    let stderr = child.stderr.take().unwrap();
    let log = NodeLog::default();
    let mut lines = BufReader::new(stderr).lines();
    while let Some(Ok(line)) = lines.next() {
        log.0.lock().unwrap().push(line.clone());
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if event["fields"]["message"] == "listening"
            && let Some(addr) = event["fields"]["addr"].as_str()
        {
            // Keep draining the pipe so the child never blocks on a full buffer.
            let kept = log.clone();
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    kept.0.lock().unwrap().push(line);
                }
            });
            return (format!("http://{addr}"), log);
        }
    }
    panic!("the node exited before listening: {}", log.text());
}

/// The inline SQLite writer leaves checkpoints to a thread of its own (it turns off
/// auto-checkpointing so no request waits on an fsync): the WAL must still stay bounded
/// however many rotations run, where without checkpoints it grows by every commit.
#[tokio::test]
async fn the_sqlite_wal_stays_bounded_under_rotations() {
    let server = TestServer::start().await;
    let Some(db) = server.sqlite_file() else { return };
    let (_, mut cookie) = server.signed_in("rotator").await;
    let wal = std::path::PathBuf::from(format!("{}-wal", db.display()));
    let wal_size = || std::fs::metadata(&wal).expect("the SQLite database runs in WAL mode").len();
    let before = wal_size();
    let rotations = 1600;
    for _ in 0..rotations {
        let resp = server.refresh(&cookie).await;
        assert_eq!(resp.status(), 200);
        cookie = refresh_cookie(resp.headers()).unwrap();
    }
    // A rotation appends at least three pages (token, index, session) to the WAL.
    let unbounded = before + rotations * 3 * 4096;
    let size = wal_size();
    println!("WAL {size} bytes after {rotations} rotations (at least {unbounded} without checkpoints)");
    assert!(size < unbounded / 2, "WAL grew to {size} bytes");
    server.stop().await;
}

/// A refresh whose answer never arrives (the client closes the connection after sending
/// it, before reading anything): the retry gets the child the server committed, again
/// and again within the window; once that child is used, the parent is a race (409);
/// after the window, reuse (the session ends). The stored child is sealed under the
/// parent — the database alone does not yield it — and is erased after the window.
#[tokio::test]
async fn a_lost_answer_is_answered_again_with_the_same_child() {
    use latchkey_server::security::{Secret, sealed_child, sha256_hex};
    use latchkey_server::store::TokenStore;
    use latchkey_server::store::entities::TokenState;
    use tokio::io::AsyncWriteExt;

    let server = TestServer::start().await;
    let (_, parent) = server.signed_in("lena").await;
    let parent_hash = sha256_hex(&parent);
    let tokens = &server.state.tokens;

    let addr = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /auth/refresh HTTP/1.1\r\nHost: {addr}\r\nX-Requested-With: latchkey\r\n\
         Cookie: lk_refresh={parent}\r\nContent-Length: 0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    crate::harness::eventually("the server commits the rotation", std::time::Duration::from_secs(5), || async {
        tokens.token_with_session(&parent_hash).await.unwrap().is_some_and(|(t, _)| t.state == TokenState::Rotated)
    })
    .await;
    drop(stream); // the answer is never read

    let (row, _) = tokens.token_with_session(&parent_hash).await.unwrap().unwrap();
    let committed = tokens.child_of(&row.id).await.unwrap().expect("the child the server committed");
    let sealed = row.child_sealed.clone().expect("the parent row keeps its child sealed");
    let parent_secret = Secret::new(parent.clone());
    let opened = sealed_child::open(&parent_secret, &sealed).expect("the parent opens it");
    assert_eq!(sha256_hex(opened.expose()), committed.token_hash);
    assert!(sealed_child::open(&Secret::new(format!("{parent}x")), &sealed).is_none(), "nothing else opens it");
    assert!(!sealed.contains(opened.expose().as_str()), "not stored in the clear");

    let mut children = Vec::new();
    for _ in 0..2 {
        let retry = server.refresh(&parent).await;
        assert_eq!(retry.status(), 200, "the retry is answered on {}", backend());
        let child = refresh_cookie(retry.headers()).unwrap();
        let body: Value = retry.json().await.unwrap();
        assert_eq!(
            server.me(body["access_token"].as_str().unwrap()).await.status(),
            200,
            "with a working access token"
        );
        children.push(child);
    }
    assert_eq!(sha256_hex(&children[0]), committed.token_hash, "the committed child");
    assert_eq!(children[0], children[1], "the same child each time: nothing new is minted");

    // The child is used: the parent is now a race inside the window, reuse after it.
    let grandchild = server.refresh(&children[0]).await;
    assert_eq!(grandchild.status(), 200);
    let grandchild = refresh_cookie(grandchild.headers()).unwrap();
    assert_eq!(server.refresh(&parent).await.status(), 409);
    assert!(server.audit_actions().await.iter().all(|(a, _)| a != "refresh_token.reuse"), "no false alarm");

    // After the window the purge erases what it kept; presenting the parent is reuse.
    server.clock.advance(11);
    latchkey_server::domain::maintenance::purge(&server.state).await.unwrap();
    let (row, _) = tokens.token_with_session(&parent_hash).await.unwrap().unwrap();
    assert!(row.child_sealed.is_none(), "erased after the window on {}", backend());
    assert_eq!(server.refresh(&parent).await.status(), 401);
    assert_eq!(server.refresh(&grandchild).await.status(), 401, "reuse after the window ends the session");
    server.stop().await;
}

/// The retry of a lost answer is the same child on `/oauth2/token` too, for another
/// client than the SPA.
#[tokio::test]
async fn the_token_endpoint_answers_a_retried_refresh_with_the_same_child() {
    let server = TestServer::start().await;
    let secret = server.create_client("app", true, &["password", "refresh_token"], &[]).await.unwrap();
    server.register("mona").await;
    let token = |form: Vec<(&'static str, String)>| {
        let (http, url, secret) = (server.http.clone(), server.url("/oauth2/token"), secret.clone());
        async move {
            let resp = http.post(url).basic_auth("app", Some(secret)).form(&form).sent().await;
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (status, first) = token(vec![
        ("grant_type", "password".into()),
        ("username", "mona".into()),
        ("password", crate::harness::PASSWORD.into()),
        ("scope", "openid".into()),
    ])
    .await;
    assert_eq!(status, 200, "{first}");
    let parent = first["refresh_token"].as_str().unwrap().to_string();
    let refresh = || token(vec![("grant_type", "refresh_token".into()), ("refresh_token", parent.clone())]);
    let (status, a) = refresh().await;
    assert_eq!(status, 200, "{a}");
    let (status, b) = refresh().await;
    assert_eq!(status, 200, "the retry within the window on {}: {b}", backend());
    assert_eq!(a["refresh_token"], b["refresh_token"], "the same child");
    assert_ne!(a["access_token"], b["access_token"], "a fresh access token");
    server.stop().await;
}

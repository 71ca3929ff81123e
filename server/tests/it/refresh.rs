//! Refresh-token rotation under concurrency, reuse detection, grace window, expiry.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::harness::{TestServer, backend, refresh_cookie};

/// Fires `n` refreshes of one cookie at once; returns status → count and the winner's cookie.
pub async fn race(bases: &[String], cookie: &str, n: usize) -> (HashMap<u16, usize>, Option<String>) {
    let http = reqwest::Client::new();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let http = http.clone();
            let url = format!("{}/auth/refresh", bases[i % bases.len()]);
            let cookie = cookie.to_string();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let resp = http
                    .post(url)
                    .header("x-requested-with", "latchkey")
                    .header("cookie", format!("lk_refresh={cookie}"))
                    .send()
                    .await
                    .unwrap();
                (resp.status().as_u16(), refresh_cookie(resp.headers()))
            })
        })
        .collect();
    let mut counts = HashMap::new();
    let mut winner = None;
    for task in tasks {
        let (status, cookie) = task.await.unwrap();
        *counts.entry(status).or_insert(0) += 1;
        if status == 200 {
            winner = cookie;
        }
    }
    (counts, winner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_refreshes_have_exactly_one_winner() {
    let server = TestServer::start().await;
    server.register("henry").await;
    let (_, cookie) = server.login("henry").await;

    let (counts, winner) = race(std::slice::from_ref(&server.base), &cookie, 50).await;
    assert_eq!(counts.get(&200), Some(&1), "exactly one winner on {}: {counts:?}", backend());
    assert_eq!(counts.get(&409), Some(&49), "the others hit the grace window: {counts:?}");

    // Nobody revoked anything: the winner's token still works, and so does the session.
    let winner = winner.unwrap();
    let next = server.refresh(&winner).await;
    assert_eq!(next.status(), 200);
    let actions = server.audit_actions().await;
    assert!(!actions.iter().any(|(a, _)| a == "refresh_token.reuse"));
    server.stop().await;
}

#[tokio::test]
async fn reuse_after_the_grace_window_revokes_the_whole_session() {
    let server = TestServer::start().await;
    server.register("irene").await;
    let (_, first) = server.login("irene").await;
    let rotated = server.refresh(&first).await;
    assert_eq!(rotated.status(), 200);
    let second = refresh_cookie(rotated.headers()).unwrap();
    let body: Value = rotated.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(server.me(&access).await.status(), 200);

    // Inside the window: the distinct answer, nothing revoked.
    let raced = server.refresh(&first).await;
    assert_eq!(raced.status(), 409);
    let raced: Value = raced.json().await.unwrap();
    assert_eq!(raced["error"], "invalid_grant");
    assert!(raced["error_description"].as_str().unwrap().contains("already rotated"));

    // Past the window: reuse. The session and every token in it die.
    server.clock.advance(11);
    let reused = server.refresh(&first).await;
    assert_eq!(reused.status(), 401);
    assert_eq!(reused.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(server.refresh(&second).await.status(), 401, "the child token died with the session");
    assert_eq!(server.me(&access).await.status(), 401, "the session check rejects its access tokens");

    let sid = jsonwebtoken::dangerous::insecure_decode::<Value>(&access).unwrap().claims["sid"].clone();
    let actions = server.audit_actions().await;
    assert!(actions.iter().any(|(a, t)| a == "refresh_token.reuse" && t.as_deref() == sid.as_str()), "{actions:?}");
    server.stop().await;
}

#[tokio::test]
async fn strict_mode_has_no_grace() {
    let server = TestServer::start_with(|raw| raw.tokens.refresh_grace_secs = 0).await;
    server.register("jack").await;
    let (_, first) = server.login("jack").await;
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
    server.register("rotator").await;
    let (_, mut cookie) = server.login("rotator").await;
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

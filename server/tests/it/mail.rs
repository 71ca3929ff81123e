//! Mail: password reset and address verification, delivered through the outbox to a
//! real SMTP server on loopback (mailin-embedded), parsed as a mail client would.

use std::io;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latchkey_server::config::{RawConfig, RawMail};
use serde_json::{Value, json};

use super::harness::{Fetch, PASSWORD, TestServer, assert_error, backend, call, eventually, user_with_roles};

/// One message as the SMTP server received it.
#[derive(Debug, Clone)]
struct Received {
    to: Vec<String>,
    raw: Vec<u8>,
}

impl Received {
    fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default().parse(&self.raw).expect("a MIME message")
    }

    fn text(&self) -> String {
        self.parsed().body_text(0).expect("a text part").into_owned()
    }

    fn html(&self) -> String {
        self.parsed().body_html(0).expect("an HTML part").into_owned()
    }

    fn subject(&self) -> String {
        self.parsed().subject().unwrap_or_default().to_string()
    }

    fn message_id(&self) -> String {
        self.parsed().message_id().expect("a Message-ID").to_string()
    }

    /// The link's token (`…?token=…`) in the text part.
    fn token(&self) -> String {
        let text = self.text();
        let at = text.find("token=").expect("a link with a token") + "token=".len();
        text[at..].split_whitespace().next().unwrap().to_string()
    }
}

/// A real SMTP server on 127.0.0.1, keeping what it receives.
#[derive(Clone, Default)]
struct Inbox {
    received: Arc<Mutex<Vec<Received>>>,
    to: Vec<String>,
    data: Vec<u8>,
}

impl mailin_embedded::Handler for Inbox {
    /// `bounce…@` addresses do not exist here: a permanent refusal (550).
    fn rcpt(&mut self, to: &str) -> mailin_embedded::Response {
        if to.trim_start_matches('<').starts_with("bounce") {
            mailin_embedded::response::NO_MAILBOX
        } else {
            mailin_embedded::response::OK
        }
    }

    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> mailin_embedded::Response {
        self.to = to.to_vec();
        self.data.clear();
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        let message = Received { to: std::mem::take(&mut self.to), raw: std::mem::take(&mut self.data) };
        self.received.lock().unwrap().push(message);
        mailin_embedded::response::OK
    }
}

impl Inbox {
    /// Serves SMTP on `listener` from a thread of its own, for the rest of the test run.
    fn serve(listener: TcpListener) -> Self {
        let inbox = Inbox::default();
        let mut server = mailin_embedded::Server::new(inbox.clone());
        server.with_name("inbox.test").with_ssl(mailin_embedded::SslConfig::None).unwrap().with_tcp_listener(listener);
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        inbox
    }

    fn start() -> (Self, u16) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        (Self::serve(listener), port)
    }

    fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn to(&self, address: &str) -> Vec<Received> {
        self.all().into_iter().filter(|m| m.to.iter().any(|to| to.eq_ignore_ascii_case(address))).collect()
    }

    /// Waits for the `n`th message to `address` (1 for the first) and returns it.
    async fn nth_to(&self, address: &str, n: usize) -> Received {
        eventually(&format!("mail #{n} to {address}"), Duration::from_secs(20), || async {
            self.to(address).len() >= n
        })
        .await;
        self.to(address).remove(n - 1)
    }
}

/// Mail through the SMTP server on `port`, plain text (it is on loopback).
fn smtp(port: u16) -> RawMail {
    RawMail {
        transport: "smtp".into(),
        from: "Latchkey <no-reply@latchkey.test>".into(),
        smtp_url: Some(format!("smtp://127.0.0.1:{port}")),
        tls: Some("none".into()),
        timeout_secs: 2,
        ..Default::default()
    }
}

async fn mailing_server(port: u16, adjust: impl FnOnce(&mut RawConfig)) -> TestServer {
    TestServer::start_with(|raw| {
        raw.mail = Some(smtp(port));
        adjust(raw);
    })
    .await
}

/// An admin's token on `server`.
async fn admin(server: &TestServer) -> String {
    user_with_roles(server, "root", &["admin"]).await.1
}

/// Creates `name` with `email` through the admin API and follows the verification link
/// mailed to it: the user's id.
async fn verified_user(server: &TestServer, inbox: &Inbox, admin: &str, name: &str, email: &str) -> String {
    let (status, created) = call(
        server,
        admin,
        reqwest::Method::POST,
        "/admin/users",
        Some(json!({"username": name, "password": PASSWORD, "email": email})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["user"]["email_verified"], false, "an address is unverified until its link is followed");
    let mail = inbox.nth_to(email, inbox.to(email).len() + 1).await;
    let verified = server.post("/auth/email/verify").json(&json!({"token": mail.token()})).sent().await;
    assert_eq!(verified.status(), 204, "{}", verified.text().await.unwrap());
    created["user"]["id"].as_str().unwrap().to_string()
}

async fn request_reset(server: &TestServer, login: &str) -> reqwest::Response {
    server.post("/auth/password-reset").json(&json!({"login": login})).sent().await
}

async fn complete_reset(server: &TestServer, token: &str, password: &str) -> reqwest::Response {
    server.post("/auth/password-reset/complete").json(&json!({"token": token, "password": password})).sent().await
}

const NEW_PASSWORD: &str = "a brand new passphrase";

#[tokio::test]
async fn a_forgotten_password_is_reset_through_a_mailed_link_and_every_session_ends() {
    let (inbox, port) = Inbox::start();
    let server = mailing_server(port, |_| {}).await;
    let admin = admin(&server).await;
    let id = verified_user(&server, &inbox, &admin, "ada", "ada@example.com").await;
    let (access, cookie) = server.login("ada").await;
    let me: Value = server.me(&access).await.json().await.unwrap();
    assert_eq!((me["email"].as_str(), me["email_verified"].as_bool()), (Some("ada@example.com"), Some(true)));

    let asked = request_reset(&server, "ADA@example.com").await;
    assert_eq!(asked.status(), 202);
    assert_eq!(asked.headers()["cache-control"], "no-store");
    let mail = inbox.nth_to("ada@example.com", 2).await;
    assert!(mail.subject().contains("Reset your"), "{}", mail.subject());
    let token = mail.token();
    assert!(token.starts_with("lk_pr_") && token.len() >= 6 + 43, "a 256-bit token: {token}");
    let link = format!("{}/ui/password-reset?token={token}", server.state.config.issuer);
    assert!(mail.text().contains(&link), "the text part carries the link: {}", mail.text());
    assert!(mail.html().contains(&link), "the HTML part carries the link: {}", mail.html());
    assert!(mail.message_id().ends_with("@127.0.0.1"), "{}", mail.message_id());

    // The link opens the hosted form: no-store, no Referer, a CSRF token.
    let page = server.get(&format!("/ui/password-reset?token={token}")).sent().await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    assert_eq!(page.headers()["cache-control"], "no-store");
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    let body = page.text().await.unwrap();
    assert!(body.contains("name=\"csrf_token\"") && body.contains("ada"), "{body}");

    assert_error(complete_reset(&server, &token, "short").await, 400, "invalid_password").await;
    assert_eq!(complete_reset(&server, &token, NEW_PASSWORD).await.status(), 204);
    assert_error(complete_reset(&server, &token, "yet another passphrase").await, 401, "invalid_email_token").await;

    assert_eq!(server.refresh(&cookie).await.status(), 401, "the reset ended the session");
    assert_eq!(server.login_status("ada", PASSWORD).await, 401, "the old password is gone");
    assert_eq!(server.login_status("ada", NEW_PASSWORD).await, 200);
    let actions = server.audit_actions().await;
    assert!(actions.contains(&("password_reset.mailed".into(), Some(id.clone()))), "{actions:?}");
    assert!(actions.contains(&("password_reset.completed".into(), Some(id))), "{actions:?}");
}

/// Asks a reset for `name` (at `name@example.com`) and returns the token of the `n`th mail there.
async fn reset_token(server: &TestServer, inbox: &Inbox, name: &str, n: usize) -> String {
    assert_eq!(request_reset(server, name).await.status(), 202);
    inbox.nth_to(&format!("{name}@example.com"), n).await.token()
}

#[tokio::test]
async fn a_reset_link_dies_when_used_expired_replaced_or_outlived_by_a_password_change() {
    let (inbox, port) = Inbox::start();
    let server = mailing_server(port, |_| {}).await;
    let admin = admin(&server).await;
    verified_user(&server, &inbox, &admin, "bea", "bea@example.com").await;
    verified_user(&server, &inbox, &admin, "cal", "cal@example.com").await;
    let mut mails = 1;
    let mut next = || {
        mails += 1;
        mails
    };
    // Expired: the link works for 30 minutes of the (injected) clock.
    let token = reset_token(&server, &inbox, "bea", next()).await;
    server.clock.advance(30 * 60 + 1);
    assert_error(complete_reset(&server, &token, NEW_PASSWORD).await, 401, "invalid_email_token").await;
    let hosted = server.get(&format!("/ui/password-reset?token={token}")).sent().await;
    assert_eq!(hosted.status(), 400, "the hosted page says so too");

    // Replaced by a newer reset.
    let older = reset_token(&server, &inbox, "bea", next()).await;
    let newer = reset_token(&server, &inbox, "bea", next()).await;
    assert_error(complete_reset(&server, &older, NEW_PASSWORD).await, 401, "invalid_email_token").await;

    // Outlived by a password change.
    let (access, _) = server.login("bea").await;
    let changed = server
        .post("/auth/password")
        .bearer_auth(&access)
        .json(&json!({"current_password": PASSWORD, "new_password": "changed by bea herself"}))
        .sent()
        .await;
    assert_eq!(changed.status(), 204);
    assert_error(complete_reset(&server, &newer, NEW_PASSWORD).await, 401, "invalid_email_token").await;

    // Another user's link resets that user, never this one.
    assert_eq!(request_reset(&server, "cal").await.status(), 202);
    let cal_token = inbox.nth_to("cal@example.com", 2).await.token();
    assert_eq!(complete_reset(&server, &cal_token, NEW_PASSWORD).await.status(), 204);
    assert_eq!(server.login_status("bea", NEW_PASSWORD).await, 401);
    assert_eq!(server.login_status("cal", NEW_PASSWORD).await, 200);
    assert_error(complete_reset(&server, "lk_pr_not-a-token", NEW_PASSWORD).await, 401, "invalid_email_token").await;
}

#[tokio::test]
async fn a_reset_works_while_locked_out_and_clears_the_lock() {
    let (inbox, port) = Inbox::start();
    let server = mailing_server(port, |raw| {
        raw.lockout.threshold = 3;
        raw.lockout.base_secs = 600;
        raw.lockout.max_secs = 600;
    })
    .await;
    let admin = admin(&server).await;
    verified_user(&server, &inbox, &admin, "dan", "dan@example.com").await;
    for _ in 0..3 {
        assert_eq!(server.login_status("dan", "wrong password here").await, 401);
    }
    assert_eq!(server.login_status("dan", PASSWORD).await, 401, "locked out");
    assert_eq!(request_reset(&server, "dan").await.status(), 202);
    let token = inbox.nth_to("dan@example.com", 2).await.token();
    assert_eq!(complete_reset(&server, &token, NEW_PASSWORD).await.status(), 204);
    assert_eq!(server.login_status("dan", NEW_PASSWORD).await, 200, "the reset cleared the lockout");
}

/// Status, headers that are not per-request, and body of an answer.
async fn answer_shape(resp: reqwest::Response) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let status = resp.status().as_u16();
    let mut headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "date" | "x-request-id"))
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or_default().to_string()))
        .collect();
    headers.sort();
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test]
async fn a_reset_request_answers_the_same_bytes_and_time_whether_or_not_the_account_exists() {
    let (inbox, port) = Inbox::start();
    let server = mailing_server(port, |_| {}).await;
    let admin = admin(&server).await;
    verified_user(&server, &inbox, &admin, "eve", "eve@example.com").await;
    // An account with an unverified address is sent nothing either.
    server.post("/auth/register").json(&json!({"username": "fay", "password": PASSWORD})).sent().await;
    let fay = latchkey_server::store::users::find_by_username(&server.state.db, "fay").await.unwrap().unwrap().id;
    let (status, _) = call(
        &server,
        &admin,
        reqwest::Method::PATCH,
        &format!("/admin/users/{fay}"),
        Some(json!({"email": "fay@example.com"})),
    )
    .await;
    assert_eq!(status, 200);

    let known = answer_shape(request_reset(&server, "eve@example.com").await).await;
    for other in ["nobody@example.com", "nobody", "fay", "fay@example.com"] {
        let unknown = answer_shape(request_reset(&server, other).await).await;
        assert_eq!(known, unknown, "{other:?} answers exactly like a known account on {}", backend());
    }
    inbox.nth_to("eve@example.com", 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // (let stray background work finish before counting)
    assert!(inbox.to("nobody@example.com").is_empty());
    // (fay's address was mailed its verification link when the admin set it; no reset.)
    let fay_mail = inbox.to("fay@example.com");
    assert!(
        fay_mail.iter().all(|m| m.subject().contains("Confirm")),
        "{:?}",
        fay_mail.iter().map(Received::subject).collect::<Vec<_>>()
    );

    // Timing: the medians of interleaved requests (200 each, after a warm-up, so the
    // medians are steady on a shared machine) are within 10%. The work a known account
    // causes runs after the answer, so it cannot show in the answer's time. A round on a
    // machine busy with other work can miss by chance; a real difference misses in every
    // round, so up to three rounds are measured and one within 10% passes.
    for _ in 0..20 {
        request_reset(&server, "nobody").await.bytes().await.unwrap();
    }
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let (mut known, mut unknown) = (Vec::new(), Vec::new());
        for i in 0..400 {
            let login = if i % 2 == 0 { "eve@example.com" } else { "nobody@example.com" };
            let started = Instant::now();
            let resp = request_reset(&server, login).await;
            resp.bytes().await.unwrap();
            let took = started.elapsed();
            if i % 2 == 0 { known.push(took) } else { unknown.push(took) }
        }
        let (k, u) = (median(known), median(unknown));
        rounds.push((k, u));
        if (0.9..=1.1).contains(&(k.as_secs_f64() / u.as_secs_f64())) {
            return;
        }
    }
    panic!("medians (known, unknown) in every round differ by more than 10% on {}: {rounds:?}", backend());
}

#[tokio::test]
async fn one_address_is_sent_at_most_its_hourly_share() {
    let (inbox, port) = Inbox::start();
    let server = mailing_server(port, |raw| {
        if let Some(mail) = raw.mail.as_mut() {
            mail.per_address_per_hour = 4;
        }
    })
    .await;
    let admin = admin(&server).await;
    verified_user(&server, &inbox, &admin, "gus", "gus@example.com").await;
    for _ in 0..6 {
        assert_eq!(request_reset(&server, "gus").await.status(), 202, "the answer never tells");
    }
    inbox.nth_to("gus@example.com", 5).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // (time for any mail beyond the share to show up)
    assert_eq!(inbox.to("gus@example.com").len(), 5, "the verification, then 4 resets: the reset share");
    // The admin's link counts against the same share: 429.
    let (status, body) = call(
        &server,
        &admin,
        reqwest::Method::POST,
        &format!("/admin/users/{}/reset-mail", gus_id(&server).await),
        None,
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (429, Some("rate_limited")), "{body}");
    server.clock.advance(15 * 60);
    assert_eq!(request_reset(&server, "gus").await.status(), 202);
    inbox.nth_to("gus@example.com", 6).await;
    // Another purpose has a share of its own: registrations giving gus's address cannot
    // spend the resets gus needs.
    for i in 0..6 {
        server
            .post("/auth/register")
            .json(&json!({"username": format!("squatter{i}"), "password": PASSWORD, "email": "gus@example.com"}))
            .sent()
            .await;
    }
    server.clock.advance(15 * 60);
    assert_eq!(request_reset(&server, "gus").await.status(), 202);
    // The verification, 4 + 1 resets, 3 verifications (what was left of that share), and
    // this reset: 10.
    inbox.nth_to("gus@example.com", 10).await;
}

async fn gus_id(server: &TestServer) -> String {
    latchkey_server::store::users::find_by_username(&server.state.db, "gus").await.unwrap().unwrap().id
}

/// A loopback port with nothing listening on it (yet).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn a_message_waits_out_a_dead_relay_and_a_restart_and_is_delivered_once() {
    let port = free_port();
    let server = mailing_server(port, |_| {}).await;
    let admin = admin(&server).await;
    let (status, created) = call(
        &server,
        &admin,
        reqwest::Method::POST,
        "/admin/users",
        Some(json!({"username": "hal", "password": PASSWORD, "email": "hal@example.com"})),
    )
    .await;
    assert_eq!(status, 201, "the request that queues mail never waits for SMTP: {created}");
    let failed = || async {
        let rows = latchkey_server::store::outbox::of_recipient(&server.state.db, "hal@example.com", 10).await.unwrap();
        rows.len() == 1 && rows[0].attempts >= 1 && rows[0].last_error.is_some()
    };
    eventually("a failed attempt against the dead relay", Duration::from_secs(20), failed).await;
    let row = &latchkey_server::store::outbox::of_recipient(&server.state.db, "hal@example.com", 10).await.unwrap()[0];
    assert!(!row.payload.contains("lk_ev_"), "the queued message is sealed, never plain");
    let later = server.clock.now_secs() + 7200;
    let node = server
        .second_node_with(|raw| {
            raw.mail = Some(smtp(port));
        })
        .await;
    server.stop().await;

    let inbox = Inbox::serve(TcpListener::bind(("127.0.0.1", port)).unwrap());
    node.clock.set(later);
    let mail = inbox.nth_to("hal@example.com", 1).await;
    assert!(mail.subject().contains("Confirm your email address"), "{}", mail.subject());
    eventually("the message is marked delivered", Duration::from_secs(10), || async {
        let rows = latchkey_server::store::outbox::of_recipient(&node.state.db, "hal@example.com", 10).await.unwrap();
        rows[0].state == latchkey_server::store::entities::OutboxState::Delivered && rows[0].payload.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // (a second tick of the loop)
    assert_eq!(inbox.to("hal@example.com").len(), 1, "delivered once");
    let verified = node.post("/auth/email/verify").json(&json!({"token": mail.token()})).sent().await;
    assert_eq!(verified.status(), 204, "the link from before the restart works");
}

#[tokio::test]
async fn a_message_the_relay_refuses_for_good_is_given_up_audited_and_emptied() {
    let (inbox, port) = Inbox::start();
    let server = mailing_server(port, |_| {}).await;
    let admin = admin(&server).await;
    let dead_before = server.state.metrics.mail.with_label_values(&["dead"]).get();
    let (status, _) = call(
        &server,
        &admin,
        reqwest::Method::POST,
        "/admin/users",
        Some(json!({"username": "ola", "password": PASSWORD, "email": "bounce@example.com"})),
    )
    .await;
    assert_eq!(status, 201);
    let dead = || async {
        let rows =
            latchkey_server::store::outbox::of_recipient(&server.state.db, "bounce@example.com", 10).await.unwrap();
        rows.first().is_some_and(|row| row.state == latchkey_server::store::entities::OutboxState::Dead)
    };
    eventually("the refused message is dead", Duration::from_secs(20), dead).await;
    let row = latchkey_server::store::outbox::of_recipient(&server.state.db, "bounce@example.com", 10)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(row.attempts, 1, "a 550 is not retried");
    assert!(row.payload.is_empty(), "its content is dropped");
    assert!(row.last_error.as_deref().is_some_and(|e| e.contains("550")), "{:?}", row.last_error);
    assert!(server.audit_actions().await.contains(&("mail.dead".into(), Some(row.id.clone()))));
    assert_eq!(server.state.metrics.mail.with_label_values(&["dead"]).get(), dead_before + 1);
    assert!(inbox.all().is_empty());
}

#[tokio::test]
async fn two_nodes_send_each_message_once() {
    let (inbox, port) = Inbox::start();
    let first = mailing_server(port, |_| {}).await;
    let second = first.second_node_with(|raw| raw.mail = Some(smtp(port))).await;
    let admin = admin(&first).await;
    let count = 12;
    for i in 0..count {
        let node = if i % 2 == 0 { &first } else { &second };
        let (status, body) = call(
            node,
            &admin,
            reqwest::Method::POST,
            "/admin/users",
            Some(json!({"username": format!("n{i}"), "password": PASSWORD, "email": format!("n{i}@example.com")})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    eventually("every message", Duration::from_secs(30), || async { inbox.all().len() >= count }).await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // (both loops tick again)
    let all = inbox.all();
    let mut ids: Vec<String> = all.iter().map(Received::message_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((all.len(), ids.len()), (count, count), "each message once, each with its own Message-ID");
}

#[tokio::test]
async fn without_mail_the_features_that_need_it_say_so() {
    let server = TestServer::start().await;
    let admin = admin(&server).await;
    assert_error(request_reset(&server, "anyone").await, 403, "mail_not_configured").await;
    let page = server.get("/ui/password-reset").sent().await;
    assert_eq!(page.status(), 403);
    assert!(page.text().await.unwrap().contains("sends no mail"));
    let (id, _) = user_with_roles(&server, "ivy", &[]).await;
    let (status, body) =
        call(&server, &admin, reqwest::Method::POST, &format!("/admin/users/{id}/verification-mail"), None).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("mail_not_configured")), "{body}");
    // An admin may still vouch for an address.
    let (status, body) = call(
        &server,
        &admin,
        reqwest::Method::PATCH,
        &format!("/admin/users/{id}"),
        Some(json!({"email": "ivy@example.com", "email_verified": true})),
    )
    .await;
    assert_eq!((status, body["email_verified"].as_bool()), (200, Some(true)), "{body}");
}

/// The hosted form's CSRF token and the browser cookie it is bound to, from a page.
async fn form_of(page: reqwest::Response) -> (String, String, String) {
    let cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .find_map(|v| v.to_str().ok()?.strip_prefix("lk_browser=").map(|v| v.split(';').next().unwrap().to_string()))
        .expect("the page binds the browser");
    let body = page.text().await.unwrap();
    let field = |name: &str| {
        let marker = format!("name=\"{name}\" value=\"");
        let at = body.find(&marker).unwrap_or_else(|| panic!("{name} in {body}")) + marker.len();
        body[at..].split('"').next().unwrap().to_string()
    };
    (cookie, field("csrf_token"), body)
}

#[tokio::test]
async fn self_registration_can_require_a_verified_address_and_a_change_of_address_waits_for_its_link() {
    let (inbox, port) = Inbox::start();
    let server = mailing_server(port, |raw| raw.registration.require_verified_email = true).await;
    let refused = server.post("/auth/register").json(&json!({"username": "jo", "password": PASSWORD})).sent().await;
    assert_error(refused, 400, "invalid_email").await;
    let registered = server
        .post("/auth/register")
        .json(&json!({"username": "jo", "password": PASSWORD, "email": "jo@example.com"}))
        .sent()
        .await;
    assert_eq!(registered.status(), 201);
    let wrong = server.spa_post("/auth/login").json(&json!({"username": "jo", "password": "wrong wrong"})).sent().await;
    assert_error(wrong, 401, "invalid_credentials").await;
    let blocked = server.spa_post("/auth/login").json(&json!({"username": "jo", "password": PASSWORD})).sent().await;
    assert_error(blocked, 403, "email_not_verified").await;

    // Whoever knows the password gets a fresh link (an old one may have expired or been
    // lost), which replaces the first.
    let first = inbox.nth_to("jo@example.com", 1).await.token();
    let token = inbox.nth_to("jo@example.com", 2).await.token();
    let stale = server.post("/auth/email/verify").json(&json!({"token": first})).sent().await;
    assert_error(stale, 401, "invalid_email_token").await;

    // The link, followed in a browser: the GET shows a button and changes nothing.
    let page = server.get(&format!("/ui/verify-email?token={token}")).sent().await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let (cookie, csrf, body) = form_of(page).await;
    assert!(body.contains("jo@example.com"), "{body}");
    let jo = latchkey_server::store::users::find_by_username(&server.state.db, "jo").await.unwrap().unwrap();
    assert!(!jo.email_verified, "opening the link verified nothing");
    let forged = server
        .post("/ui/verify-email")
        .header("cookie", format!("lk_browser={cookie}"))
        .form(&[("token", token.as_str()), ("csrf_token", "forged")])
        .sent()
        .await;
    assert_eq!(forged.status(), 400, "a form without its CSRF token does nothing");
    let confirmed = server
        .post("/ui/verify-email")
        .header("cookie", format!("lk_browser={cookie}"))
        .form(&[("token", token.as_str()), ("csrf_token", csrf.as_str())])
        .sent()
        .await;
    assert_eq!(confirmed.status(), 200);
    assert!(confirmed.text().await.unwrap().contains("confirmed"));
    let (access, _) = server.login("jo").await;

    // A new address replaces the old only once its link is followed; the old one hears.
    let change = |password: &str| {
        server
            .post("/auth/email")
            .bearer_auth(&access)
            .json(&json!({"email": "jo@new.example", "password": password}))
            .sent()
    };
    assert_error(change("not the password").await, 401, "invalid_credentials").await;
    assert_eq!(change(PASSWORD).await.status(), 202);
    let link = inbox.nth_to("jo@new.example", 1).await;
    let notice = inbox.nth_to("jo@example.com", 3).await;
    assert!(notice.text().contains("j***@new.example"), "{}", notice.text());
    assert!(!notice.text().contains("token="), "the notice carries no link");
    let me: Value = server.me(&access).await.json().await.unwrap();
    assert_eq!((me["email"].as_str(), me["email_verified"].as_bool()), (Some("jo@example.com"), Some(true)));
    assert_eq!(server.post("/auth/email/verify").json(&json!({"token": link.token()})).sent().await.status(), 204);
    let me: Value = server.me(&access).await.json().await.unwrap();
    assert_eq!((me["email"].as_str(), me["email_verified"].as_bool()), (Some("jo@new.example"), Some(true)));
}

#[tokio::test]
async fn a_verified_address_belongs_to_one_account() {
    let (inbox, port) = Inbox::start();
    let server = mailing_server(port, |_| {}).await;
    let admin = admin(&server).await;
    verified_user(&server, &inbox, &admin, "kim", "shared@example.com").await;
    // A second account may give the address, but not prove it.
    let (status, created) = call(
        &server,
        &admin,
        reqwest::Method::POST,
        "/admin/users",
        Some(json!({"username": "lee", "password": PASSWORD, "email": "Shared@Example.com"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let lee = created["user"]["id"].as_str().unwrap().to_string();
    let link = inbox.nth_to("Shared@Example.com", 2).await;
    let taken = server.post("/auth/email/verify").json(&json!({"token": link.token()})).sent().await;
    assert_error(taken, 409, "email_taken").await;
    let (status, body) = call(
        &server,
        &admin,
        reqwest::Method::PATCH,
        &format!("/admin/users/{lee}"),
        Some(json!({"email_verified": true})),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (409, Some("email_taken")), "{body}");
    assert_eq!(request_reset(&server, "shared@example.com").await.status(), 202);
    let reset = inbox.nth_to("shared@example.com", 3).await;
    assert!(reset.text().contains("Hello kim,"), "a reset by address goes to its verified holder: {}", reset.text());
}

#[tokio::test]
async fn the_hosted_reset_pages_check_their_csrf_token() {
    let (inbox, port) = Inbox::start();
    let server = mailing_server(port, |_| {}).await;
    let admin = admin(&server).await;
    verified_user(&server, &inbox, &admin, "max", "max@example.com").await;
    let page = server.get("/ui/password-reset").sent().await;
    let (cookie, csrf, _) = form_of(page).await;
    let without =
        server.post("/ui/password-reset").form(&[("login", "max"), ("csrf_token", csrf.as_str())]).sent().await;
    assert_eq!(without.status(), 400, "no browser cookie, no request");
    let sent = server
        .post("/ui/password-reset")
        .header("cookie", format!("lk_browser={cookie}"))
        .form(&[("login", "max"), ("csrf_token", csrf.as_str())])
        .sent()
        .await;
    assert_eq!(sent.status(), 200);
    assert!(sent.text().await.unwrap().contains("Check your mail"));
    let token = inbox.nth_to("max@example.com", 2).await.token();
    let form = server.get(&format!("/ui/password-reset?token={token}")).sent().await;
    let (cookie, csrf, _) = form_of(form).await;
    let post = |csrf: &str, confirm: &str| {
        server
            .post("/ui/password-reset/new")
            .header("cookie", format!("lk_browser={cookie}"))
            .form(&[("token", token.as_str()), ("csrf_token", csrf), ("password", NEW_PASSWORD), ("confirm", confirm)])
            .sent()
    };
    assert_eq!(post("forged", NEW_PASSWORD).await.status(), 400);
    let mismatch = post(&csrf, "something else entirely").await;
    assert_eq!(mismatch.status(), 200);
    assert!(mismatch.text().await.unwrap().contains("differ"));
    let done = post(&csrf, NEW_PASSWORD).await;
    assert_eq!(done.status(), 200);
    assert!(done.text().await.unwrap().contains("Your password is changed"));
    assert_eq!(server.login_status("max", NEW_PASSWORD).await, 200);
}

#[cfg(unix)]
#[tokio::test]
async fn the_file_transport_writes_each_message_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("mail");
    let server = TestServer::start_with(|raw| {
        raw.mail = Some(RawMail {
            transport: "file".into(),
            from: "Latchkey <no-reply@latchkey.test>".into(),
            dir: Some(outbox.clone()),
            ..Default::default()
        })
    })
    .await;
    let admin = admin(&server).await;
    let (status, _) = call(
        &server,
        &admin,
        reqwest::Method::POST,
        "/admin/users",
        Some(json!({"username": "ned", "password": PASSWORD, "email": "ned@example.com"})),
    )
    .await;
    assert_eq!(status, 201);
    let files =
        || std::fs::read_dir(&outbox).map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>()).unwrap_or_default();
    eventually("a message file", Duration::from_secs(20), || async { !files().is_empty() }).await;
    let file = &files()[0];
    assert!(file.extension().is_some_and(|e| e == "eml"), "{file:?}");
    assert_eq!(std::fs::metadata(file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&outbox).unwrap().permissions().mode() & 0o777, 0o700);
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains("ned@example.com") && text.contains("multipart/alternative"));
}

#[tokio::test]
async fn a_process_killed_with_mail_queued_sends_it_after_its_restart() {
    let (dir, url) = crate::harness::database_for_nodes().await;
    let port = free_port();
    let smtp_url = format!("smtp://127.0.0.1:{port}");
    let env = [
        ("LATCHKEY_MAIL__TRANSPORT", "smtp"),
        ("LATCHKEY_MAIL__FROM", "Latchkey <no-reply@latchkey.test>"),
        ("LATCHKEY_MAIL__SMTP_URL", smtp_url.as_str()),
        ("LATCHKEY_MAIL__TLS", "none"),
        ("LATCHKEY_MAIL__TIMEOUT_SECS", "1"),
        ("LATCHKEY_MAIL__RETRY_BASE_SECS", "1"),
        ("LATCHKEY_MAIL__RETRY_MAX_SECS", "1"),
    ];
    let mut node = crate::refresh::spawn_node_with(&url, dir.path(), &env);
    let base = crate::refresh::wait_for_listen(&mut node);
    let http = reqwest::Client::new();
    let registered = http
        .post(format!("{base}/auth/register"))
        .json(&json!({"username": "kay", "password": PASSWORD, "email": "kay@example.com"}))
        .sent()
        .await;
    assert_eq!(registered.status(), 201);
    let db = sea_orm::Database::connect(&url).await.unwrap();
    // Killed between two attempts (the next one due within the retry's second, not at
    // the end of a claim's 33-second lease), so the restart need not wait out a lease.
    eventually("an attempt against the dead relay", Duration::from_secs(20), || async {
        let rows = latchkey_server::store::outbox::of_recipient(&db, "kay@example.com", 10).await.unwrap();
        let soon = chrono::Utc::now().timestamp() + 10;
        rows.first().is_some_and(|row| row.attempts >= 1 && row.next_attempt_at < soon)
    })
    .await;
    node.kill().unwrap(); // SIGKILL: no shutdown, no last write
    node.wait().unwrap();

    let inbox = Inbox::serve(TcpListener::bind(("127.0.0.1", port)).unwrap());
    let mut restarted = crate::refresh::spawn_node_with(&url, dir.path(), &env);
    crate::refresh::wait_for_listen(&mut restarted);
    // Within the usual bound — unless the kill still landed inside an attempt (its claim
    // taken in the moment after the check above), when the restart sends it once the
    // claim's lease (33 s here) has run out: that wait is what a restart owes a claim.
    eventually("mail #1 to kay@example.com after the restart", Duration::from_secs(45), || async {
        !inbox.to("kay@example.com").is_empty()
    })
    .await;
    let mail = inbox.nth_to("kay@example.com", 1).await;
    assert!(mail.token().starts_with("lk_ev_"));
    tokio::time::sleep(Duration::from_millis(2500)).await; // (more ticks of the loop)
    restarted.kill().ok();
    assert_eq!(inbox.to("kay@example.com").len(), 1, "sent once after the restart on {}", backend());
}

#[tokio::test]
async fn a_reset_ends_a_sign_in_begun_with_the_old_password() {
    use crate::code_flow::{Browser, at_page, authorize, code_for, exchange, register_rp, sign_in, verify_id_token};
    let (inbox, port) = Inbox::start();
    let server = mailing_server(port, |_| {}).await;
    let admin = admin(&server).await;
    verified_user(&server, &inbox, &admin, "pia", "pia@example.com").await;
    // The id_token's email scope vouches for the verified address.
    let wiki = register_rp(&server, "wiki", false, true).await;
    let code = code_for(&server, &mut Browser::new(), &wiki, "pia").await;
    let tokens: Value = exchange(&server, &wiki, &code, &wiki.verifier).await.json().await.unwrap();
    let id = verify_id_token(&server, tokens["id_token"].as_str().unwrap(), "wiki").await;
    assert_eq!((id["email"].as_str(), id["email_verified"].as_bool()), (Some("pia@example.com"), Some(true)));
    let rp = register_rp(&server, "grafana", false, true).await;
    let mut browser = Browser::new();
    let page = at_page(authorize(&server, &mut browser, &rp, &[]).await);
    let consent = at_page(sign_in(&server, &mut browser, &page, "pia").await);
    assert!(consent.contains("Allow access?"), "parked at consent, past the password: {consent}");

    assert_eq!(request_reset(&server, "pia").await.status(), 202);
    let token = inbox.nth_to("pia@example.com", 2).await.token();
    assert_eq!(complete_reset(&server, &token, NEW_PASSWORD).await.status(), 204);
    let allowed = browser.submit(&server, "/ui/consent", &consent, &[("decision", "allow")]).await;
    assert_eq!(allowed.status(), 400, "the sign-in begun with the old password is over");
    assert!(allowed.text().await.unwrap().contains("expired"));
}

#[tokio::test]
async fn the_account_page_changes_the_address_and_mails_the_link_again() {
    use crate::account::{open_account, post};
    use crate::code_flow::Browser;
    let (inbox, port) = Inbox::start();
    let server = mailing_server(port, |_| {}).await;
    let admin = admin(&server).await;
    verified_user(&server, &inbox, &admin, "quinn", "quinn@example.com").await;
    let mut browser = Browser::new();
    let page = open_account(&server, &mut browser, "quinn").await;
    assert!(page.contains("quinn@example.com") && page.contains("/account/email"), "{page}");
    assert!(!page.contains("not confirmed"), "a verified address is shown as such");

    let wrong = [("email", "quinn@new.example"), ("password", "not the password")];
    let page = post(&server, &mut browser, &page, "/account/email", &wrong).await;
    assert!(page.contains("That password is not right."), "{page}");
    let good = [("email", "quinn@new.example"), ("password", PASSWORD)];
    let page = post(&server, &mut browser, &page, "/account/email", &good).await;
    assert!(page.contains("A confirmation link is on its way"), "{page}");
    assert!(page.contains("A confirmation link was sent to quinn@new.example"), "the pending change is shown: {page}");
    let first = inbox.nth_to("quinn@new.example", 1).await.token();
    inbox.nth_to("quinn@example.com", 2).await; // the notice to the old address

    // An admin sets an address at once, unverified: the page offers the link again.
    let quinn = latchkey_server::store::users::find_by_username(&server.state.db, "quinn").await.unwrap().unwrap();
    let (status, _) = call(
        &server,
        &admin,
        reqwest::Method::PATCH,
        &format!("/admin/users/{}", quinn.id),
        Some(json!({"email": "quinn@admin.example"})),
    )
    .await;
    assert_eq!(status, 200);
    inbox.nth_to("quinn@admin.example", 1).await;
    let stale = server.post("/auth/email/verify").json(&json!({"token": first})).sent().await;
    assert_error(stale, 401, "invalid_email_token").await; // the address changed: old links die
    let page = open_account(&server, &mut browser, "quinn").await;
    assert!(page.contains("not confirmed") && page.contains("/account/email/verification"), "{page}");
    let page = post(&server, &mut browser, &page, "/account/email/verification", &[]).await;
    assert!(page.contains("A confirmation link is on its way to your address."), "{page}");
    let link = inbox.nth_to("quinn@admin.example", 2).await;
    assert_eq!(server.post("/auth/email/verify").json(&json!({"token": link.token()})).sent().await.status(), 204);
    let page = open_account(&server, &mut browser, "quinn").await;
    assert!(page.contains("quinn@admin.example") && !page.contains("not confirmed"), "{page}");
}

//! OpenID Connect Back-Channel Logout 1.0: when a session ends — a sign-out at the
//! hosted pages or a relying party's request, an admin's revoke, logout everywhere, a
//! password change, a disabled or deleted user, a reused refresh token (its family
//! only) — each relying party with a `backchannel_logout_uri` is POSTed a logout token,
//! from a durable outbox: retried with backoff, given up and audited after its last
//! attempt, delivered after a node is killed and restarted, and once with two nodes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use latchkey_server::store::entities::OutboxState;
use latchkey_server::store::outbox::{self, OutboxRow};
use serde_json::{Value, json};

use crate::code_flow::{Browser, Landed, Rp, SIGNED_OUT, authorize, code_for, exchange, register_rp};
use crate::harness::{Fetch, PASSWORD, TestServer, backend, call, eventually, user_with_roles};

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// A relying party's back-channel endpoint on loopback: records every logout token it
/// is POSTed, per path, and answers each with the next scripted status (200 when the
/// script is empty), after an optional delay.
#[derive(Clone)]
pub struct Receiver {
    pub base: String,
    received: Arc<Mutex<Vec<(String, String)>>>,
    script: Arc<Mutex<Script>>,
}

/// Per endpoint name, the answers still to give: (status, delay).
type Script = HashMap<String, VecDeque<(u16, Duration)>>;

impl Receiver {
    pub async fn start() -> Self {
        use poem::web::{Data, Form, Path};
        use poem::{EndpointExt, Route, handler, post};

        #[derive(serde::Deserialize)]
        struct Body {
            logout_token: String,
        }

        #[handler]
        async fn receive(Path(name): Path<String>, Form(body): Form<Body>, me: Data<&Receiver>) -> poem::Response {
            me.received.lock().unwrap().push((name.clone(), body.logout_token));
            let next = me.script.lock().unwrap().get_mut(&name).and_then(VecDeque::pop_front);
            let (status, delay) = next.unwrap_or((200, Duration::ZERO));
            tokio::time::sleep(delay).await;
            poem::Response::builder().status(poem::http::StatusCode::from_u16(status).unwrap()).finish()
        }

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let me = Self { base: format!("http://{addr}"), received: Arc::default(), script: Arc::default() };
        let app = Route::new().at("/bcl/:name", post(receive)).data(me.clone());
        let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
        me
    }

    pub fn uri(&self, name: &str) -> String {
        format!("{}/bcl/{name}", self.base)
    }

    /// The next answers `name` gives, in order.
    pub fn answer(&self, name: &str, answers: &[(u16, Duration)]) {
        self.script.lock().unwrap().entry(name.into()).or_default().extend(answers.iter().copied());
    }

    /// The logout tokens `name` was POSTed so far.
    pub fn tokens(&self, name: &str) -> Vec<String> {
        self.received.lock().unwrap().iter().filter(|(n, _)| n == name).map(|(_, t)| t.clone()).collect()
    }

    pub async fn wait_for(&self, name: &str, count: usize) -> Vec<String> {
        eventually(&format!("{count} logout token(s) at {name}"), Duration::from_secs(20), || async {
            self.tokens(name).len() >= count
        })
        .await;
        self.tokens(name)
    }
}

/// Verifies a logout token as Back-Channel Logout §2.6 tells a relying party to: signed
/// by a key in the JWKS, `typ: logout+jwt`, our issuer, its audience, the event, a `jti`,
/// `iat`, no `nonce`. Returns its claims.
pub async fn verify_logout_token(server: &TestServer, token: &str, audience: &str) -> Value {
    let jwks: JwkSet = server.get("/.well-known/jwks.json").fetch_json().await;
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    assert_eq!(header.alg, Algorithm::RS256);
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[&server.base]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["iss", "aud", "exp", "iat"]);
    // The server's clock is a test clock: check exp against it, not the machine's.
    validation.validate_exp = false;
    let key = DecodingKey::from_jwk(jwks.find(&header.kid.unwrap()).expect("signed by a published key")).unwrap();
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation).unwrap().claims;
    assert_eq!(claims["events"], json!({ EVENT: {} }), "{claims}");
    assert!(claims.get("nonce").is_none(), "a logout token never carries a nonce");
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    let (iat, exp) = (claims["iat"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
    assert_eq!(exp - iat, 120);
    assert!(iat <= server.clock.now_secs(), "issued by the server's clock");
    claims
}

/// Registers `client_id` with a back-channel logout URI at `receiver`.
async fn listening_rp(server: &TestServer, receiver: &Receiver, client_id: &str, sid_required: bool) -> Rp {
    let rp = register_rp(server, client_id, true, false).await;
    let update = latchkey_server::domain::clients::ClientUpdate {
        backchannel_logout_uri: Some(Some(receiver.uri(client_id))),
        backchannel_logout_session_required: Some(sid_required),
        ..Default::default()
    };
    let operator = latchkey_server::domain::rbac::Grantor::operator("test");
    latchkey_server::domain::clients::update(&server.state, client_id, update, &operator).await.unwrap();
    rp
}

/// Registers a confidential first-party client of the password grant that takes logout
/// tokens at `receiver`; its secret.
async fn password_client(server: &TestServer, receiver: &Receiver, client_id: &str, sid_required: bool) -> String {
    let new = latchkey_server::domain::clients::NewClient {
        client_id: client_id.into(),
        name: client_id.into(),
        confidential: true,
        grant_types: vec!["password".into()],
        scopes: vec!["openid".into()],
        audience: None,
        roles: Vec::new(),
        redirect_uris: Vec::new(),
        post_logout_redirect_uris: Vec::new(),
        first_party: true,
        allowed_origins: Vec::new(),
        visible_roles: None,
        token_endpoint_auth_method: None,
        backchannel_logout_uri: Some(receiver.uri(client_id)),
        backchannel_logout_session_required: sid_required,
        dpop_bound_access_tokens: false,
    };
    let operator = latchkey_server::domain::rbac::Grantor::operator("test");
    let (_, secret) = latchkey_server::domain::clients::create(&server.state, new, &operator).await.unwrap();
    secret.unwrap().expose().clone()
}

/// Signs `browser` in at `rp` through the code flow: (id_token's claims, id_token, refresh token).
async fn signed_in(server: &TestServer, browser: &mut Browser, rp: &Rp, scope: &str) -> (Value, String, String) {
    let landed = authorize(server, browser, rp, &[("scope", scope)]).await;
    let code = match landed {
        Landed::AtClient(params) => params["code"].clone(),
        Landed::AtPage(..) => code_for(server, browser, rp, "ada").await,
    };
    let resp = exchange(server, rp, &code, &rp.verifier).await;
    assert_eq!(resp.status(), 200, "on {}", backend());
    let tokens: Value = resp.json().await.unwrap();
    let id_token = tokens["id_token"].as_str().unwrap().to_string();
    let claims = crate::code_flow::verify_id_token(server, &id_token, &rp.client_id).await;
    (claims, id_token, tokens["refresh_token"].as_str().unwrap_or_default().to_string())
}

async fn messages_for(server: &TestServer, client_id: &str) -> Vec<OutboxRow> {
    outbox::of_recipient(&server.state.db, client_id, 100).await.unwrap()
}

fn metric(server: &TestServer, outcome: &str) -> u64 {
    server.state.metrics.backchannel_logout.with_label_values(&[outcome]).get()
}

#[tokio::test]
async fn signing_out_at_a_relying_partys_request_tells_every_relying_party_of_the_browser() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    let (ada, _) = user_with_roles(&server, "ada", &["user"]).await;
    let wiki = listening_rp(&server, &receiver, "wiki", true).await;
    let mail = listening_rp(&server, &receiver, "mail", false).await;
    let quiet = register_rp(&server, "quiet", true, false).await;
    let mut browser = Browser::new();
    let (wiki_claims, id_token, _) = signed_in(&server, &mut browser, &wiki, "openid profile").await;
    let (mail_claims, _, mail_offline) = signed_in(&server, &mut browser, &mail, "openid offline_access").await;
    signed_in(&server, &mut browser, &quiet, "openid").await;
    let sid = wiki_claims["sid"].as_str().unwrap().to_string();
    assert_eq!(mail_claims["sid"], sid, "one browser session");
    assert!(receiver.tokens("wiki").is_empty(), "nothing is sent while the sessions live");

    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("id_token_hint", &id_token)
        .append_pair("post_logout_redirect_uri", SIGNED_OUT)
        .finish();
    let resp = browser.get(&server.url(&format!("/oauth2/logout?{query}"))).await;
    assert_eq!(resp.status(), 303, "on {}", backend());

    for rp in ["wiki", "mail"] {
        let tokens = receiver.wait_for(rp, 1).await;
        assert_eq!(tokens.len(), 1, "one logout token per relying party and browser session");
        let claims = verify_logout_token(&server, &tokens[0], rp).await;
        assert_eq!(claims["sub"], ada.as_str());
        assert_eq!(claims["sid"], sid.as_str(), "the sid of the id_tokens it holds");
        assert_eq!(claims["iss"], server.base.as_str());
    }
    // mail's offline session outlives the browser by default, yet mail is told the
    // browser sign-in it knows as `sid` has ended (Back-Channel Logout §2.7).
    let form = [("grant_type", "refresh_token"), ("refresh_token", mail_offline.as_str()), ("client_id", "mail")];
    assert_eq!(server.post("/oauth2/token").form(&form).sent().await.status(), 200);
    assert!(messages_for(&server, "quiet").await.is_empty(), "a client without a URI is sent nothing");
    eventually("both recorded as delivered", Duration::from_secs(10), || async {
        let rows = [messages_for(&server, "wiki").await, messages_for(&server, "mail").await].concat();
        rows.len() == 2 && rows.iter().all(|m| m.state == OutboxState::Delivered && m.attempts == 1)
    })
    .await;
    assert_eq!(metric(&server, "delivered"), 2);
    let discovery: Value = server.get("/.well-known/openid-configuration").fetch_json().await;
    assert_eq!(discovery["backchannel_logout_supported"], true);
    assert_eq!(discovery["backchannel_logout_session_supported"], true);
    assert_eq!(discovery["frontchannel_logout_supported"], false);
}

/// Waits until `client_id`'s one message has been attempted `attempts` times (and the
/// last attempt recorded), and returns it.
async fn after_attempt(server: &TestServer, client_id: &str, attempts: i32) -> OutboxRow {
    // A claim clears the last error: a pending message with one has its attempt recorded.
    let recorded =
        |m: &OutboxRow| m.attempts == attempts && (m.state != OutboxState::Pending || m.last_error.is_some());
    eventually(&format!("attempt {attempts} recorded"), Duration::from_secs(20), || async {
        messages_for(server, client_id).await.first().is_some_and(recorded)
    })
    .await;
    messages_for(server, client_id).await.remove(0)
}

#[tokio::test]
async fn a_failing_relying_party_is_retried_with_a_doubling_backoff_until_it_answers() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    let (ada, _) = user_with_roles(&server, "ada", &["user"]).await;
    let wiki = listening_rp(&server, &receiver, "wiki", true).await;
    receiver.answer("wiki", &[(500, Duration::ZERO), (500, Duration::ZERO)]);
    let mut browser = Browser::new();
    let (claims, _, _) = signed_in(&server, &mut browser, &wiki, "openid").await;
    let sid = claims["sid"].as_str().unwrap().to_string();
    let admin = crate::harness::user_with_roles(&server, "root", &["admin"]).await.1;
    let (status, _) =
        call(&server, &admin, reqwest::Method::DELETE, &format!("/admin/users/{ada}/browser-sessions/{sid}"), None)
            .await;
    assert_eq!(status, 204, "on {}", backend());

    let first = after_attempt(&server, "wiki", 1).await;
    assert_eq!(first.state, OutboxState::Pending);
    assert_eq!(first.last_error.as_deref(), Some("answered HTTP 500"));
    // The first retry waits 10 s and up to 5 s of jitter (retry_base_secs = 10).
    let wait = first.next_attempt_at - server.clock.now_secs();
    assert!((10..=15).contains(&wait), "first retry in {wait} s");
    server.clock.advance(wait);
    let second = after_attempt(&server, "wiki", 2).await;
    let wait = second.next_attempt_at - server.clock.now_secs();
    assert!((20..=30).contains(&wait), "second retry in {wait} s (doubled)");
    // Not a moment early: one second before it is due nothing is sent.
    server.clock.advance(wait - 1);
    tokio::time::sleep(Duration::from_millis(1500)).await; // a delivery tick passes
    assert_eq!(receiver.tokens("wiki").len(), 2);
    server.clock.advance(1);
    let tokens = receiver.wait_for("wiki", 3).await;
    let delivered = after_attempt(&server, "wiki", 3).await;
    assert_eq!(delivered.state, OutboxState::Delivered);
    assert_eq!(delivered.last_error, None);
    let mut jtis = Vec::new();
    for token in &tokens {
        let claims = verify_logout_token(&server, token, "wiki").await;
        assert_eq!(claims["sid"], sid.as_str());
        jtis.push(claims["jti"].as_str().unwrap().to_string());
    }
    assert_eq!(
        jtis,
        [delivered.id.clone(), delivered.id.clone(), delivered.id],
        "one stable jti, so receivers can drop duplicates"
    );
    assert_eq!((metric(&server, "retried"), metric(&server, "delivered"), metric(&server, "dead")), (2, 1, 0));
}

#[tokio::test]
async fn a_message_is_given_up_after_its_last_attempt_and_audited() {
    let server = TestServer::start_with(|raw| {
        raw.backchannel_logout.max_attempts = 2;
        raw.backchannel_logout.timeout_secs = 1;
    })
    .await;
    let receiver = Receiver::start().await;
    let (_, access) = user_with_roles(&server, "ada", &["user"]).await;
    let wiki = listening_rp(&server, &receiver, "wiki", false).await;
    // The first answer comes too late (the timeout is 1 s), the second is an error.
    receiver.answer("wiki", &[(200, Duration::from_secs(3)), (503, Duration::ZERO)]);
    let mut browser = Browser::new();
    signed_in(&server, &mut browser, &wiki, "openid").await;
    let resp = server.post("/auth/logout-all").bearer_auth(&access).sent().await;
    assert_eq!(resp.status(), 204);

    let first = after_attempt(&server, "wiki", 1).await;
    assert_eq!(first.last_error.as_deref(), Some("no answer within 1 s"));
    server.clock.advance(first.next_attempt_at - server.clock.now_secs());
    let dead = after_attempt(&server, "wiki", 2).await;
    assert_eq!(dead.state, OutboxState::Dead);
    assert_eq!(dead.last_error.as_deref(), Some("answered HTTP 503"));
    assert!(dead.finished_at.is_some());
    server.clock.advance(3600);
    tokio::time::sleep(Duration::from_millis(1500)).await; // a delivery tick passes
    assert_eq!(receiver.tokens("wiki").len(), 2, "a dead message is not attempted again");
    let actions = server.audit_actions().await;
    assert!(actions.iter().any(|(a, t)| a == "backchannel_logout.dead" && t.as_deref() == Some("wiki")), "{actions:?}");
    assert_eq!(metric(&server, "dead"), 1);
    assert!(server.state.metrics.render().contains("latchkey_backchannel_logout_total{outcome=\"dead\"} 1"));

    // The admin sees it, and once the relying party is fixed, queues it again.
    let admin = user_with_roles(&server, "root", &["admin"]).await.1;
    let path = "/admin/clients/wiki/backchannel-logout";
    let (status, seen) = call(&server, &admin, reqwest::Method::GET, path, None).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(
        (seen["dead"].as_u64(), seen["pending"].as_u64(), seen["delivered"].as_u64()),
        (Some(1), Some(0), Some(0))
    );
    assert_eq!(seen["backchannel_logout_uri"], receiver.uri("wiki").as_str());
    assert_eq!(seen["recent"][0]["state"], "dead");
    assert_eq!(seen["recent"][0]["last_error"], "answered HTTP 503");
    assert_eq!(seen["recent"][0]["id"], dead.id.as_str());
    let (status, requeued) = call(&server, &admin, reqwest::Method::POST, &format!("{path}/retry"), None).await;
    assert_eq!((status, requeued["requeued"].as_u64()), (200, Some(1)));
    let tokens = receiver.wait_for("wiki", 3).await;
    assert_eq!(verify_logout_token(&server, &tokens[2], "wiki").await["jti"], dead.id.as_str(), "the same message");
    eventually("delivered after the retry", Duration::from_secs(10), || async {
        let (_, seen) = call(&server, &admin, reqwest::Method::GET, path, None).await;
        seen["delivered"] == 1 && seen["dead"] == 0 && seen["last_delivered_at"].is_string()
    })
    .await;
    let (_, again) = call(&server, &admin, reqwest::Method::POST, &format!("{path}/retry"), None).await;
    assert_eq!(again["requeued"], 0, "nothing dead is left");
    let actions = server.audit_actions().await;
    assert_eq!(actions.iter().filter(|(a, _)| a == "client.backchannel_logout.retry").count(), 1, "{actions:?}");
    let (status, _) =
        call(&server, &admin, reqwest::Method::GET, "/admin/clients/nobody/backchannel-logout", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn every_way_a_session_ends_tells_its_relying_party() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    let (ada, _) = user_with_roles(&server, "ada", &["user"]).await;
    let admin = user_with_roles(&server, "root", &["admin"]).await.1;
    let wiki = listening_rp(&server, &receiver, "wiki", true).await;
    let mut told = 0;
    // Exactly one more logout token, naming `sid`.
    async fn one_more(server: &TestServer, receiver: &Receiver, told: &mut usize, sid: &Value) {
        *told += 1;
        let tokens = receiver.wait_for("wiki", *told).await;
        assert_eq!(tokens.len(), *told, "exactly one more logout token on {}", backend());
        assert_eq!(&verify_logout_token(server, &tokens[*told - 1], "wiki").await["sid"], sid);
    }

    // An admin revokes one session.
    let mut browser = Browser::new();
    let (claims, _, _) = signed_in(&server, &mut browser, &wiki, "openid").await;
    let session = server.state.db.clone();
    let live = latchkey_server::store::sessions::list_live_for_user(&session, &ada, server.clock.now_secs())
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.client_id == "wiki")
        .unwrap();
    let (status, _) =
        call(&server, &admin, reqwest::Method::DELETE, &format!("/admin/sessions/{}", live.id), None).await;
    assert_eq!(status, 204);
    one_more(&server, &receiver, &mut told, &claims["sid"]).await;

    // An admin revokes every session of the user.
    let (claims, _, _) = signed_in(&server, &mut Browser::new(), &wiki, "openid").await;
    let (status, _) =
        call(&server, &admin, reqwest::Method::DELETE, &format!("/admin/users/{ada}/sessions"), None).await;
    assert_eq!(status, 200, "on {}", backend());
    one_more(&server, &receiver, &mut told, &claims["sid"]).await;

    // The user signs out everywhere.
    let (claims, _, _) = signed_in(&server, &mut Browser::new(), &wiki, "openid").await;
    // (The admin's revoke-all ended the session of ada's first token: a new one.)
    let ada_access = server.login("ada").await.0;
    assert_eq!(server.post("/auth/logout-all").bearer_auth(&ada_access).sent().await.status(), 204);
    one_more(&server, &receiver, &mut told, &claims["sid"]).await;

    // The user changes their password (their other sessions end).
    let (claims, _, _) = signed_in(&server, &mut Browser::new(), &wiki, "openid").await;
    let (access, cookie) = server.login("ada").await;
    let body = json!({"current_password": PASSWORD, "new_password": "another long passphrase 2"});
    let resp = server.cookie_post("/auth/password", &cookie).bearer_auth(&access).json(&body).sent().await;
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    one_more(&server, &receiver, &mut told, &claims["sid"]).await;
    let body = json!({"password": PASSWORD});
    let (status, _) =
        call(&server, &admin, reqwest::Method::PUT, &format!("/admin/users/{ada}/password"), Some(body)).await;
    assert_eq!(status, 204, "an admin sets the password back (no session of wiki lives: nothing told)");

    // A reused refresh token ends its family, and tells its relying party.
    let (claims, _, refresh) = signed_in(&server, &mut Browser::new(), &wiki, "openid").await;
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh.as_str()), ("client_id", "wiki")];
    assert_eq!(server.post("/oauth2/token").form(&form).sent().await.status(), 200);
    server.clock.advance(120); // past the grace window
    assert_eq!(server.post("/oauth2/token").form(&form).sent().await.status(), 400);
    one_more(&server, &receiver, &mut told, &claims["sid"]).await;

    // An admin disables the user.
    let (claims, _, _) = signed_in(&server, &mut Browser::new(), &wiki, "openid").await;
    let body = json!({"status": "disabled"});
    let (status, _) = call(&server, &admin, reqwest::Method::PATCH, &format!("/admin/users/{ada}"), Some(body)).await;
    assert_eq!(status, 200);
    one_more(&server, &receiver, &mut told, &claims["sid"]).await;
    let body = json!({"status": "active"});
    let (status, _) = call(&server, &admin, reqwest::Method::PATCH, &format!("/admin/users/{ada}"), Some(body)).await;
    assert_eq!(status, 200);

    // An admin deletes the user.
    let (claims, _, _) = signed_in(&server, &mut Browser::new(), &wiki, "openid").await;
    let (status, _) = call(&server, &admin, reqwest::Method::DELETE, &format!("/admin/users/{ada}"), None).await;
    assert_eq!(status, 204);
    one_more(&server, &receiver, &mut told, &claims["sid"]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // a delivery tick passes
    assert_eq!(receiver.tokens("wiki").len(), told, "nothing else was sent");
}

#[tokio::test]
async fn a_reused_refresh_token_tells_only_its_own_relying_party() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    user_with_roles(&server, "ada", &["user"]).await;
    let wiki = listening_rp(&server, &receiver, "wiki", true).await;
    let mail = listening_rp(&server, &receiver, "mail", true).await;
    let mut browser = Browser::new();
    let (claims, _, refresh) = signed_in(&server, &mut browser, &wiki, "openid").await;
    signed_in(&server, &mut browser, &mail, "openid").await;
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh.as_str()), ("client_id", "wiki")];
    assert_eq!(server.post("/oauth2/token").form(&form).sent().await.status(), 200);
    server.clock.advance(120);
    assert_eq!(server.post("/oauth2/token").form(&form).sent().await.status(), 400);
    let tokens = receiver.wait_for("wiki", 1).await;
    assert_eq!(verify_logout_token(&server, &tokens[0], "wiki").await["sid"], claims["sid"]);
    tokio::time::sleep(Duration::from_millis(1500)).await; // a delivery tick passes
    assert!(messages_for(&server, "mail").await.is_empty(), "the browser session and mail's session go on");
    assert!(matches!(authorize(&server, &mut browser, &mail, &[]).await, Landed::AtClient(_)));
}

#[tokio::test]
async fn a_session_without_a_browser_sign_in_tells_only_clients_that_do_not_need_sid() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    let (ada, access) = user_with_roles(&server, "ada", &["user"]).await;
    for (client_id, sid_required) in [("svc-any", false), ("svc-sid", true)] {
        let secret = password_client(&server, &receiver, client_id, sid_required).await;
        let form = [("grant_type", "password"), ("username", "ada"), ("password", PASSWORD), ("scope", "openid")];
        let resp = server.post("/oauth2/token").basic_auth(client_id, Some(&secret)).form(&form).sent().await;
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }
    assert_eq!(server.post("/auth/logout-all").bearer_auth(&access).sent().await.status(), 204);
    let tokens = receiver.wait_for("svc-any", 1).await;
    let claims = verify_logout_token(&server, &tokens[0], "svc-any").await;
    assert_eq!(claims["sub"], ada.as_str());
    assert!(claims.get("sid").is_none(), "no browser sign-in, no sid");
    assert!(messages_for(&server, "svc-sid").await.is_empty(), "its id_tokens never named such a session");
}

#[tokio::test]
async fn the_admin_api_validates_and_shows_a_clients_back_channel_logout_uri() {
    let server = TestServer::start().await;
    let admin = user_with_roles(&server, "root", &["admin"]).await.1;
    let base = json!({"client_id": "rp1", "name": "RP", "confidential": true, "grant_types": ["client_credentials"]});
    for bad in ["http://rp.example/logout", "https://rp.example/logout#frag", "https://user:pw@rp.example/", "rp"] {
        let mut body = base.clone();
        body["backchannel_logout_uri"] = bad.into();
        let (status, error) = call(&server, &admin, reqwest::Method::POST, "/admin/clients", Some(body)).await;
        assert_eq!((status, error["error"].as_str()), (400, Some("invalid_redirect_uri")), "{bad}: {error}");
    }
    let mut body = base.clone();
    body["backchannel_logout_uri"] = "https://rp.example/backchannel".into();
    body["backchannel_logout_session_required"] = true.into();
    let (status, created) = call(&server, &admin, reqwest::Method::POST, "/admin/clients", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["client"]["backchannel_logout_uri"], "https://rp.example/backchannel");
    assert_eq!(created["client"]["backchannel_logout_session_required"], true);
    let patch = json!({"backchannel_logout_uri": null});
    let (status, updated) = call(&server, &admin, reqwest::Method::PATCH, "/admin/clients/rp1", Some(patch)).await;
    assert_eq!(status, 200);
    assert!(updated.get("backchannel_logout_uri").is_none(), "{updated}");
    let retry = "/admin/clients/rp1/backchannel-logout/retry";
    let (status, error) = call(&server, &admin, reqwest::Method::POST, retry, None).await;
    assert_eq!((status, error["error"].as_str()), (409, Some("conflict")), "no URI to retry at: {error}");
    let patch = json!({"backchannel_logout_uri": "http://127.0.0.1:9/logout"});
    let (status, updated) = call(&server, &admin, reqwest::Method::PATCH, "/admin/clients/rp1", Some(patch)).await;
    assert_eq!((status, updated["backchannel_logout_uri"].as_str()), (200, Some("http://127.0.0.1:9/logout")));
}

/// "A restart loses nothing": a node killed with SIGKILL in the middle of an attempt
/// (the relying party has the request and has not answered) leaves its message claimed;
/// once the claim runs out (timeout + 30 s) the restarted node delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_whose_node_was_killed_mid_attempt_is_delivered_after_the_restart() {
    let (dir, url) = crate::harness::database_for_nodes().await;
    let receiver = Receiver::start().await;
    receiver.answer("rp", &[(200, Duration::from_secs(30))]); // hangs: the node dies first
    let env = [("LATCHKEY_BACKCHANNEL_LOGOUT__TIMEOUT_SECS", "1")];
    let mut node = crate::refresh::spawn_node_with(&url, dir.path(), &env);
    let base = crate::refresh::wait_for_listen(&mut node);
    let created = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["client", "create", "--client-id", "rp", "--confidential", "--first-party"])
        .args(["--grant", "password", "--scope", "openid", "--backchannel-logout-uri", &receiver.uri("rp")])
        .env("LATCHKEY_DATABASE_URL", &url)
        .env("LATCHKEY_MASTER_KEY_FILE", dir.path().join("master.key"))
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let stdout = String::from_utf8_lossy(&created.stdout).to_string();
    let secret = stdout.lines().find_map(|l| l.strip_prefix("client_secret: ")).unwrap().to_string();
    let http = reqwest::Client::new();
    let account = json!({"username": "ada", "password": PASSWORD});
    assert_eq!(http.post(format!("{base}/auth/register")).json(&account).sent().await.status(), 201);
    let form = [("grant_type", "password"), ("username", "ada"), ("password", PASSWORD), ("scope", "openid")];
    let resp = http.post(format!("{base}/oauth2/token")).basic_auth("rp", Some(&secret)).form(&form).sent().await;
    assert_eq!(resp.status(), 200);
    let login =
        http.post(format!("{base}/auth/login")).header("x-requested-with", "latchkey").json(&account).sent().await;
    let own: Value = login.json().await.unwrap();
    let own = own["access_token"].as_str().unwrap().to_string();
    assert_eq!(http.post(format!("{base}/auth/logout-all")).bearer_auth(&own).sent().await.status(), 204);

    // The relying party has the request: the node dies before any answer.
    receiver.wait_for("rp", 1).await;
    node.kill().unwrap(); // SIGKILL: no shutdown
    node.wait().unwrap();
    let db = sea_orm::Database::connect(&url).await.unwrap();
    let rows = outbox::of_recipient(&db, "rp", 10).await.unwrap();
    assert_eq!((rows.len(), rows[0].state, rows[0].attempts), (1, OutboxState::Pending, 1), "claimed, unanswered");
    assert!(rows[0].last_error.is_none(), "the attempt never finished");

    let mut again = crate::refresh::spawn_node_with(&url, dir.path(), &env);
    crate::refresh::wait_for_listen(&mut again);
    eventually("delivered after the claim ran out", Duration::from_secs(60), || async {
        let rows = outbox::of_recipient(&db, "rp", 10).await.unwrap();
        rows[0].state == OutboxState::Delivered && rows[0].attempts == 2
    })
    .await;
    again.kill().ok();
    let tokens = receiver.tokens("rp");
    assert_eq!(tokens.len(), 2, "the interrupted attempt, then the one after the restart");
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            tokens[1].split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!((claims["aud"].as_str(), claims["jti"].as_str()), (Some("rp"), Some(rows[0].id.as_str())));
    assert!(claims.get("sid").is_none());
}

/// Two nodes on one database: each logout token is delivered once, whichever node
/// claims it (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: its writer lock). All are
/// queued at once, so both nodes' loops find them due together.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_deliver_each_logout_token_once() {
    let a = TestServer::start().await;
    let b = a.second_node().await;
    let receiver = Receiver::start().await;
    // Slow answers widen the window in which both nodes' delivery loops run.
    receiver.answer("wiki", &[(200, Duration::from_millis(40)); 200]);
    let wiki = listening_rp(&a, &receiver, "wiki", true).await;
    let admin = user_with_roles(&a, "root", &["admin"]).await.1;
    let (ada, _) = user_with_roles(&a, "ada", &["user"]).await;
    let mut sids = Vec::new();
    for _ in 0..24 {
        let code = code_for(&a, &mut Browser::new(), &wiki, "ada").await;
        let tokens: Value = exchange(&a, &wiki, &code, &wiki.verifier).await.json().await.unwrap();
        let claims = crate::code_flow::verify_id_token(&a, tokens["id_token"].as_str().unwrap(), "wiki").await;
        sids.push(claims["sid"].as_str().unwrap().to_string());
    }
    // One revocation ends all 24 browser sign-ins: 24 messages queued in one commit.
    let (status, _) = call(&b, &admin, reqwest::Method::DELETE, &format!("/admin/users/{ada}/sessions"), None).await;
    assert_eq!(status, 200);
    receiver.wait_for("wiki", sids.len()).await;
    tokio::time::sleep(Duration::from_millis(2500)).await; // both loops tick again
    let mut told: Vec<String> = Vec::new();
    for token in receiver.tokens("wiki") {
        told.push(verify_logout_token(&a, &token, "wiki").await["sid"].as_str().unwrap().to_string());
    }
    told.sort();
    sids.sort();
    assert_eq!(told, sids, "each browser session's logout token exactly once, on {}", backend());
    let delivered = metric(&a, "delivered") + metric(&b, "delivered");
    assert_eq!(delivered, sids.len() as u64);
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn the_same_user_signing_in_again_keeps_the_sid_and_another_user_ends_it() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    let (ada, _) = user_with_roles(&server, "ada", &["user"]).await;
    user_with_roles(&server, "bob", &["user"]).await;
    let wiki = listening_rp(&server, &receiver, "wiki", true).await;
    let mut browser = Browser::new();
    let (first, _, refresh) = signed_in(&server, &mut browser, &wiki, "openid").await;

    // prompt=login: ada types her password again; the browser session, and its sid, go on.
    server.clock.advance(5);
    let Landed::AtPage(_, page) = authorize(&server, &mut browser, &wiki, &[("prompt", "login")]).await else {
        panic!("prompt=login asks")
    };
    let Landed::AtClient(params) = crate::code_flow::sign_in(&server, &mut browser, &page, "ada").await else {
        panic!("signed in again")
    };
    let tokens: Value = exchange(&server, &wiki, &params["code"], &wiki.verifier).await.json().await.unwrap();
    let again = crate::code_flow::verify_id_token(&server, tokens["id_token"].as_str().unwrap(), "wiki").await;
    assert_eq!(again["sid"], first["sid"], "one browser session, one sid");
    assert!(again["auth_time"].as_i64() > first["auth_time"].as_i64(), "a new authentication");
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh.as_str()), ("client_id", "wiki")];
    assert_eq!(server.post("/oauth2/token").form(&form).sent().await.status(), 200, "the first session lives");
    tokio::time::sleep(Duration::from_millis(1500)).await; // a delivery tick passes
    assert!(receiver.tokens("wiki").is_empty(), "nothing ended");

    // bob signs in on the same browser: ada's sign-in ends as at a sign-out.
    let Landed::AtPage(_, page) = authorize(&server, &mut browser, &wiki, &[("prompt", "login")]).await else {
        panic!("prompt=login asks")
    };
    let Landed::AtClient(_) = crate::code_flow::sign_in(&server, &mut browser, &page, "bob").await else {
        panic!("bob signed in")
    };
    let tokens = receiver.wait_for("wiki", 1).await;
    let claims = verify_logout_token(&server, &tokens[0], "wiki").await;
    assert_eq!((claims["sub"].as_str(), &claims["sid"]), (Some(ada.as_str()), &first["sid"]));
    tokio::time::sleep(Duration::from_millis(1500)).await; // a delivery tick passes
    assert_eq!(receiver.tokens("wiki").len(), 1, "one token for ada's two sessions under one sid");
    let rotated: Value = server.post("/oauth2/token").form(&form).sent().await.json().await.unwrap();
    assert_eq!(rotated["error"], "invalid_grant", "ada's sessions through it ended");
}

#[tokio::test]
async fn a_token_without_sid_waits_until_the_users_last_session_at_that_client_ends() {
    let server = TestServer::start().await;
    let receiver = Receiver::start().await;
    let (ada, _) = user_with_roles(&server, "ada", &["user"]).await;
    let admin = user_with_roles(&server, "root", &["admin"]).await.1;
    let secret = password_client(&server, &receiver, "svc", false).await;
    let form = [("grant_type", "password"), ("username", "ada"), ("password", PASSWORD), ("scope", "openid")];
    for _ in 0..2 {
        let resp = server.post("/oauth2/token").basic_auth("svc", Some(&secret)).form(&form).sent().await;
        assert_eq!(resp.status(), 200);
    }
    let live = latchkey_server::store::sessions::list_live_for_user(&server.state.db, &ada, server.clock.now_secs())
        .await
        .unwrap();
    let svc: Vec<_> = live.iter().filter(|s| s.client_id == "svc").collect();
    assert_eq!(svc.len(), 2);
    // A token without sid ends every session of ada at svc: not while one lives here.
    let (status, _) =
        call(&server, &admin, reqwest::Method::DELETE, &format!("/admin/sessions/{}", svc[0].id), None).await;
    assert_eq!(status, 204);
    tokio::time::sleep(Duration::from_millis(1500)).await; // a delivery tick passes
    assert!(messages_for(&server, "svc").await.is_empty(), "ada still has a session at svc");
    let (status, _) =
        call(&server, &admin, reqwest::Method::DELETE, &format!("/admin/sessions/{}", svc[1].id), None).await;
    assert_eq!(status, 204);
    let tokens = receiver.wait_for("svc", 1).await;
    let claims = verify_logout_token(&server, &tokens[0], "svc").await;
    assert_eq!(claims["sub"], ada.as_str());
    assert!(claims.get("sid").is_none());
}

#[tokio::test]
async fn a_failing_relying_party_paces_its_other_messages_instead_of_spending_their_attempts() {
    let server = TestServer::start_with(|raw| raw.backchannel_logout.concurrency = 1).await;
    let receiver = Receiver::start().await;
    let (ada, _) = user_with_roles(&server, "ada", &["user"]).await;
    let admin = user_with_roles(&server, "root", &["admin"]).await.1;
    let wiki = listening_rp(&server, &receiver, "wiki", true).await;
    receiver.answer("wiki", &[(503, Duration::ZERO); 10]);
    for _ in 0..2 {
        let code = code_for(&server, &mut Browser::new(), &wiki, "ada").await;
        assert_eq!(exchange(&server, &wiki, &code, &wiki.verifier).await.status(), 200);
    }
    // One commit queues a message per browser sign-in; one slot takes the first.
    let (status, _) =
        call(&server, &admin, reqwest::Method::DELETE, &format!("/admin/users/{ada}/sessions"), None).await;
    assert_eq!(status, 200);
    eventually("the first attempt recorded", Duration::from_secs(20), || async {
        messages_for(&server, "wiki").await.iter().any(|m| m.last_error.is_some())
    })
    .await;
    let rows = messages_for(&server, "wiki").await;
    let failed: Vec<_> = rows.iter().filter(|m| m.attempts == 1).collect();
    let waiting: Vec<_> = rows.iter().filter(|m| m.attempts == 0).collect();
    assert_eq!((failed.len(), waiting.len()), (1, 1), "{rows:?}");
    assert_eq!(waiting[0].next_attempt_at, failed[0].next_attempt_at, "paced with the failed one, attempts intact");
    assert_eq!(receiver.tokens("wiki").len(), 1);
}

//! Passkeys (WebAuthn), answered by a software authenticator over real HTTP: register,
//! sign in without a password, the second factor after a password, the policy that some
//! roles must have a second factor, and every answer a relying party must refuse — from
//! another origin or relying party id, without user verification, for a spent, expired
//! or other challenge, by another user's passkey, or with a counter that went back.

use latchkey_softpasskey::{Answer, SoftPasskey};
use serde_json::{Value, json};

use crate::code_flow::{Browser, Landed, at_client, authorize, follow, hidden, register_rp};
use crate::harness::{
    Fetch, PASSWORD, TestServer, assert_error, backend, call, enable_totp, refresh_cookie, user_with_roles,
};

/// The origin the server's pages are served from (clientData.origin of an honest answer).
fn origin(server: &TestServer) -> String {
    server.state.config.issuer.clone()
}

/// Starts a registration with `access` and answers it: (the passkey, the finish answer).
async fn try_register(
    server: &TestServer,
    access: &str,
    answer: &Answer,
    counting: bool,
) -> (SoftPasskey, reqwest::Response) {
    let (status, started) = call(
        server,
        access,
        reqwest::Method::POST,
        "/auth/webauthn/register/start",
        Some(json!({"password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 200, "{started}");
    let (passkey, credential) = SoftPasskey::register(&started["options"], answer, counting).unwrap();
    let finish = json!({ "ceremony_id": started["ceremony_id"], "name": "Laptop", "credential": credential });
    let resp = server.post("/auth/webauthn/register/finish").bearer_auth(access).json(&finish).sent().await;
    (passkey, resp)
}

/// Registers a passkey for the user of `access`.
async fn register(server: &TestServer, access: &str, counting: bool) -> SoftPasskey {
    let (passkey, resp) = try_register(server, access, &Answer::at(&origin(server)), counting).await;
    assert_eq!(resp.status(), 201, "on {}", backend());
    passkey
}

/// Starts a passkey login (with an `mfa_token` for a second factor): (ceremony id, options).
async fn login_start(server: &TestServer, mfa_token: Option<&str>) -> (String, Value) {
    let body = match mfa_token {
        Some(token) => json!({ "mfa_token": token }),
        None => json!({}),
    };
    let resp = server.spa_post("/auth/webauthn/login/start").json(&body).sent().await;
    assert_eq!(resp.status(), 200, "on {}", backend());
    let started: Value = resp.json().await.unwrap();
    (started["ceremony_id"].as_str().unwrap().to_string(), started["options"].clone())
}

async fn login_finish(
    server: &TestServer,
    ceremony: &str,
    credential: &Value,
    mfa_token: Option<&str>,
) -> reqwest::Response {
    let mut body = json!({ "ceremony_id": ceremony, "credential": credential });
    if let Some(token) = mfa_token {
        body["mfa_token"] = json!(token);
    }
    server.spa_post("/auth/webauthn/login/finish").json(&body).sent().await
}

/// A whole usernameless login with `passkey`, answering as `answer` says.
async fn passkey_login(server: &TestServer, passkey: &mut SoftPasskey, answer: &Answer) -> reqwest::Response {
    let (ceremony, options) = login_start(server, None).await;
    let credential = passkey.sign_in(&options, answer).unwrap();
    login_finish(server, &ceremony, &credential, None).await
}

/// The claims of an access token (its signature is checked elsewhere).
fn claims(access: &str) -> Value {
    use base64::Engine;
    let payload = access.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn a_passkey_registers_and_then_signs_in_without_a_password() {
    let server = TestServer::start_on_localhost(|_| {}).await;
    let (user_id, access) = user_with_roles(&server, "ada", &["user"]).await;
    // The password is checked again: an access token alone plants no passkey.
    let start = "/auth/webauthn/register/start";
    let (status, refused) =
        call(&server, &access, reqwest::Method::POST, start, Some(json!({"password": "wrong"}))).await;
    assert_eq!((status, refused["error"].as_str()), (401, Some("invalid_credentials")), "{refused}");
    let (status, _) = call(&server, &access, reqwest::Method::POST, start, None).await;
    assert_eq!(status, 415, "no password, no ceremony");
    let (status, started) =
        call(&server, &access, reqwest::Method::POST, start, Some(json!({"password": PASSWORD}))).await;
    assert_eq!(status, 200);
    let public_key = &started["options"]["publicKey"];
    assert_eq!(public_key["rp"]["id"], "localhost");
    assert_eq!(public_key["authenticatorSelection"]["residentKey"], "required", "discoverable: {public_key}");
    assert_eq!(public_key["authenticatorSelection"]["userVerification"], "required");
    assert_eq!(public_key["attestation"], "none");
    assert!(started.get("mediation").is_none());

    let mut passkey = register(&server, &access, false).await;
    let (status, listed) = call(&server, &access, reqwest::Method::GET, "/auth/passkeys", None).await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["name"], "Laptop");
    assert_eq!(listed[0]["sign_count"], 0);

    let resp = passkey_login(&server, &mut passkey, &Answer::at(&origin(&server))).await;
    assert_eq!(resp.status(), 200, "on {}", backend());
    let cookie = refresh_cookie(resp.headers()).expect("a passkey login sets the refresh cookie");
    let body: Value = resp.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    let claims = claims(token);
    assert_eq!(claims["sub"], user_id.as_str());
    assert_eq!(claims["amr"], json!(["swk", "user"]), "RFC 8176: a software key, the user verified; never hwk");
    assert_eq!(server.me(token).await.status(), 200);
    assert_eq!(server.refresh(&cookie).await.status(), 200, "the same session model as a password login");

    let (_, listed) = call(&server, &access, reqwest::Method::GET, "/auth/passkeys", None).await;
    assert!(listed[0]["last_used_at"].is_string(), "{listed}");
    let actions: Vec<String> = server.audit_actions().await.into_iter().map(|(action, _)| action).collect();
    assert!(actions.contains(&"passkey.register".to_string()) && actions.contains(&"passkey.use".to_string()));

    // Rename, then delete: the passkey signs in no more.
    let id = listed[0]["id"].as_str().unwrap().to_string();
    let path = format!("/auth/passkeys/{id}");
    let (status, _) = call(&server, &access, reqwest::Method::PATCH, &path, Some(json!({"name": "Work laptop"}))).await;
    assert_eq!(status, 204);
    let (status, _) = call(&server, &access, reqwest::Method::PATCH, &path, Some(json!({"name": " "}))).await;
    assert_eq!(status, 400, "an empty name");
    let (_, listed) = call(&server, &access, reqwest::Method::GET, "/auth/passkeys", None).await;
    assert_eq!(listed[0]["name"], "Work laptop");
    let (status, _) = call(&server, &access, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    let resp = passkey_login(&server, &mut passkey, &Answer::at(&origin(&server))).await;
    assert_error(resp, 401, "invalid_passkey").await;
}

#[tokio::test]
async fn answers_a_relying_party_must_refuse_are_refused_and_spend_their_ceremony() {
    let server = TestServer::start_on_localhost(|_| {}).await;
    let (_, access) = user_with_roles(&server, "ada", &["user"]).await;
    let mut passkey = register(&server, &access, true).await;
    let honest = Answer::at(&origin(&server));

    let port = server.state.config.issuer.rsplit(':').next().unwrap().to_string();
    let refused = [
        (
            "another origin",
            Answer { origin: format!("http://localhost:{}", port.parse::<u16>().unwrap() + 1), ..honest.clone() },
        ),
        ("a phishing origin", Answer { origin: "https://latchkey.example".into(), ..honest.clone() }),
        ("another relying party id", Answer { rp_id: Some("example.com".into()), ..honest.clone() }),
        ("no user verification", Answer { user_verified: false, ..honest.clone() }),
        ("another challenge", Answer { challenge: Some("b3RoZXItY2hhbGxlbmdl".into()), ..honest.clone() }),
    ];
    for (what, answer) in &refused {
        let resp = passkey_login(&server, &mut passkey, answer).await;
        assert_eq!(resp.status(), 401, "{what} on {}", backend());
        assert_eq!(resp.json::<Value>().await.unwrap()["error"], "invalid_passkey", "{what}");
    }

    // A good answer, replayed: its ceremony is spent by the first finish.
    let (ceremony, options) = login_start(&server, None).await;
    let credential = passkey.sign_in(&options, &honest).unwrap();
    assert_eq!(login_finish(&server, &ceremony, &credential, None).await.status(), 200);
    assert_error(login_finish(&server, &ceremony, &credential, None).await, 401, "invalid_passkey").await;
    // …and against a fresh ceremony its challenge is not that one's.
    let (fresh, _) = login_start(&server, None).await;
    assert_error(login_finish(&server, &fresh, &credential, None).await, 401, "invalid_passkey").await;

    // A refused answer spends its ceremony too: an honest answer to it comes too late.
    let (ceremony, options) = login_start(&server, None).await;
    let wrong = passkey.sign_in(&options, &Answer { user_verified: false, ..honest.clone() }).unwrap();
    assert_error(login_finish(&server, &ceremony, &wrong, None).await, 401, "invalid_passkey").await;
    let right = passkey.sign_in(&options, &honest).unwrap();
    assert_error(login_finish(&server, &ceremony, &right, None).await, 401, "invalid_passkey").await;

    // A ceremony past its five minutes.
    let (ceremony, options) = login_start(&server, None).await;
    server.clock.advance(301);
    let late = passkey.sign_in(&options, &honest).unwrap();
    assert_error(login_finish(&server, &ceremony, &late, None).await, 401, "invalid_passkey").await;

    // Malformed answers are 400s, unknown ceremonies 401s; nothing is a 500.
    let (ceremony, _) = login_start(&server, None).await;
    let resp = login_finish(&server, &ceremony, &json!({"id": 7}), None).await;
    assert_error(resp, 400, "invalid_request").await;
    let resp = login_finish(&server, "no-such-ceremony", &credential, None).await;
    assert_error(resp, 401, "invalid_passkey").await;

    // After all that, an honest answer still signs in.
    assert_eq!(passkey_login(&server, &mut passkey, &honest).await.status(), 200);
    // A registration from another origin or without user verification is refused as well.
    for answer in [
        Answer { origin: "https://latchkey.example".into(), ..honest.clone() },
        Answer { user_verified: false, ..honest.clone() },
    ] {
        let (_, resp) = try_register(&server, &access, &answer, false).await;
        assert_error(resp, 400, "invalid_passkey").await;
    }
    // …and one the browser says is not discoverable (credProps.rk false).
    let start = "/auth/webauthn/register/start";
    let (_, started) = call(&server, &access, reqwest::Method::POST, start, Some(json!({"password": PASSWORD}))).await;
    let (_, mut credential) = SoftPasskey::register(&started["options"], &honest, false).unwrap();
    credential["clientExtensionResults"]["credProps"]["rk"] = json!(false);
    let finish = json!({ "ceremony_id": started["ceremony_id"], "name": "Key", "credential": credential });
    let resp = server.post("/auth/webauthn/register/finish").bearer_auth(&access).json(&finish).sent().await;
    assert_error(resp, 400, "invalid_passkey").await;
}

#[tokio::test]
async fn a_counter_that_goes_back_is_audited_and_refused_unless_configured_otherwise() {
    for refuse in [true, false] {
        let server = TestServer::start_on_localhost(|raw| raw.passkeys.refuse_counter_regression = refuse).await;
        let (_, access) = user_with_roles(&server, "ada", &["user"]).await;
        let mut passkey = register(&server, &access, true).await;
        let honest = Answer::at(&origin(&server));
        assert_eq!(passkey_login(&server, &mut passkey, &honest).await.status(), 200, "counter 1");
        assert_eq!(passkey_login(&server, &mut passkey, &honest).await.status(), 200, "counter 2");
        let cloned = Answer { counter: Some(2), ..honest.clone() };
        let resp = passkey_login(&server, &mut passkey, &cloned).await;
        if refuse {
            assert_error(resp, 401, "invalid_passkey").await;
        } else {
            assert_eq!(resp.status(), 200);
        }
        let regressions: Vec<_> = server
            .audit_actions()
            .await
            .into_iter()
            .filter(|(action, _)| action == "passkey.counter_regression")
            .collect();
        assert_eq!(regressions.len(), 1, "audited whether or not refused ({refuse}) on {}", backend());
        // The stored counter never goes back: the next honest use (3) is accepted.
        assert_eq!(passkey_login(&server, &mut passkey, &honest).await.status(), 200);
        if refuse {
            // Two clones answering at once with the same next counter: one passes.
            for counter in 4..16 {
                let (first, first_options) = login_start(&server, None).await;
                let (second, second_options) = login_start(&server, None).await;
                let same = Answer { counter: Some(counter), ..honest.clone() };
                let first_answer = passkey.sign_in(&first_options, &same).unwrap();
                let second_answer = passkey.sign_in(&second_options, &same).unwrap();
                let (a, b) = tokio::join!(
                    login_finish(&server, &first, &first_answer, None),
                    login_finish(&server, &second, &second_answer, None)
                );
                let passed = [a.status(), b.status()].into_iter().filter(|s| *s == 200).count();
                assert_eq!(passed, 1, "counter {counter} signs in once on {}", backend());
            }
        }
    }
}

#[tokio::test]
async fn turning_totp_off_and_deleting_the_last_passkey_cannot_both_pass() {
    let server = TestServer::start_on_localhost(|raw| raw.mfa.require_for_roles = vec!["staff".into()]).await;
    let operator = latchkey_server::domain::rbac::Grantor::operator("test");
    latchkey_server::domain::rbac::create_role(&server.state, "staff", "", &[], &operator).await.unwrap();
    for round in 0..3 {
        let name = format!("eve{round}");
        let (id, access) = user_with_roles(&server, &name, &["user"]).await;
        let (_, codes) = enable_totp(&server, &name).await;
        register(&server, &access, false).await;
        let (_, listed) = call(&server, &access, reqwest::Method::GET, "/auth/passkeys", None).await;
        let passkey_id = listed[0]["id"].as_str().unwrap().to_string();
        latchkey_server::domain::users::admin_set_roles(&server.state, &id, vec!["staff".into()], &operator)
            .await
            .unwrap();
        let totp_off = server
            .delete("/auth/totp")
            .bearer_auth(&access)
            .json(&json!({"password": PASSWORD, "recovery_code": codes[0]}))
            .sent();
        let passkey_gone = server.delete(&format!("/auth/passkeys/{passkey_id}")).bearer_auth(&access).sent();
        let (totp_off, passkey_gone) = tokio::join!(totp_off, passkey_gone);
        let statuses = [totp_off.status().as_u16(), passkey_gone.status().as_u16()];
        assert_eq!(statuses.iter().filter(|s| **s == 204).count(), 1, "{statuses:?} on {}", backend());
        assert!(statuses.contains(&409), "the other is last_factor: {statuses:?}");
    }
}

#[tokio::test]
async fn a_passkey_is_a_second_factor_after_the_password_but_only_its_owners() {
    let server = TestServer::start_on_localhost(|_| {}).await;
    let (_, alice) = user_with_roles(&server, "alice", &["user"]).await;
    let mut alices = register(&server, &alice, false).await;
    let (_, bob) = user_with_roles(&server, "bob", &["user"]).await;
    let mut bobs = register(&server, &bob, false).await;
    enable_totp(&server, "alice").await;
    let honest = Answer::at(&origin(&server));

    let login = server.spa_post("/auth/login").json(&json!({"username": "alice", "password": PASSWORD})).sent().await;
    let login: Value = login.json().await.unwrap();
    assert_eq!(login["mfa_required"], true);
    assert_eq!(login["mfa_methods"], json!(["totp", "passkey"]));
    let mfa_token = login["mfa_token"].as_str().unwrap();

    let (ceremony, options) = login_start(&server, Some(mfa_token)).await;
    let allowed = options["publicKey"]["allowCredentials"].as_array().unwrap();
    assert_eq!(allowed.len(), 1);
    assert_eq!(allowed[0]["id"], alices.credential_id().as_str(), "only alice's passkeys are asked for");
    // Bob's passkey cannot finish alice's login…
    let bobs_answer = bobs.sign_in(&options, &honest).unwrap();
    assert_error(login_finish(&server, &ceremony, &bobs_answer, Some(mfa_token)).await, 401, "invalid_passkey").await;
    // …nor can a usernameless ceremony stand in for hers.
    let (usernameless, options) = login_start(&server, None).await;
    let answer = alices.sign_in(&options, &honest).unwrap();
    assert_error(login_finish(&server, &usernameless, &answer, Some(mfa_token)).await, 401, "invalid_passkey").await;

    let (ceremony, options) = login_start(&server, Some(mfa_token)).await;
    let answer = alices.sign_in(&options, &honest).unwrap();
    let resp = login_finish(&server, &ceremony, &answer, Some(mfa_token)).await;
    assert_eq!(resp.status(), 200, "on {}", backend());
    let token: Value = resp.json().await.unwrap();
    assert_eq!(claims(token["access_token"].as_str().unwrap())["amr"], json!(["pwd", "swk", "mfa"]));
    // The mfa_token is spent.
    let (ceremony, options) = login_start(&server, None).await;
    let again = alices.sign_in(&options, &honest).unwrap();
    assert_error(login_finish(&server, &ceremony, &again, Some(mfa_token)).await, 401, "invalid_token").await;
}

#[tokio::test]
async fn a_ceremony_started_on_one_node_finishes_on_another() {
    let node_a = TestServer::start_on_localhost(|_| {}).await;
    let node_b = node_a.second_node().await;
    let (_, access) = user_with_roles(&node_a, "ada", &["user"]).await;
    // Registration: started on A, finished on B.
    let (status, started) = call(
        &node_a,
        &access,
        reqwest::Method::POST,
        "/auth/webauthn/register/start",
        Some(json!({"password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 200);
    let (mut passkey, credential) =
        SoftPasskey::register(&started["options"], &Answer::at(&origin(&node_a)), false).unwrap();
    let finish = json!({ "ceremony_id": started["ceremony_id"], "name": "Phone", "credential": credential });
    let resp = node_b.post("/auth/webauthn/register/finish").bearer_auth(&access).json(&finish).sent().await;
    assert_eq!(resp.status(), 201, "on {}", backend());
    // Sign-in: started on B, finished on A; the answer then spent on both.
    let (ceremony, options) = login_start(&node_b, None).await;
    let answer = passkey.sign_in(&options, &Answer::at(&origin(&node_a))).unwrap();
    assert_eq!(login_finish(&node_a, &ceremony, &answer, None).await.status(), 200);
    assert_error(login_finish(&node_b, &ceremony, &answer, None).await, 401, "invalid_passkey").await;
}

#[tokio::test]
async fn an_account_holds_at_most_25_passkeys() {
    let server = TestServer::start_on_localhost(|_| {}).await;
    let (_, access) = user_with_roles(&server, "many", &["user"]).await;
    for _ in 0..25 {
        register(&server, &access, false).await;
    }
    let start = "/auth/webauthn/register/start";
    let (status, refused) =
        call(&server, &access, reqwest::Method::POST, start, Some(json!({"password": PASSWORD}))).await;
    assert_eq!((status, refused["error"].as_str()), (409, Some("too_many_passkeys")), "{refused}");
}

#[tokio::test]
async fn passkeys_are_off_where_the_public_url_is_an_ip_address() {
    let server = TestServer::start().await;
    assert!(server.state.webauthn.is_none());
    let resp = server.spa_post("/auth/webauthn/login/start").json(&json!({})).sent().await;
    assert_error(resp, 403, "passkeys_unavailable").await;
    let rp = register_rp(&server, "rp", true, false).await;
    let mut browser = Browser::new();
    let Landed::AtPage(_, page) = authorize(&server, &mut browser, &rp, &[]).await else { panic!("the sign-in page") };
    assert!(!page.contains("passkey"), "no passkey button where passkeys cannot work: {page}");
}

/// Registers a passkey at the hosted enrolment stage of `page`: the script's two posts.
async fn enrol_on_page(server: &TestServer, browser: &mut Browser, page: &str) -> (SoftPasskey, Landed) {
    let (interaction, csrf) = (hidden(page, "interaction"), hidden(page, "csrf_token"));
    let form = [("interaction", interaction.as_str()), ("csrf_token", csrf.as_str())];
    let started = browser.post_form(&server.url("/ui/signin/passkey/start"), &form).await;
    assert_eq!(started.status(), 200);
    let started: Value = started.json().await.unwrap();
    let (passkey, credential) =
        SoftPasskey::register(&started["options"], &Answer::at(&origin(server)), false).unwrap();
    let credential = credential.to_string();
    let ceremony = started["ceremony_id"].as_str().unwrap().to_string();
    let mut posted = form.to_vec();
    posted.extend([("ceremony", ceremony.as_str()), ("credential", credential.as_str()), ("name", "Phone")]);
    let resp = browser.post_form(&server.url("/ui/signin/passkey"), &posted).await;
    (passkey, follow(server, browser, resp).await)
}

/// Answers the passkey ceremony of the sign-in page `page` with `passkey`.
async fn passkey_on_page(server: &TestServer, browser: &mut Browser, page: &str, passkey: &mut SoftPasskey) -> Landed {
    let (interaction, csrf) = (hidden(page, "interaction"), hidden(page, "csrf_token"));
    let form = [("interaction", interaction.as_str()), ("csrf_token", csrf.as_str())];
    let started = browser.post_form(&server.url("/ui/signin/passkey/start"), &form).await;
    assert_eq!(started.status(), 200);
    let started: Value = started.json().await.unwrap();
    let credential = passkey.sign_in(&started["options"], &Answer::at(&origin(server))).unwrap().to_string();
    let ceremony = started["ceremony_id"].as_str().unwrap().to_string();
    let mut posted = form.to_vec();
    posted.extend([("ceremony", ceremony.as_str()), ("credential", credential.as_str())]);
    let resp = browser.post_form(&server.url("/ui/signin/passkey"), &posted).await;
    follow(server, browser, resp).await
}

#[tokio::test]
async fn a_role_that_comes_to_require_a_second_factor_ends_what_the_password_alone_began() {
    let server = TestServer::start_on_localhost(|raw| raw.mfa.require_for_roles = vec!["staff".into()]).await;
    let operator = latchkey_server::domain::rbac::Grantor::operator("test");
    latchkey_server::domain::rbac::create_role(&server.state, "staff", "", &[], &operator).await.unwrap();
    let (dan, _) = user_with_roles(&server, "dan", &["user"]).await;
    // Signed in with the password alone, in a browser and in the SPA, while not staff.
    let rp = register_rp(&server, "rp", true, false).await;
    let mut browser = Browser::new();
    let Landed::AtPage(_, page) = authorize(&server, &mut browser, &rp, &[]).await else { panic!("the sign-in page") };
    let resp = browser.submit(&server, "/ui/signin", &page, &[("username", "dan"), ("password", PASSWORD)]).await;
    assert!(at_client(follow(&server, &mut browser, resp).await).contains_key("code"));
    let (_, cookie) = server.login("dan").await;

    latchkey_server::domain::users::admin_set_roles(
        &server.state,
        &dan,
        vec!["user".into(), "staff".into()],
        &operator,
    )
    .await
    .unwrap();
    // The browser's login session no longer lets it through, and the refresh is refused.
    let Landed::AtPage(_, page) = authorize(&server, &mut browser, &rp, &[]).await else {
        panic!("a staff member with a password-only session signs in again")
    };
    assert!(page.contains(r#"name="password""#), "{page}");
    assert_error(server.refresh(&cookie).await, 401, "invalid_grant").await;
}

#[tokio::test]
async fn roles_that_require_a_second_factor_enrol_one_first_and_keep_it() {
    let server = TestServer::start_on_localhost(|raw| raw.mfa.require_for_roles = vec!["staff".into()]).await;
    let operator = latchkey_server::domain::rbac::Grantor::operator("test");
    latchkey_server::domain::rbac::create_role(&server.state, "staff", "", &[], &operator).await.unwrap();
    let account = latchkey_server::domain::users::NewAccount {
        username: "carol".into(),
        password: latchkey_server::security::Secret::new(PASSWORD.into()),
        email: None,
        roles: vec!["staff".into()],
    };
    let carol = latchkey_server::domain::users::create(&server.state, account, &operator, None).await.unwrap();

    // The JSON login refuses, with a code a client can act on.
    let resp = server.spa_post("/auth/login").json(&json!({"username": "carol", "password": PASSWORD})).sent().await;
    assert_error(resp, 403, "mfa_enrolment_required").await;

    // The hosted sign-in asks for a passkey to be made, then goes on to the client.
    let rp = register_rp(&server, "rp", true, false).await;
    let mut browser = Browser::new();
    let Landed::AtPage(_, page) = authorize(&server, &mut browser, &rp, &[]).await else { panic!("the sign-in page") };
    assert!(page.contains("Sign in with a passkey"), "{page}");
    assert!(page.contains(r#"autocomplete="username webauthn""#), "conditional UI: {page}");
    let resp = browser.submit(&server, "/ui/signin", &page, &[("username", "carol"), ("password", PASSWORD)]).await;
    let Landed::AtPage(_, page) = follow(&server, &mut browser, resp).await else { panic!("the enrolment page") };
    assert!(page.contains("Add a passkey"), "{page}");
    let (mut passkey, landed) = enrol_on_page(&server, &mut browser, &page).await;
    // Made, then used: the sign-in's amr says the passkey answered, not only that it exists.
    let Landed::AtPage(_, page) = landed else { panic!("the second factor page") };
    assert!(page.contains("Use it now to finish signing in"), "{page}");
    let landed = passkey_on_page(&server, &mut browser, &page, &mut passkey).await;
    let params = at_client(landed);
    assert!(params.contains_key("code"), "{params:?}");
    let sessions = latchkey_server::store::authorization::sso_sessions_of(&server.state.db, &carol.id).await.unwrap();
    assert_eq!(sessions.iter().map(|s| s.amr.as_str()).collect::<Vec<_>>(), ["pwd swk mfa"]);

    // From now on the password is followed by the passkey.
    let login = server.spa_post("/auth/login").json(&json!({"username": "carol", "password": PASSWORD})).sent().await;
    let login: Value = login.json().await.unwrap();
    assert_eq!(login["mfa_methods"], json!(["passkey"]));
    let mfa_token = login["mfa_token"].as_str().unwrap();
    let (ceremony, options) = login_start(&server, Some(mfa_token)).await;
    let answer = passkey.sign_in(&options, &Answer::at(&origin(&server))).unwrap();
    let resp = login_finish(&server, &ceremony, &answer, Some(mfa_token)).await;
    assert_eq!(resp.status(), 200);
    let access = resp.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();

    // Its last factor cannot be deleted by the user; an admin can (a lost device).
    let (_, listed) = call(&server, &access, reqwest::Method::GET, "/auth/passkeys", None).await;
    let id = listed[0]["id"].as_str().unwrap().to_string();
    let resp = server.delete(&format!("/auth/passkeys/{id}")).bearer_auth(&access).sent().await;
    assert_error(resp, 409, "last_factor").await;
    let (_, admin) = user_with_roles(&server, "root", &["admin"]).await;
    let (status, shown) =
        call(&server, &admin, reqwest::Method::GET, &format!("/admin/users/{}/passkeys", carol.id), None).await;
    assert_eq!(status, 200);
    assert_eq!(shown[0]["name"], "Phone");
    let path = format!("/admin/users/{}/passkeys/{id}", carol.id);
    let (status, _) = call(&server, &admin, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    let (status, _) = call(&server, &admin, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 404);
    let deletions: Vec<_> =
        server.audit_actions().await.into_iter().filter(|(action, _)| action == "passkey.delete").collect();
    assert_eq!(deletions.len(), 1);
}

#[tokio::test]
async fn the_hosted_sign_in_takes_a_passkey_alone_or_after_the_password() {
    let server = TestServer::start_on_localhost(|_| {}).await;
    let (user_id, access) = user_with_roles(&server, "ada", &["user"]).await;
    let mut passkey = register(&server, &access, false).await;
    let rp = register_rp(&server, "rp", true, false).await;
    let honest = Answer::at(&origin(&server));

    // Usernameless: the passkey button of the sign-in page.
    let mut browser = Browser::new();
    let Landed::AtPage(_, page) = authorize(&server, &mut browser, &rp, &[]).await else { panic!("the sign-in page") };
    let (interaction, csrf) = (hidden(&page, "interaction"), hidden(&page, "csrf_token"));
    let form = [("interaction", interaction.as_str()), ("csrf_token", csrf.as_str())];
    // Without the page's CSRF token nothing starts.
    let forged = browser.post_form(&server.url("/ui/signin/passkey/start"), &form[..1]).await;
    assert_eq!(forged.status(), 400);
    assert_eq!(forged.json::<Value>().await.unwrap()["error"], "csrf_check_failed");
    let started: Value = browser.post_form(&server.url("/ui/signin/passkey/start"), &form).await.json().await.unwrap();
    let credential = passkey.sign_in(&started["options"], &honest).unwrap().to_string();
    let ceremony = started["ceremony_id"].as_str().unwrap().to_string();
    let mut posted = form.to_vec();
    posted.extend([("ceremony", ceremony.as_str()), ("credential", credential.as_str())]);
    let resp = browser.post_form(&server.url("/ui/signin/passkey"), &posted).await;
    let params = at_client(follow(&server, &mut browser, resp).await);
    let tokens = crate::code_flow::exchange(&server, &rp, &params["code"], &rp.verifier).await;
    assert_eq!(tokens.status(), 200);
    let tokens: Value = tokens.json().await.unwrap();
    let id_token = crate::code_flow::verify_id_token(&server, tokens["id_token"].as_str().unwrap(), "rp").await;
    assert_eq!(id_token["sub"], user_id.as_str());
    assert_eq!(id_token["amr"], json!(["swk", "user"]));

    // A refused answer leaves the user on the page with a notice.
    let mut browser = Browser::new();
    let Landed::AtPage(_, page) = authorize(&server, &mut browser, &rp, &[]).await else { panic!("the sign-in page") };
    let (interaction, csrf) = (hidden(&page, "interaction"), hidden(&page, "csrf_token"));
    let form = [("interaction", interaction.as_str()), ("csrf_token", csrf.as_str())];
    let started: Value = browser.post_form(&server.url("/ui/signin/passkey/start"), &form).await.json().await.unwrap();
    let bad =
        passkey.sign_in(&started["options"], &Answer { user_verified: false, ..honest.clone() }).unwrap().to_string();
    let ceremony = started["ceremony_id"].as_str().unwrap().to_string();
    let mut posted = form.to_vec();
    posted.extend([("ceremony", ceremony.as_str()), ("credential", bad.as_str())]);
    let resp = browser.post_form(&server.url("/ui/signin/passkey"), &posted).await;
    let Landed::AtPage(_, page) = follow(&server, &mut browser, resp).await else { panic!("back at the page") };
    assert!(page.contains("The passkey did not work"), "{page}");

    // After the password (TOTP on), the second-factor page offers the passkey too.
    enable_totp(&server, "ada").await;
    let resp = browser.submit(&server, "/ui/signin", &page, &[("username", "ada"), ("password", PASSWORD)]).await;
    let Landed::AtPage(_, page) = follow(&server, &mut browser, resp).await else { panic!("the second factor") };
    assert!(page.contains("Use a passkey") && page.contains("one-time-code"), "{page}");
    let (interaction, csrf) = (hidden(&page, "interaction"), hidden(&page, "csrf_token"));
    let form = [("interaction", interaction.as_str()), ("csrf_token", csrf.as_str())];
    let started: Value = browser.post_form(&server.url("/ui/signin/passkey/start"), &form).await.json().await.unwrap();
    assert_eq!(started["options"]["publicKey"]["allowCredentials"][0]["id"], passkey.credential_id().as_str());
    let credential = passkey.sign_in(&started["options"], &honest).unwrap().to_string();
    let ceremony = started["ceremony_id"].as_str().unwrap().to_string();
    let mut posted = form.to_vec();
    posted.extend([("ceremony", ceremony.as_str()), ("credential", credential.as_str())]);
    let resp = browser.post_form(&server.url("/ui/signin/passkey"), &posted).await;
    let params = at_client(follow(&server, &mut browser, resp).await);
    let tokens: Value =
        crate::code_flow::exchange(&server, &rp, &params["code"], &rp.verifier).await.json().await.unwrap();
    let id_token = crate::code_flow::verify_id_token(&server, tokens["id_token"].as_str().unwrap(), "rp").await;
    assert_eq!(id_token["amr"], json!(["pwd", "swk", "mfa"]));
}

//! RP-Initiated Logout 1.0 at `/oauth2/logout`: an id_token_hint signs out the browser
//! session it names and the relying parties' sessions made through it (offline ones
//! stay), without one only a confirmed form does, and the browser goes back only to a
//! registered URI, with `state`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::header::{LOCATION, SET_COOKIE};
use serde_json::Value;

use crate::code_flow::{Browser, Landed, Rp, SIGNED_OUT, at_page, authorize, code_for, exchange, hidden, register_rp};
use crate::harness::{Fetch, TestServer, backend, user_with_roles};

/// A signed-in browser at `rp`: its tokens (id_token, refresh_token).
async fn signed_in(server: &TestServer, browser: &mut Browser, rp: &Rp, scope: &str) -> (String, String) {
    let extra = [("scope", scope)];
    let landed = authorize(server, browser, rp, &extra).await;
    let code = match landed {
        Landed::AtClient(params) => params["code"].clone(),
        Landed::AtPage(..) => code_for(server, browser, rp, "ada").await,
    };
    let resp = exchange(server, rp, &code, &rp.verifier).await;
    assert_eq!(resp.status(), 200, "on {}", backend());
    let tokens: Value = resp.json().await.unwrap();
    (tokens["id_token"].as_str().unwrap().into(), tokens["refresh_token"].as_str().unwrap().into())
}

fn logout_query(id_token: &str, state: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("id_token_hint", id_token)
        .append_pair("post_logout_redirect_uri", SIGNED_OUT)
        .append_pair("state", state)
        .finish()
}

async fn refresh_status(server: &TestServer, rp: &Rp, refresh_token: &str) -> u16 {
    let form =
        [("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", rp.client_id.as_str())];
    server.post("/oauth2/token").form(&form).sent().await.status().as_u16()
}

/// Whether the browser's session still signs it in at `rp` without a password.
async fn still_signed_in(server: &TestServer, browser: &mut Browser, rp: &Rp) -> bool {
    matches!(authorize(server, browser, rp, &[]).await, Landed::AtClient(_))
}

fn clears_the_session_cookie(resp: &reqwest::Response, name: &str) -> bool {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|cookie| cookie.starts_with(&format!("{name}=;")) && cookie.contains("Max-Age=0"))
}

async fn ready() -> (TestServer, Rp, Rp) {
    let server = TestServer::start().await;
    user_with_roles(&server, "ada", &["user"]).await;
    let wiki = register_rp(&server, "wiki", true, false).await;
    let mail = register_rp(&server, "mail", true, false).await;
    (server, wiki, mail)
}

#[tokio::test]
async fn an_id_token_hint_signs_the_browser_out_and_its_sessions_end_except_offline_ones() {
    let (server, wiki, mail) = ready().await;
    let mut browser = Browser::new();
    let (id_token, wiki_refresh) = signed_in(&server, &mut browser, &wiki, "openid profile").await;
    let (_, mail_offline) = signed_in(&server, &mut browser, &mail, "openid offline_access").await;
    assert!(still_signed_in(&server, &mut browser, &wiki).await);

    // A code issued before the sign-out buys nothing after it.
    let Landed::AtClient(params) = authorize(&server, &mut browser, &wiki, &[]).await else { panic!("signed in") };
    let unredeemed = params["code"].clone();

    // The hint has expired (id_tokens live 5 minutes): it still names the session.
    server.clock.advance(3600);
    let query = logout_query(&id_token, "bye 1");
    let resp = browser.get(&server.url(&format!("/oauth2/logout?{query}"))).await;
    assert_eq!(resp.status(), 303, "on {}", backend());
    assert_eq!(resp.headers()[LOCATION], format!("{SIGNED_OUT}?state=bye+1").as_str());
    assert!(clears_the_session_cookie(&resp, &server.state.config.sso.cookie_name), "{:?}", resp.headers());
    assert_eq!(resp.headers()["cache-control"], "no-store");

    assert_eq!(refresh_status(&server, &wiki, &wiki_refresh).await, 400, "the session made through it ended");
    assert_eq!(refresh_status(&server, &mail, &mail_offline).await, 200, "offline_access outlives the browser");
    let page = at_page(authorize(&server, &mut browser, &wiki, &[]).await);
    assert!(page.contains("current-password"), "signed out: a password is asked again");
    assert_eq!(exchange(&server, &wiki, &unredeemed, &wiki.verifier).await.status(), 400);
    let events = latchkey_server::store::audit::list_recent(&server.state.db, 100).await.unwrap();
    let logout = events.iter().find(|e| e.action == "sso_session.logout").expect("audited");
    let details: Value = serde_json::from_str(&logout.details).unwrap();
    assert_eq!(
        (details["via"].as_str(), details["sessions_ended"].as_u64()),
        (Some("id_token_hint"), Some(1)),
        "wiki's; mail's is offline"
    );

    // The same hint again: nothing left to end, and the browser still goes back.
    let resp = browser.get(&server.url(&format!("/oauth2/logout?{query}"))).await;
    assert_eq!(resp.status(), 303);
    server.stop().await;
}

#[tokio::test]
async fn without_a_hint_a_get_only_asks_and_the_confirmed_form_signs_out() {
    let (server, wiki, _) = ready().await;
    let mut browser = Browser::new();
    signed_in(&server, &mut browser, &wiki, "openid").await;

    // A cross-site link (no hint) asks; it signs nobody out.
    let resp = browser.get(&server.url("/oauth2/logout?client_id=wiki")).await;
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.unwrap();
    assert!(page.contains("Sign out") && page.contains("wiki app"), "{page}");
    assert!(still_signed_in(&server, &mut browser, &wiki).await);

    // A form without the page's token (a cross-site post) is refused.
    let resp = browser.post_form(&server.url("/oauth2/logout"), &[("csrf_token", "forged"), ("confirm", "yes")]).await;
    assert_eq!(resp.status(), 400);
    assert!(still_signed_in(&server, &mut browser, &wiki).await);

    let csrf = hidden(&page, "csrf_token");
    let form = [("csrf_token", csrf.as_str()), ("client_id", "wiki"), ("confirm", "yes")];
    let resp = browser.post_form(&server.url("/oauth2/logout"), &form).await;
    assert_eq!(resp.status(), 200, "no redirect was asked for: the signed-out page");
    assert!(clears_the_session_cookie(&resp, &server.state.config.sso.cookie_name));
    let page = resp.text().await.unwrap();
    assert!(page.contains("signed out"), "{page}");
    assert!(!still_signed_in(&server, &mut browser, &wiki).await);
    server.stop().await;
}

#[tokio::test]
async fn the_browser_goes_back_only_to_a_registered_uri_of_the_hints_client() {
    let (server, wiki, _) = ready().await;
    let mut browser = Browser::new();
    let (id_token, _) = signed_in(&server, &mut browser, &wiki, "openid").await;

    // Not registered: the signed-out page, never a redirect.
    for uri in ["https://evil.example/", &format!("{SIGNED_OUT}/x"), &SIGNED_OUT.to_uppercase()] {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", "wiki")
            .append_pair("post_logout_redirect_uri", uri)
            .finish();
        let resp = Browser::new().get(&server.url(&format!("/oauth2/logout?{query}"))).await;
        assert_eq!(resp.status(), 200, "{uri}");
        assert!(resp.headers().get(LOCATION).is_none(), "{uri}");
    }
    // The hint's client and client_id must agree.
    let query = format!("id_token_hint={id_token}&client_id=mail&post_logout_redirect_uri={SIGNED_OUT}");
    let resp = browser.get(&server.url(&format!("/oauth2/logout?{query}"))).await;
    assert_eq!(resp.status(), 400);
    assert!(still_signed_in(&server, &mut browser, &wiki).await, "a refused request signs nobody out");
    // Nobody signed in here, a registered URI: back at once.
    let resp = Browser::new()
        .get(&server.url(&format!("/oauth2/logout?client_id=wiki&post_logout_redirect_uri={SIGNED_OUT}")))
        .await;
    assert_eq!(resp.status(), 303);
    server.stop().await;
}

/// A hint from another browser session (here another user's) asks; the confirmed form
/// signs out this browser only, and goes back with the hint's client and `state`.
#[tokio::test]
async fn a_hint_from_another_session_asks_and_signs_out_only_this_browser() {
    let (server, wiki, _) = ready().await;
    user_with_roles(&server, "bob", &["user"]).await;
    let (mut ada_browser, mut bob_browser) = (Browser::new(), Browser::new());
    let (ada_token, _) = signed_in(&server, &mut ada_browser, &wiki, "openid").await;
    let page = at_page(authorize(&server, &mut bob_browser, &wiki, &[]).await);
    let resp = bob_browser
        .submit(&server, "/ui/signin", &page, &[("username", "bob"), ("password", crate::harness::PASSWORD)])
        .await;
    assert!(matches!(crate::code_flow::follow(&server, &mut bob_browser, resp).await, Landed::AtClient(_)));

    let resp = bob_browser.get(&server.url(&format!("/oauth2/logout?{}", logout_query(&ada_token, "s2")))).await;
    assert_eq!(resp.status(), 200, "asks on {}", backend());
    let page = resp.text().await.unwrap();
    assert!(still_signed_in(&server, &mut bob_browser, &wiki).await);
    assert!(still_signed_in(&server, &mut ada_browser, &wiki).await, "the hint's own session is another browser's");

    let csrf = hidden(&page, "csrf_token");
    let (client_id, uri, state) =
        (hidden(&page, "client_id"), hidden(&page, "post_logout_redirect_uri"), hidden(&page, "state"));
    assert_eq!((client_id.as_str(), uri.as_str(), state.as_str()), ("wiki", SIGNED_OUT, "s2"));
    let form = [
        ("csrf_token", csrf.as_str()),
        ("client_id", "wiki"),
        ("post_logout_redirect_uri", SIGNED_OUT),
        ("state", "s2"),
    ];
    let resp = bob_browser.post_form(&server.url("/oauth2/logout"), &form).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], format!("{SIGNED_OUT}?state=s2").as_str());
    assert!(!still_signed_in(&server, &mut bob_browser, &wiki).await);
    assert!(still_signed_in(&server, &mut ada_browser, &wiki).await);
    server.stop().await;
}

#[tokio::test]
async fn offline_sessions_end_too_when_configured() {
    let server = TestServer::start_with(|raw| raw.sso.offline_sessions_outlive_browser = false).await;
    user_with_roles(&server, "ada", &["user"]).await;
    let mail = register_rp(&server, "mail", true, false).await;
    let mut browser = Browser::new();
    let (id_token, offline) = signed_in(&server, &mut browser, &mail, "openid offline_access").await;
    let resp = browser.get(&server.url(&format!("/oauth2/logout?{}", logout_query(&id_token, "s")))).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(refresh_status(&server, &mail, &offline).await, 400);
    server.stop().await;
}

/// Ending a browser session from the user's own list ends what it signed in to.
#[tokio::test]
async fn ending_a_browser_session_from_the_list_ends_its_relying_party_sessions() {
    let (server, wiki, _) = ready().await;
    let mut browser = Browser::new();
    let (_, refresh) = signed_in(&server, &mut browser, &wiki, "openid").await;
    let (access, _) = server.login("ada").await;
    let sessions: Value = server.get("/auth/browser-sessions").bearer_auth(&access).fetch_json().await;
    let id = sessions[0]["id"].as_str().unwrap();
    let resp = server.delete(&format!("/auth/browser-sessions/{id}")).bearer_auth(&access).sent().await;
    assert_eq!(resp.status(), 204);
    assert_eq!(refresh_status(&server, &wiki, &refresh).await, 400);
    server.stop().await;
}

#[tokio::test]
async fn a_forged_hint_signs_nobody_out() {
    let (server, wiki, _) = ready().await;
    let mut browser = Browser::new();
    let (id_token, _) = signed_in(&server, &mut browser, &wiki, "openid").await;
    let mut parts: Vec<String> = id_token.split('.').map(str::to_string).collect();
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    claims["sub"] = "someone-else".into();
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let forged = parts.join(".");
    let resp = browser.get(&server.url(&format!("/oauth2/logout?id_token_hint={forged}"))).await;
    assert_eq!(resp.status(), 200, "an unverifiable hint is no hint: the page asks");
    assert!(resp.text().await.unwrap().contains("csrf_token"));
    assert!(still_signed_in(&server, &mut browser, &wiki).await);
    server.stop().await;
}

#[tokio::test]
async fn discovery_names_the_end_session_endpoint() {
    let server = TestServer::start().await;
    let meta: Value = server.get("/.well-known/openid-configuration").fetch_json().await;
    assert_eq!(meta["end_session_endpoint"], format!("{}/oauth2/logout", server.base));
    server.stop().await;
}

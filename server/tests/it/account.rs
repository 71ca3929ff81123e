//! The hosted account page (`/account`): signed in through the hosted sign-in by the
//! browser's login session; the user ends sessions and browsers, revokes consents (which
//! ends that app's sessions), changes the password (every other session ends, this
//! browser stays), sets TOTP up and down, and signs out everywhere. Every form carries
//! a CSRF token only the browser holding the session cookie can compute.

use reqwest::header::LOCATION;
use serde_json::Value;

use crate::code_flow::{Browser, Landed, at_client, at_page, authorize, code_for, consent, exchange, follow, hidden};
use crate::code_flow::{register_rp, sign_in};
use crate::harness::{Fetch, PASSWORD, TestServer, backend, user_with_roles};

/// The account page of `browser`, signing in as `username` first when it has to.
pub async fn open_account(server: &TestServer, browser: &mut Browser, username: &str) -> String {
    let resp = browser.get(&server.url("/account")).await;
    match follow(server, browser, resp).await {
        Landed::AtPage(url, page) if page.contains("current-password") && url.contains("/ui/signin") => {
            let landed = sign_in(server, browser, &page, username).await;
            let Landed::AtPage(url, page) = landed else { panic!("back at the account page") };
            assert!(url.ends_with("/account"), "the code is dropped from the address: {url}");
            page
        }
        Landed::AtPage(_, page) => page,
        Landed::AtClient(params) => panic!("went to a client: {params:?}"),
    }
}

/// Posts one of the account page's forms (with its CSRF token) and follows the redirect.
pub async fn post(
    server: &TestServer,
    browser: &mut Browser,
    page: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> String {
    let csrf = hidden(page, "csrf_token");
    let mut form = vec![("csrf_token", csrf.as_str())];
    form.extend_from_slice(fields);
    let resp = browser.post_form(&server.url(path), &form).await;
    at_page(follow(server, browser, resp).await)
}

/// The value of the hidden `name` field in the form that posts to `action`, after `after`.
fn field_after(page: &str, after: &str, name: &str) -> String {
    let start = page.find(after).unwrap_or_else(|| panic!("no {after} in {page}"));
    hidden(&page[start..], name)
}

#[tokio::test]
async fn the_account_page_signs_in_through_the_hosted_pages_and_shows_the_account() {
    let server = TestServer::start().await;
    user_with_roles(&server, "ada", &["user"]).await;
    let mut browser = Browser::new();
    let first = browser.get(&server.url("/account")).await;
    assert_eq!(first.status(), 303);
    let to = first.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(to.starts_with("/oauth2/authorize?client_id=latchkey-account&"), "{to}");
    assert!(to.contains("code_challenge_method=S256"));

    let resp = browser.get(&server.url("/account")).await;
    let Landed::AtPage(_, page) = follow(&server, &mut browser, resp).await else { panic!("the sign-in page") };
    assert!(page.contains("Your account"), "the sign-in names the account page: {page}");
    let resp = browser.submit(&server, "/ui/signin", &page, &[("username", "ada"), ("password", PASSWORD)]).await;
    let Landed::AtPage(url, page) = follow(&server, &mut browser, resp).await else { panic!("the account page") };
    assert!(url.ends_with("/account"), "{url}");
    assert!(page.contains("Signed in as <strong>ada</strong>"), "{page}");
    assert!(page.contains("this device"));
    assert!(page.contains("You have not allowed any application."));

    let resp = browser.get(&server.url("/account")).await;
    assert_eq!(resp.status(), 200, "on {}", backend());
    let headers = resp.headers();
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-frame-options"], "DENY");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("form-action 'self';"), "{csp}");
    // The account page's client is built in: it cannot be deleted.
    let operator = latchkey_server::domain::rbac::Grantor::operator("test");
    let refused = latchkey_server::domain::clients::delete(&server.state, "latchkey-account", &operator).await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn every_form_needs_the_browsers_own_csrf_token() {
    let server = TestServer::start().await;
    user_with_roles(&server, "ada", &["user"]).await;
    let mut browser = Browser::new();
    let page = open_account(&server, &mut browser, "ada").await;
    let own = field_after(&page, "/account/browser-sessions/end", "id");
    let posts = ["/account/browser-sessions/end", "/account/sessions/end", "/account/consents/revoke"];
    let more = ["/account/password", "/account/sign-out-everywhere", "/account/totp/setup", "/account/totp/confirm"];
    for path in posts.iter().chain(&more).chain(&["/account/totp/disable", "/account/totp/recovery-codes"]) {
        for csrf in [None, Some("forged")] {
            let mut form = vec![("id", own.as_str()), ("password", PASSWORD), ("current_password", PASSWORD)];
            if let Some(token) = csrf {
                form.push(("csrf_token", token));
            }
            let resp = browser.post_form(&server.url(path), &form).await;
            assert_eq!(resp.status(), 400, "{path} without its token is refused");
            assert!(resp.text().await.unwrap().contains("security token"), "{path}");
        }
    }
    // Another browser's token does not work here either.
    let mut other = Browser::new();
    user_with_roles(&server, "bob", &["user"]).await;
    let bobs = open_account(&server, &mut other, "bob").await;
    let form = [("csrf_token", hidden(&bobs, "csrf_token")), ("id", own.clone())];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(browser.post_form(&server.url("/account/browser-sessions/end"), &form).await.status(), 400);
    // A cross-site post carries no cookie: it is sent to sign in, and ends nothing.
    let resp = Browser::new().post_form(&server.url("/account/sign-out-everywhere"), &[("csrf_token", "x")]).await;
    assert_eq!(resp.status(), 303);
    assert!(open_account(&server, &mut browser, "ada").await.contains("this device"), "still signed in");
}

#[tokio::test]
async fn app_sessions_and_consents_are_ended_and_revoked_from_the_page() {
    let server = TestServer::start().await;
    user_with_roles(&server, "ada", &["user"]).await;
    let rp = register_rp(&server, "grafana", false, false).await;
    let mut browser = Browser::new();
    let page = open_account(&server, &mut browser, "ada").await;
    assert!(!page.contains("grafana app"), "(only the SPA session of the login above)");
    // Signed in to a third party through the same browser: consent, then a code.
    let landed = authorize(&server, &mut browser, &rp, &[]).await;
    let code = at_client(consent(&server, &mut browser, &at_page(landed), "allow").await)["code"].clone();
    let tokens: Value = exchange(&server, &rp, &code, &rp.verifier).await.json().await.unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let form = |token: &str| {
        [
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", token.to_string()),
            ("client_id", "grafana".into()),
        ]
    };

    let page = open_account(&server, &mut browser, "ada").await;
    assert!(page.contains("grafana app"), "the session and the consent are listed: {page}");
    let listed = &page[page.find("<strong>grafana app</strong>").expect("grafana's session is listed")..];
    let session = field_after(listed, "/account/sessions/end", "id");
    let page = post(&server, &mut browser, &page, "/account/sessions/end", &[("id", &session)]).await;
    assert!(page.contains("That session has ended."), "{page}");
    assert_eq!(server.post("/oauth2/token").form(&form(&refresh)).sent().await.status(), 400, "its tokens died");

    // A second session there; revoking the consent ends it too, and the app asks again.
    let code = code_for(&server, &mut browser, &rp, "ada").await;
    let tokens: Value = exchange(&server, &rp, &code, &rp.verifier).await.json().await.unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let page = open_account(&server, &mut browser, "ada").await;
    let page = post(&server, &mut browser, &page, "/account/consents/revoke", &[("client_id", "grafana")]).await;
    assert!(page.contains("Access revoked"), "{page}");
    assert!(page.contains("You have not allowed any application."));
    assert_eq!(server.post("/oauth2/token").form(&form(&refresh)).sent().await.status(), 400);
    let asked = at_page(authorize(&server, &mut browser, &rp, &[]).await);
    assert!(asked.contains("Allow access?"), "consent is asked again");
    let page = post(&server, &mut browser, &page, "/account/consents/revoke", &[("client_id", "grafana")]).await;
    assert!(page.contains("That was no longer there."), "a second revocation says so: {page}");
}

#[tokio::test]
async fn changing_the_password_ends_every_other_session_and_keeps_this_browser() {
    let server = TestServer::start().await;
    user_with_roles(&server, "ada", &["user"]).await;
    let mut browser = Browser::new();
    let mut laptop = Browser::new();
    open_account(&server, &mut laptop, "ada").await;
    let (_, spa_cookie) = server.login("ada").await;
    let page = open_account(&server, &mut browser, "ada").await;
    assert_eq!(page.matches("/account/browser-sessions/end").count(), 2, "two browsers are listed");

    let wrong = [("current_password", "not it"), ("new_password", "a brand new passphrase")];
    let page = post(&server, &mut browser, &page, "/account/password", &wrong).await;
    assert!(page.contains("That password is not right."), "{page}");
    let short = [("current_password", PASSWORD), ("new_password", "short")];
    let page = post(&server, &mut browser, &page, "/account/password", &short).await;
    assert!(page.contains("too short"), "{page}");
    let old_cookie = browser.cookies["lk_sso"].clone();
    let good = [("current_password", PASSWORD), ("new_password", "a brand new passphrase")];
    let page = post(&server, &mut browser, &page, "/account/password", &good).await;
    assert!(page.contains("Your password is changed."), "{page}");
    assert_eq!(page.matches("/account/browser-sessions/end").count(), 1, "only this browser is left");

    assert_eq!(server.refresh(&spa_cookie).await.status(), 401, "the SPA session ended");
    let resp = laptop.get(&server.url("/account")).await;
    assert_eq!(resp.status(), 303, "the other browser is signed out");
    assert!(resp.headers()[LOCATION].to_str().unwrap().starts_with("/oauth2/authorize"));
    assert!(open_account(&server, &mut browser, "ada").await.contains("this device"), "this one is not");
    // This browser has a new cookie: the one it had before the change is worth nothing.
    let mut thief = Browser::new();
    thief.cookies.insert("lk_sso".into(), old_cookie);
    assert_eq!(thief.get(&server.url("/account")).await.status(), 303, "the old cookie no longer signs in");
    let login = server
        .spa_post("/auth/login")
        .json(&serde_json::json!({"username": "ada", "password": "a brand new passphrase"}))
        .sent()
        .await;
    assert_eq!(login.status(), 200, "the new password works");
}

#[tokio::test]
async fn totp_is_set_up_with_a_code_from_the_qr_secret_and_turned_off_again() {
    let server = TestServer::start().await;
    user_with_roles(&server, "ada", &["user"]).await;
    let mut browser = Browser::new();
    let page = open_account(&server, &mut browser, "ada").await;
    assert!(page.contains("Set up two-step verification"));
    let csrf = hidden(&page, "csrf_token");
    let resp = browser
        .post_form(&server.url("/account/totp/setup"), &[("csrf_token", csrf.as_str()), ("password", PASSWORD)])
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let setup = resp.text().await.unwrap();
    assert!(setup.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""), "the QR code is inline SVG: {setup}");
    let start = setup.find("<code class=\"secret\">").unwrap() + "<code class=\"secret\">".len();
    let secret = &setup[start..start + setup[start..].find('<').unwrap()];
    let uri = format!("otpauth://totp/Latchkey:ada?secret={secret}&issuer=Latchkey");
    let totp = totp_rs::Totp::from_url(&uri).unwrap();

    // A mistyped code shows the same set-up again: the entry already scanned still works.
    let wrong_code =
        if totp.generate(server.clock.now_secs() as u64).to_string() == "000000" { "111111" } else { "000000" };
    let wrong = [("csrf_token", csrf.as_str()), ("code", wrong_code)];
    let resp = browser.post_form(&server.url("/account/totp/confirm"), &wrong).await;
    assert_eq!(resp.status(), 200);
    let again = resp.text().await.unwrap();
    assert!(again.contains("That code is not right."), "{again}");
    assert!(again.contains(&format!("<code class=\"secret\">{secret}</code>")), "the same key");
    let code = totp.generate(server.clock.now_secs() as u64).to_string();
    let resp = browser
        .post_form(&server.url("/account/totp/confirm"), &[("csrf_token", csrf.as_str()), ("code", &code)])
        .await;
    assert_eq!(resp.status(), 200);
    let codes = resp.text().await.unwrap();
    assert_eq!(codes.matches("<li><code>").count(), 10, "ten recovery codes, shown once: {codes}");
    let page = open_account(&server, &mut browser, "ada").await;
    assert!(page.contains("On: signing in asks for a code"), "{page}");

    // New recovery codes need the password; turning it off needs a newer code.
    let resp = browser
        .post_form(
            &server.url("/account/totp/recovery-codes"),
            &[("csrf_token", csrf.as_str()), ("password", PASSWORD)],
        )
        .await;
    let fresh = resp.text().await.unwrap();
    assert_eq!(fresh.matches("<li><code>").count(), 10);
    assert_ne!(fresh, codes, "other codes");
    server.clock.advance(30);
    let code = totp.generate(server.clock.now_secs() as u64).to_string();
    let off = [("password", PASSWORD), ("code", code.as_str())];
    let page = post(&server, &mut browser, &page, "/account/totp/disable", &off).await;
    assert!(page.contains("Two-step verification is off."), "{page}");
    assert!(page.contains("Set up two-step verification"));
    let actions: Vec<String> = server.audit_actions().await.into_iter().map(|(a, _)| a).collect();
    for action in ["totp.enable", "totp.recovery_codes", "totp.disable"] {
        assert!(actions.iter().any(|a| a == action), "{action} audited: {actions:?}");
    }
}

#[tokio::test]
async fn signing_out_everywhere_ends_every_session_and_clears_the_cookie() {
    let server = TestServer::start().await;
    user_with_roles(&server, "ada", &["user"]).await;
    let mut browser = Browser::new();
    let mut laptop = Browser::new();
    open_account(&server, &mut laptop, "ada").await;
    let (_, spa_cookie) = server.login("ada").await;
    // A code issued and not yet redeemed (a thief with the cookie could have asked for it).
    let wiki = register_rp(&server, "wiki", true, false).await;
    let Landed::AtClient(params) = authorize(&server, &mut laptop, &wiki, &[]).await else { panic!("a code") };
    let page = open_account(&server, &mut browser, "ada").await;
    let csrf = hidden(&page, "csrf_token");
    let resp = browser.post_form(&server.url("/account/sign-out-everywhere"), &[("csrf_token", &csrf)]).await;
    assert_eq!(resp.status(), 200);
    let cleared = resp.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with("lk_sso=;"));
    assert!(cleared, "the browser's cookie is cleared");
    assert!(resp.text().await.unwrap().contains("You are signed out"));
    assert_eq!(server.refresh(&spa_cookie).await.status(), 401);
    for b in [&mut browser, &mut laptop] {
        assert_eq!(b.get(&server.url("/account")).await.status(), 303, "signed out");
    }
    let late: Value = exchange(&server, &wiki, &params["code"], &wiki.verifier).await.json().await.unwrap();
    assert_eq!(late["error"], "invalid_grant", "the code buys nothing after signing out everywhere");
}

#[tokio::test]
async fn the_account_pages_client_is_managed_by_the_server() {
    let server = TestServer::start().await;
    let admin = user_with_roles(&server, "root", &["admin"]).await.1;
    let (status, client) =
        crate::harness::call(&server, &admin, reqwest::Method::GET, "/admin/clients/latchkey-account", None).await;
    assert_eq!(status, 200);
    assert_eq!(client["redirect_uris"], serde_json::json!([format!("{}/account", server.base)]));
    let patch = serde_json::json!({"redirect_uris": ["https://evil.example/cb"]});
    let (status, error) =
        crate::harness::call(&server, &admin, reqwest::Method::PATCH, "/admin/clients/latchkey-account", Some(patch))
            .await;
    assert_eq!((status, error["error"].as_str()), (409, Some("builtin_client")), "{error}");
    let (status, _) =
        crate::harness::call(&server, &admin, reqwest::Method::DELETE, "/admin/clients/latchkey-account", None).await;
    assert_eq!(status, 409);
}

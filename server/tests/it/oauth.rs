//! `/oauth2/*`: RFC 6749 error shapes, the password / refresh_token / client_credentials
//! grants, revocation (RFC 7009), introspection (RFC 7662) and userinfo.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::harness::{Fetch, PASSWORD, TestServer, backend};

async fn token(
    server: &TestServer,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = server.post("/oauth2/token").form(form);
    if let Some((id, secret)) = basic {
        req = req.header("authorization", format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))));
    }
    let resp = req.sent().await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.json().await.unwrap(), headers)
}

#[tokio::test]
async fn token_endpoint_errors_have_rfc6749_shapes() {
    let server = TestServer::start().await;
    server.register("liam").await;
    let secret = server.create_client("svc", true, &["client_credentials"], &["user"]).await.unwrap();

    let long_grant = "g".repeat(65);
    let long_password = "p".repeat(1025);
    type Case<'a> = (Option<(&'a str, &'a str)>, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        // RFC 6749 §3.1: a parameter sent twice is refused; the document's limits hold.
        (
            Some(("svc", secret.as_str())),
            vec![("grant_type", "client_credentials"), ("grant_type", "password")],
            400,
            "invalid_request",
        ),
        (Some(("svc", secret.as_str())), vec![("grant_type", &long_grant)], 400, "invalid_request"),
        (
            None,
            vec![
                ("grant_type", "password"),
                ("client_id", "latchkey-admin"),
                ("username", "liam"),
                ("password", &long_password),
            ],
            400,
            "invalid_request",
        ),
        (None, vec![("client_id", "latchkey-admin")], 400, "invalid_request"),
        (
            None,
            vec![("grant_type", "urn:ietf:params:oauth:grant-type:device_code"), ("client_id", "spa")],
            400,
            "unsupported_grant_type",
        ),
        (None, vec![("grant_type", "authorization_code"), ("client_id", "spa")], 400, "unauthorized_client"),
        (
            None,
            vec![("grant_type", "password"), ("client_id", "nope"), ("username", "liam"), ("password", PASSWORD)],
            401,
            "invalid_client",
        ),
        (Some(("svc", "wrong")), vec![("grant_type", "client_credentials")], 401, "invalid_client"),
        (None, vec![("grant_type", "client_credentials"), ("client_id", "svc")], 401, "invalid_client"),
        (
            None,
            vec![("grant_type", "password"), ("client_id", "spa"), ("username", "liam"), ("password", PASSWORD)],
            400,
            "unauthorized_client",
        ),
        (
            None,
            vec![
                ("grant_type", "password"),
                ("client_id", "latchkey-admin"),
                ("username", "liam"),
                ("password", "wrong password"),
            ],
            400,
            "invalid_grant",
        ),
        (
            None,
            vec![("grant_type", "password"), ("client_id", "latchkey-admin"), ("username", "liam")],
            400,
            "invalid_request",
        ),
        (
            None,
            vec![
                ("grant_type", "password"),
                ("client_id", "latchkey-admin"),
                ("username", "liam"),
                ("password", PASSWORD),
                ("scope", "admin:everything"),
            ],
            400,
            "invalid_scope",
        ),
        (None, vec![("grant_type", "refresh_token"), ("client_id", "latchkey-admin")], 400, "invalid_request"),
        (
            None,
            vec![("grant_type", "refresh_token"), ("client_id", "latchkey-admin"), ("refresh_token", "lk_rt_unknown")],
            400,
            "invalid_grant",
        ),
        (
            Some(("svc", secret.as_str())),
            vec![("grant_type", "client_credentials"), ("client_secret", "also-in-body")],
            400,
            "invalid_request",
        ),
        (None, vec![("grant_type", "client_credentials"), ("client_id", "latchkey-admin")], 400, "unauthorized_client"),
    ];
    // RFC 6749 §3.1: a parameter without a value is as if omitted, so an empty secret in
    // the body beside Basic credentials is not a second authentication method.
    let (status, body, _) =
        token(&server, Some(("svc", &secret)), &[("grant_type", "client_credentials"), ("client_secret", "")]).await;
    assert_eq!(status, 200, "{body}");
    for (basic, form, status, code) in cases {
        let (got, body, headers) = token(&server, basic, &form).await;
        assert_eq!(got, status, "{form:?} on {}: {body}", backend());
        assert_eq!(body["error"], code, "{form:?}: {body}");
        assert!(body["error_description"].is_string());
        if status == 401 {
            assert!(headers.get("www-authenticate").is_some(), "invalid_client carries a challenge");
        }
        assert_eq!(headers.get("cache-control").map(|v| v.to_str().unwrap()), Some("no-store"), "{form:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn password_and_refresh_grants_for_the_admin_console() {
    let server = TestServer::start().await;
    server.register("mia").await;
    let (status, body, headers) = token(
        &server,
        None,
        &[("grant_type", "password"), ("client_id", "latchkey-admin"), ("username", "MIA"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["token_type"], "Bearer");
    let refresh = body["refresh_token"].as_str().unwrap().to_string();
    assert!(refresh.starts_with("lk_rt_"));

    let (status, rotated, _) = token(
        &server,
        None,
        &[("grant_type", "refresh_token"), ("client_id", "latchkey-admin"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(status, 200);
    assert_ne!(rotated["refresh_token"], body["refresh_token"]);

    // A refresh token of one client is worthless to another (same answer as unknown).
    let (status, err, _) = token(
        &server,
        None,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "spa"),
            ("refresh_token", rotated["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"], "invalid_grant");
    server.stop().await;
}

#[tokio::test]
async fn client_credentials_introspection_revocation_and_userinfo() {
    let server = TestServer::start().await;
    let secret = server.create_client("billing-svc", true, &["client_credentials"], &["user"]).await.unwrap();
    assert!(secret.starts_with("lk_cs_"));

    // client_secret_basic
    let (status, body, _) =
        token(&server, Some(("billing-svc", &secret)), &[("grant_type", "client_credentials"), ("scope", "billing")])
            .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("refresh_token").is_none(), "no refresh token for services");
    let service_token = body["access_token"].as_str().unwrap().to_string();
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(&service_token).unwrap().claims;
    assert_eq!(claims["sub"], "billing-svc");
    assert_eq!(claims["roles"], serde_json::json!(["user"]));
    assert_eq!(claims["scope"], "billing");
    assert!(claims.get("sid").is_none());

    // client_secret_post works too.
    let (status, _, _) = token(
        &server,
        None,
        &[("grant_type", "client_credentials"), ("client_id", "billing-svc"), ("client_secret", &secret)],
    )
    .await;
    assert_eq!(status, 200);

    // A user session to introspect and revoke.
    let (user_access, cookie) = server.signed_in("noah").await;

    let introspect = |token: String| {
        server.post("/oauth2/introspect").basic_auth("billing-svc", Some(&secret)).form(&[("token", token)]).send()
    };
    let active: Value = introspect(user_access.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(active["active"], true);
    assert_eq!(active["username"], "noah");
    assert_eq!(active["client_id"], "spa");
    let refresh_info: Value = introspect(cookie.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(refresh_info["active"], true);
    assert_eq!(refresh_info["token_type"], "refresh_token");
    let junk: Value = introspect("garbage".into()).await.unwrap().json().await.unwrap();
    assert_eq!(junk, serde_json::json!({"active": false}));

    // Public clients may not introspect.
    let public = server
        .post("/oauth2/introspect")
        .form(&[("token", &user_access), ("client_id", &"spa".to_string())])
        .sent()
        .await;
    assert_eq!(public.status(), 401);

    // Userinfo for the user token; a service token has no user.
    let info: Value = server.get("/oauth2/userinfo").bearer_auth(&user_access).fetch_json().await;
    assert_eq!(info["preferred_username"], "noah");
    let no_user = server.get("/oauth2/userinfo").bearer_auth(&service_token).sent().await;
    assert_eq!(no_user.status(), 401);

    // RFC 7009: unknown tokens answer 200; revoking the access token ends its session.
    let revoke = |token: String, client: &'static str| {
        server.post("/oauth2/revoke").form(&[("token", token), ("client_id", client.to_string())]).send()
    };
    assert_eq!(revoke("lk_rt_doesnotexist".into(), "spa").await.unwrap().status(), 200);
    assert_eq!(revoke(user_access.clone(), "latchkey-admin").await.unwrap().status(), 200);
    assert_eq!(server.me(&user_access).await.status(), 200, "another client cannot revoke it");
    assert_eq!(revoke(user_access.clone(), "spa").await.unwrap().status(), 200);
    assert_eq!(server.me(&user_access).await.status(), 401);
    assert_eq!(server.refresh(&cookie).await.status(), 401);
    let inactive: Value = introspect(user_access).await.unwrap().json().await.unwrap();
    assert_eq!(inactive["active"], false);

    // Revoking a refresh token ends its session.
    let (access2, cookie2) = server.login("noah").await;
    assert_eq!(revoke(cookie2.clone(), "spa").await.unwrap().status(), 200);
    assert_eq!(server.refresh(&cookie2).await.status(), 401);
    assert_eq!(server.me(&access2).await.status(), 401);
    server.stop().await;
}

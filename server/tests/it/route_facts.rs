//! The facts each operation declares in its signature (`api::route_facts`) hold for
//! every operation that declares them: the cookie endpoints take the CSRF check before
//! the body is read, and every charged operation spends its bucket before anything
//! else (so a refused request is refused whatever it carries).

use latchkey_server::config::Quota;
use reqwest::Method;
use serde_json::Value;

use crate::harness::{Fetch, TestServer, backend};

/// (method, path, form body?) of every operation charged to a per-IP bucket, with the
/// bucket it is charged to; the bodies are invalid on purpose.
const CHARGED: &[(&str, &str, bool, &str)] = &[
    ("POST", "/auth/register", false, "register"),
    ("POST", "/auth/login", false, "login"),
    ("POST", "/auth/login/mfa", false, "login"),
    ("POST", "/auth/totp/setup", false, "totp"),
    ("POST", "/auth/totp/confirm", false, "totp"),
    ("DELETE", "/auth/totp", false, "totp"),
    ("POST", "/auth/totp/recovery-codes", false, "totp"),
    ("POST", "/auth/password", false, "password_change"),
    ("POST", "/auth/refresh", false, "refresh"),
    ("POST", "/oauth2/revoke", true, "token"),
    ("POST", "/oauth2/introspect", true, "token"),
    ("POST", "/oauth2/token", true, "token"),
];

const COOKIE_ENDPOINTS: &[&str] = &["/auth/login", "/auth/login/mfa", "/auth/refresh", "/auth/logout"];

async fn send(server: &TestServer, method: &str, path: &str, form: bool, with_csrf_header: bool) -> (u16, Value) {
    let mut request = server.http.request(Method::from_bytes(method.as_bytes()).unwrap(), server.url(path));
    request = if form {
        request.header("content-type", "application/x-www-form-urlencoded").body("grant_type=client_credentials")
    } else {
        request.header("content-type", "application/json").body("{not json")
    };
    if with_csrf_header {
        request = request.header("x-requested-with", "latchkey");
    }
    let response = request.sent().await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_cookie_endpoint_refuses_a_request_without_the_csrf_header_before_reading_its_body() {
    let server = TestServer::start().await;
    for path in COOKIE_ENDPOINTS {
        let (status, body) = send(&server, "POST", path, false, false).await;
        assert_eq!((status, body["error"].as_str()), (403, Some("csrf_check_failed")), "{path} on {}", backend());
        let (status, body) = send(&server, "POST", path, false, true).await;
        assert_ne!(body["error"].as_str(), Some("csrf_check_failed"), "{path} with the header: {status}");
    }
    server.stop().await;
}

#[tokio::test]
async fn every_charged_operation_spends_its_bucket_before_anything_else() {
    let server = TestServer::start_with(|raw| crate::harness::set_ip_quotas(raw, Quota::new(1, 1))).await;
    for (method, path, form, bucket) in CHARGED {
        // One token per bucket: the second request at the latest is refused (earlier
        // when an operation before it spent the same bucket).
        let mut refused = None;
        for _ in 0..2 {
            let (status, body) = send(&server, method, path, *form, true).await;
            if status == 429 {
                refused = Some(body);
                break;
            }
        }
        let body = refused.unwrap_or_else(|| panic!("{method} {path} is not charged on {}", backend()));
        assert_eq!(body["error"], "rate_limited", "{method} {path}");
        let metrics = server.get("/metrics").sent().await.text().await.unwrap();
        let counted = format!("latchkey_rate_limited_total{{bucket=\"{bucket}\"}}");
        assert!(metrics.contains(&counted), "{method} {path} counts under {bucket}");
    }
    // Logout is a cookie endpoint but spends no bucket.
    for _ in 0..3 {
        assert_eq!(send(&server, "POST", "/auth/logout", false, true).await.0, 204);
    }
    server.stop().await;
}

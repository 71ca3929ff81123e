//! The committed OpenAPI document must equal what the code generates.

#[test]
fn committed_spec_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json");
    let generated = latchkey_server::api::spec_json();
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is out of date. Regenerate it with:\n    \
         cargo run -p latchkey-server -- openapi > openapi/openapi.json"
    );
}

/// What the document promises about answers every operation can give, checked over
/// real HTTP: a 405 names the methods the path takes (RFC 9110 §15.5.6), exactly the
/// document's; a body-less request to an operation that takes a body is a JSON 415 the
/// document lists for it; a request that identifies no client is `invalid_client` (401).
mod contract {
    use serde_json::Value;

    use crate::harness::{Fetch, TestServer, assert_error};

    fn document() -> Value {
        serde_json::from_str(&latchkey_server::api::spec_json()).unwrap()
    }

    #[tokio::test]
    async fn every_405_carries_allow_with_the_documented_methods() {
        let server = TestServer::start().await;
        let spec = document();
        let paths = spec["paths"].as_object().unwrap();
        for (template, operations) in paths {
            let path: String = template
                .split('/')
                .map(|segment| if segment.starts_with('{') { "an-id" } else { segment })
                .collect::<Vec<_>>()
                .join("/");
            let mut documented: Vec<String> =
                operations.as_object().unwrap().keys().map(|m| m.to_uppercase()).collect();
            if documented.iter().any(|m| m == "GET") {
                documented.push("HEAD".into());
            }
            documented.sort();
            let resp = server.http.request(reqwest::Method::TRACE, server.url(&path)).sent().await;
            assert_eq!(resp.status(), 405, "TRACE {path}");
            let allow = resp.headers().get("allow").map(|v| v.to_str().unwrap().to_string());
            assert_eq!(allow, Some(documented.join(", ")), "Allow on TRACE {path}");
            assert_eq!(resp.json::<Value>().await.unwrap()["error"], "method_not_allowed");
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn every_operation_with_a_body_documents_413_and_415_and_a_bodyless_request_gets_a_json_415() {
        let spec = document();
        for (path, operations) in spec["paths"].as_object().unwrap() {
            for (method, operation) in operations.as_object().unwrap() {
                if operation.get("requestBody").is_none() {
                    continue;
                }
                for status in ["413", "415"] {
                    assert!(operation["responses"].get(status).is_some(), "{method} {path} documents {status}");
                }
            }
        }
        let server = TestServer::start().await;
        let (access, _) = server.signed_in("nobody").await;
        let resp = server.post("/auth/totp/setup").bearer_auth(&access).sent().await;
        assert_error(resp, 415, "unsupported_media_type").await;
        server.stop().await;
    }

    #[tokio::test]
    async fn a_request_that_identifies_no_client_is_invalid_client() {
        let server = TestServer::start().await;
        for (path, form) in [
            ("/oauth2/token", vec![("grant_type", "client_credentials")]),
            ("/oauth2/revoke", vec![("token", "whatever")]),
            ("/oauth2/introspect", vec![("token", "whatever")]),
        ] {
            let resp = server.post(path).form(&form).sent().await;
            assert_eq!(resp.status(), 401, "{path}");
            assert!(resp.headers().get("www-authenticate").is_some(), "{path} challenges");
            assert_error(resp, 401, "invalid_client").await;
        }
        server.stop().await;
    }

    /// Generators turn the order of properties into the order of constructor and method
    /// parameters, so finishing the document must keep the order the code declares.
    #[test]
    fn the_finished_document_keeps_the_declared_order_of_properties() {
        let spec = document();
        let names = |schema: &str| -> Vec<String> {
            spec["components"]["schemas"][schema]["properties"].as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(names("RegisterRequest"), ["username", "password", "email"]);
        assert_eq!(names("ErrorBody"), ["error", "error_description"]);
        let token_form = &spec["paths"]["/oauth2/token"]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
            ["schema"];
        let token_form = token_form["$ref"].as_str().and_then(|r| r.rsplit('/').next()).unwrap();
        assert_eq!(names(token_form).first().map(String::as_str), Some("grant_type"));
    }

    #[tokio::test]
    async fn a_json_body_is_held_to_the_documents_types_and_the_docs_show_that_document() {
        let server = TestServer::start().await;
        let (_, admin) = crate::harness::user_with_roles(&server, "root", &["admin"]).await;
        for (body, problem) in [
            (serde_json::json!({"name": false}), "`name` must be a string"),
            (serde_json::json!({"name": "auditors", "permissions": ["a:b", 3]}), "`permissions.1` must be a string"),
            (serde_json::json!({"name": null}), "`name` must not be null"),
        ] {
            let resp = server.post("/admin/roles").bearer_auth(&admin).json(&body).sent().await;
            assert_eq!(resp.status(), 400, "{body}");
            let error: Value = resp.json().await.unwrap();
            assert_eq!(
                (error["error"].as_str(), error["error_description"].as_str()),
                (Some("invalid_request"), Some(problem))
            );
        }
        // The refusal reaches a browser app: it carries the CORS answer.
        let resp = server
            .post("/auth/register")
            .header("origin", crate::harness::SPA_ORIGIN)
            .json(&serde_json::json!({"username": 7, "password": "long enough pw"}))
            .sent()
            .await;
        assert_eq!(resp.status(), 400);
        assert_eq!(resp.headers()["access-control-allow-origin"], crate::harness::SPA_ORIGIN);

        // An optional property may be null ("not given"), as the document says.
        let resp = server
            .post("/admin/roles")
            .bearer_auth(&admin)
            .json(&serde_json::json!({"name": "auditors", "description": null, "permissions": null}))
            .sent()
            .await;
        assert_eq!(resp.status(), 201);
        assert_eq!(
            document()["components"]["schemas"]["CreateRoleRequest"]["properties"]["description"]["nullable"],
            true
        );

        let served: Value = server.get("/openapi.json").fetch_json().await;
        assert_eq!(served, document(), "the served document is the committed one");
        let docs = server.get("/docs").sent().await.text().await.unwrap();
        assert!(docs.contains(latchkey_server::api::spec_json().trim_end()), "the UI shows the served document");
        server.stop().await;
    }
}

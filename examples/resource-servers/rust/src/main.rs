//! A resource server for Latchkey's access tokens (RFC 9068), with axum and jsonwebtoken.
//! `GET /reports` needs a bearer token that is RS256-signed by a key in Latchkey's JWKS
//! (found through the issuer's discovery document, cached, fetched again on an unknown
//! `kid` at most once a second), has `typ` at+jwt, `iss` == ISSUER, `aud` == AUDIENCE and
//! a live `exp` (else 401), and whose flat `roles` claim holds "reports-reader" (else 403).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::RwLock;

const REFETCH_COOL_DOWN: Duration = Duration::from_secs(1);

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
}

/// The issuer's JWKS, re-read when a token names a `kid` it does not hold.
struct Keys {
    jwks_uri: String,
    http: reqwest::Client,
    cached: RwLock<(JwkSet, Instant)>,
}

impl Keys {
    async fn fetch(&self) -> Result<JwkSet, reqwest::Error> {
        self.http.get(&self.jwks_uri).send().await?.error_for_status()?.json().await
    }

    async fn key_for(&self, kid: &str) -> Option<DecodingKey> {
        if let Some(jwk) = self.cached.read().await.0.find(kid) {
            return DecodingKey::from_jwk(jwk).ok();
        }
        let mut cached = self.cached.write().await;
        if cached.1.elapsed() >= REFETCH_COOL_DOWN
            && let Ok(fresh) = self.fetch().await
        {
            *cached = (fresh, Instant::now());
        }
        cached.0.find(kid).and_then(|jwk| DecodingKey::from_jwk(jwk).ok())
    }
}

struct App {
    keys: Keys,
    validation: Validation,
}

fn unauthorized(why: &str) -> Response {
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], Json(json!({"error": why}))).into_response()
}

async fn reports(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let Some(token) = bearer.and_then(|v| v.strip_prefix("Bearer ")) else { return unauthorized("missing token") };
    let Ok(head) = decode_header(token) else { return unauthorized("malformed token") };
    // RFC 9068 §4: an access token's type is at+jwt; an id_token or other JWT is not one.
    if !head.typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("at+jwt")) {
        return unauthorized("typ is not at+jwt");
    }
    let Some(kid) = head.kid else { return unauthorized("no kid") };
    let Some(key) = app.keys.key_for(&kid).await else { return unauthorized("unknown kid") };
    let claims = match decode::<Claims>(token, &key, &app.validation) {
        Ok(data) => data.claims,
        Err(e) => return unauthorized(&format!("invalid token: {e}")),
    };
    if !claims.roles.iter().any(|r| r == "reports-reader") {
        return (StatusCode::FORBIDDEN, Json(json!({"error": "needs the role reports-reader"}))).into_response();
    }
    Json(json!({"reports": [{"id": 1, "title": "Quarterly logins"}], "sub": claims.sub})).into_response()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let issuer = std::env::var("ISSUER").map_err(|_| "set ISSUER, e.g. http://127.0.0.1:8080")?;
    let audience = std::env::var("AUDIENCE").unwrap_or_else(|_| "latchkey".into());
    let port: u16 = std::env::var("PORT").unwrap_or_else(|_| "3000".into()).parse()?;
    let http = reqwest::Client::new();
    let discovery: serde_json::Value =
        http.get(format!("{issuer}/.well-known/openid-configuration")).send().await?.json().await?;
    if discovery["issuer"] != issuer.as_str() {
        return Err(format!("discovery names issuer {}", discovery["issuer"]).into());
    }
    let jwks_uri = discovery["jwks_uri"].as_str().ok_or("no jwks_uri")?.to_string();
    let keys = Keys { jwks_uri, http, cached: RwLock::new((JwkSet { keys: Vec::new() }, Instant::now())) };
    let first = keys.fetch().await?;
    *keys.cached.write().await = (first, Instant::now());
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let app = Arc::new(App { keys, validation });
    let router = Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/reports", get(reports))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on 127.0.0.1:{port}");
    axum::serve(listener, router).await?;
    Ok(())
}

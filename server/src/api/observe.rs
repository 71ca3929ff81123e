//! Cross-cutting request handling: a request id on every request and response, an
//! access log line, Prometheus request metrics by route template, and `/metrics`.

use std::sync::LazyLock;
use std::time::Instant;

use poem::http::HeaderValue;
use poem::{Endpoint, IntoResponse, Request, Response};

use crate::state::AppState;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Route templates of the API (`/admin/users/{id}`), read from our own OpenAPI document,
/// and the hosted pages' paths, so metrics are labelled by template and ids never
/// explode the label set.
static ROUTES: LazyLock<Vec<Vec<String>>> = LazyLock::new(|| {
    let spec: serde_json::Value = serde_json::from_str(&super::spec_json()).unwrap_or_default();
    let api = spec["paths"].as_object().into_iter().flat_map(|paths| paths.keys().map(String::as_str));
    let pages = super::pages::ROUTES.iter().map(|(path, _)| *path);
    let mut routes: Vec<Vec<String>> = api.chain(pages).map(|p| p.split('/').map(str::to_string).collect()).collect();
    routes.dedup();
    // Literal segments before parameters, so `/admin/keys/rotate` wins over `/admin/keys/{kid}`.
    routes.sort_by_key(|segments| segments.iter().filter(|s| s.starts_with('{')).count());
    routes
});

/// The template a path matches, or `other` (unknown paths get one shared label).
pub fn route_template(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    for route in ROUTES.iter() {
        if route.len() == parts.len() && route.iter().zip(&parts).all(|(r, p)| r.starts_with('{') || r == p) {
            return route.join("/");
        }
    }
    match path {
        "/metrics" | "/openapi.json" => path.to_string(),
        p if p.starts_with("/docs") => "/docs".into(),
        _ => "other".into(),
    }
}

/// Accepts a well-formed `X-Request-Id` or makes one; either way it is echoed back and
/// attached to the log line.
fn request_id(req: &Request) -> String {
    req.header(REQUEST_ID_HEADER)
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

pub async fn observe<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    let started = Instant::now();
    let id = request_id(&req);
    // Handlers read it too (the hosted error page shows it for the user to quote).
    if let Ok(value) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let method = req.method().to_string();
    let route = route_template(req.uri().path());
    let state = req.data::<AppState>().cloned();
    let span = tracing::info_span!("request", request_id = %id, %method, %route);
    let result = tracing::Instrument::instrument(next.call(req), span.clone()).await;
    let mut response = match result {
        Ok(response) => response.into_response(),
        Err(err) => super::error::render_error(err).await,
    };
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    // RFC 6749 §5.1: token responses are never cached — errors produced before a handler
    // runs (a malformed form) included.
    if route.starts_with("/oauth2/") && !response.headers().contains_key(poem::http::header::CACHE_CONTROL) {
        response.headers_mut().insert(poem::http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Some(state) = state {
        let metrics = &state.metrics;
        metrics.http_requests.with_label_values(&[route.as_str(), method.as_str(), &status.to_string()]).inc();
        metrics.http_duration.with_label_values(&[route.as_str(), method.as_str()]).observe(elapsed.as_secs_f64());
    }
    span.in_scope(|| tracing::debug!(status, elapsed_ms = elapsed.as_secs_f64() * 1000.0, "request"));
    Ok(response)
}

/// A request from this host that no proxy forwarded: a proxy on the same host connects
/// from loopback too, but says so in a forwarding header.
pub fn is_local_unproxied(req: &Request) -> bool {
    let loopback = req.remote_addr().as_socket_addr().is_some_and(|addr| addr.ip().is_loopback());
    let forwarded = ["x-forwarded-for", "forwarded", "x-real-ip"].iter().any(|h| req.headers().contains_key(*h));
    loopback && !forwarded
}

/// `GET /metrics`: refreshes the state gauges, then renders everything.
pub async fn metrics_endpoint(req: &Request) -> poem::Result<Response> {
    let Some(state) = req.data::<AppState>() else {
        return Ok(Response::builder().status(poem::http::StatusCode::SERVICE_UNAVAILABLE).finish());
    };
    let m = &state.metrics;
    m.hashing_queue.set(state.passwords.queue_depth() as i64);
    m.hashing_running.set(state.passwords.running() as i64);
    let (size, idle) = crate::store::pool_usage(&state.db);
    m.db_pool.with_label_values(&["open"]).set(size as i64);
    m.db_pool.with_label_values(&["idle"]).set(idle as i64);
    m.db_pool.with_label_values(&["in_use"]).set(size.saturating_sub(idle) as i64);
    m.db_pool.with_label_values(&["max"]).set(state.config.db_pool_size as i64);
    let keys = state.keys.current();
    m.signing_keys.with_label_values(&["published"]).set(keys.jwks.len() as i64);
    Ok(Response::builder().content_type("text/plain; version=0.0.4; charset=utf-8").body(m.render()))
}

#[cfg(test)]
mod tests {
    use super::route_template;

    #[test]
    fn paths_are_labelled_by_their_template_api_and_hosted_pages_alike() {
        assert_eq!(route_template("/admin/users/0190-abc"), "/admin/users/{id}");
        assert_eq!(route_template("/admin/keys/rotate"), "/admin/keys/rotate");
        assert_eq!(route_template("/ui/signin"), "/ui/signin");
        assert_eq!(route_template("/oauth2/authorize"), "/oauth2/authorize");
        assert_eq!(route_template("/ui/style.css"), "/ui/style.css");
        assert_eq!(route_template("/no/such/path"), "other");
    }
}

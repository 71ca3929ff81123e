//! HTTP surface: poem-openapi handlers, one file per area, joined by [`apis`] into one
//! OpenAPI document. Handlers extract and validate input, call one domain function and
//! map its result; nothing here runs queries or holds rules.

pub mod admin;
pub mod auth;
pub mod bearer;
pub mod browser;
pub mod client_cors;
pub mod discovery;
pub mod document;
pub mod documented;
pub mod dpop;
pub mod error;
pub mod form;
pub mod models;
pub mod oauth;
pub mod observe;
pub mod ops;
pub mod pages;
pub mod route_facts;

use poem::http::Method;
use poem::http::StatusCode;
use poem::http::header::CONTENT_LENGTH;
use poem::middleware::Cors;
use poem::{Body, Endpoint, EndpointExt, IntoResponse, Request, Response, Route};
use poem_openapi::{OpenApiService, Tags};

use crate::state::AppState;

#[derive(Tags)]
pub enum ApiTags {
    /// First-party browser login, refresh cookie and the user's own sessions.
    Auth,
    /// OAuth 2.0 token, revocation, introspection and userinfo endpoints.
    #[oai(rename = "OAuth")]
    OAuth,
    /// Discovery metadata and the JSON Web Key Set.
    Discovery,
    /// Health and readiness probes.
    Operations,
    /// Administration of users, roles, sessions, clients and the audit log (permission-guarded).
    Admin,
}

/// Every operation group of the document, in its order. Each is a unit struct, so the
/// tuple's `Default` builds them all.
type Apis = (
    auth::AuthApi,
    oauth::OAuthApi,
    discovery::DiscoveryApi,
    ops::OpsApi,
    admin::users::AdminUsersApi,
    admin::roles::AdminRolesApi,
    admin::sessions::AdminSessionsApi,
    admin::clients::AdminClientsApi,
    admin::audit::AdminAuditApi,
    admin::keys::AdminKeysApi,
);

pub fn apis() -> Apis {
    Apis::default()
}

pub fn openapi_service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(apis(), "Latchkey", env!("CARGO_PKG_VERSION"))
        .description("Self-hosted OAuth 2.0 token server with role-based access control.")
}

/// The OpenAPI document as served and as committed in `openapi/openapi.json`.
pub fn spec_json() -> String {
    let mut spec = document::finish(&openapi_service().spec());
    spec.push('\n');
    spec
}

/// The whole application: API, spec, docs, and the cross-cutting middleware.
pub fn app(state: AppState) -> impl Endpoint {
    let service = openapi_service();
    let generated = service.spec();
    let finished = document::finish(&generated);
    let mut served_beside = vec![("/openapi.json", "get"), ("/docs", "get"), ("/metrics", "get")];
    served_beside.extend_from_slice(&pages::ROUTES);
    let document = std::sync::Arc::new(document::Document::read(
        &serde_json::from_str(&finished).unwrap_or_default(),
        &served_beside,
    ));
    let held_to = document.clone();
    // The UI shows the finished document: the generated one is embedded verbatim.
    let docs_page = service.swagger_ui_html().replacen(&generated, &finished, 1);
    let docs = poem::endpoint::make_sync(move |_| poem::web::Html(docs_page.clone()));
    let spec =
        poem::endpoint::make_sync(move |_| Response::builder().content_type("application/json").body(finished.clone()));
    let config = &state.config;
    let cors = (!config.allowed_origins.is_empty()).then(|| {
        Cors::new()
            .allow_origins(config.allowed_origins.iter().map(String::as_str))
            .allow_origins(crate::config::normalise_origin(&config.issuer))
            .allow_credentials(true)
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::PATCH, Method::PUT])
            .allow_headers(["authorization", "content-type", browser::CSRF_HEADER, dpop::DPOP_HEADER])
            // A bearer client tells a refused token from other 401s by the challenge; a
            // DPoP client needs the nonce.
            .expose_headers(["www-authenticate", dpop::NONCE_HEADER])
            .max_age(600)
    });
    let max_body = config.max_body_bytes;
    let mut route = pages::mount(Route::new().nest("/", service).at("/openapi.json", spec).nest("/docs", docs));
    if config.operations.metrics_listen.is_none() {
        // On the public listener only this host may read them (a Prometheus agent beside
        // the server); `operations.metrics_listen` gives them an address of their own.
        route = route.at(
            "/metrics",
            poem::get(poem::endpoint::make(|req: Request| async move {
                if !observe::is_local_unproxied(&req) {
                    return Err(poem::Error::from_status(StatusCode::NOT_FOUND));
                }
                observe::metrics_endpoint(&req).await
            })),
        );
    }
    route
        // Innermost, so a panic still passes through the request log and metrics.
        .with(poem::middleware::CatchPanic::new().with_handler(error::PanicAnswer))
        .around(dpop::nonce_header)
        // Inside CORS, so a browser can read the refusal of a malformed body; inside the
        // body limit, so the body it reads is bounded.
        .around(move |next, req| {
            let document = held_to.clone();
            async move { document::check_body(next, req, &document).await }
        })
        .with_if(cors.is_some(), cors.unwrap_or_default())
        .around(client_cors::client_cors)
        .around(move |next, req| limit_body(next, req, max_body))
        .around(observe::observe)
        .data(state)
        .catch_all_error(error::render_error)
        .around(move |next, req| {
            let document = document.clone();
            async move { document::add_allow(next, req, &document).await }
        })
}

/// `/metrics` alone, for a separate listen address.
pub fn metrics_app(state: AppState) -> impl Endpoint {
    Route::new()
        .at(
            "/metrics",
            poem::get(poem::endpoint::make(|req: Request| async move { observe::metrics_endpoint(&req).await })),
        )
        .data(state)
        .catch_all_error(error::render_error)
}

/// Refuses bodies over `max` bytes with 413: by `Content-Length` before reading, and
/// for chunked bodies while reading (they are small JSON or form documents, so buffering
/// them here costs nothing). poem's `SizeLimit` would also refuse bodiless requests
/// that lack a `Content-Length`, which every GET does.
async fn limit_body<E: Endpoint>(next: E, mut req: Request, max: usize) -> poem::Result<Response> {
    let too_large = || poem::Error::from_status(StatusCode::PAYLOAD_TOO_LARGE);
    let declared = req.header(CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > max as u64 => return Err(too_large()),
        Some(_) => {}
        None => {
            let bytes = req.take_body().into_bytes_limit(max).await.map_err(|_| too_large())?;
            req.set_body(Body::from_bytes(bytes));
        }
    }
    next.call(req).await.map(IntoResponse::into_response)
}

//! Route facts, declared in each operation's signature rather than kept in path lists
//! that must agree with the `#[oai(path)]` attributes:
//!
//! - [`CookieEndpoint`]: the operation reads or sets the refresh cookie, so it takes the
//!   CSRF check. The cookie can be read and set only through it, so an endpoint that
//!   uses the cookie cannot skip the check. (Clearing it, as bearer-authenticated
//!   logout-all does, needs no check: a forged request could only end a session.)
//! - [`Charged<B>`]: the operation spends one token of the client address's bucket `B`.
//! - [`ChargedByHandler`]: the bucket depends on the body (the token endpoint charges a
//!   password grant to the login bucket); the handler charges after parsing.
//!
//! Extractors run in signature order before the handler's body, and before any body
//! extractor declared after them: declared first, the rate limit runs first, then the
//! CSRF check, then the body is read — so a refused request is refused the same way
//! whatever it carries.

use std::marker::PhantomData;

use latchkey_codes::ErrorCode;
use poem::http::header::{COOKIE, ORIGIN};
use poem::{FromRequest, Request, RequestBody};

use super::browser::{CSRF_HEADER, CSRF_HEADER_VALUE, client_ip, cookie_header};
use super::error::ApiError;
use crate::config::{Config, normalise_origin};
use crate::security::Secret;
use crate::security::rate_limit::Bucket;
use crate::state::AppState;

fn app_state(req: &Request) -> poem::Result<&AppState> {
    req.data::<AppState>()
        .ok_or_else(|| poem::Error::from_string("no state", poem::http::StatusCode::INTERNAL_SERVER_ERROR))
}

/// An endpoint that a cookie authenticates or that sets one; extracting it runs the
/// CSRF check (see [`check_csrf`]).
pub struct CookieEndpoint {
    refresh_token: Option<Secret<String>>,
}

impl<'a> FromRequest<'a> for CookieEndpoint {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let config = &app_state(req)?.config;
        check_csrf(config, req)?;
        Ok(Self { refresh_token: refresh_cookie(config, req) })
    }
}

impl CookieEndpoint {
    /// The refresh token from the request's cookie, if any.
    pub fn refresh_token(&self) -> Option<&Secret<String>> {
        self.refresh_token.as_ref()
    }

    /// `Set-Cookie` for a refresh token that lives `max_age` seconds.
    pub fn set_refresh_cookie(&self, config: &Config, token: &Secret<String>, max_age: i64) -> String {
        cookie_header(config, token.expose(), max_age.max(0))
    }
}

/// Rejects cross-site requests to endpoints that a cookie authenticates: the Origin,
/// when present, must be allowed, and the custom header must be present.
fn check_csrf(config: &Config, req: &Request) -> Result<(), ApiError> {
    if let Some(origin) = req.headers().get(ORIGIN) {
        let own_origin = normalise_origin(&config.issuer);
        let allowed = origin
            .to_str()
            .ok()
            .and_then(normalise_origin)
            .is_some_and(|o| config.allowed_origins.contains(&o) || own_origin.as_deref() == Some(o.as_str()));
        if !allowed {
            return Err(ApiError::forbidden(ErrorCode::CsrfCheckFailed, "request origin is not allowed"));
        }
    }
    let header_ok = req.header(CSRF_HEADER).is_some_and(|v| v.eq_ignore_ascii_case(CSRF_HEADER_VALUE));
    if !header_ok {
        return Err(ApiError::forbidden(
            ErrorCode::CsrfCheckFailed,
            format!("the {CSRF_HEADER}: {CSRF_HEADER_VALUE} header is required"),
        ));
    }
    Ok(())
}

fn refresh_cookie(config: &Config, req: &Request) -> Option<Secret<String>> {
    cookie_value(req, &config.cookie.name)
}

/// The value of the cookie `name` in the request's `Cookie` headers (empty counts as absent).
pub fn cookie_value(req: &Request, wanted: &str) -> Option<Secret<String>> {
    let headers = req.headers().get_all(COOKIE).iter().filter_map(|v| v.to_str().ok());
    cookie_in(headers, wanted).map(|value| Secret::new(value.to_string()))
}

/// The value of the cookie `wanted` in these `Cookie` header values: the first
/// non-empty one, in the order sent.
pub fn cookie_in<'a>(headers: impl Iterator<Item = &'a str>, wanted: &str) -> Option<&'a str> {
    headers.flat_map(|header| header.split(';')).find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == wanted && !value.is_empty()).then_some(value)
    })
}

/// A rate-limit bucket as a type, for [`Charged`].
pub trait BucketName: Send {
    const BUCKET: Bucket;
}

/// The buckets operations declare.
pub mod buckets {
    use super::{Bucket, BucketName};

    macro_rules! bucket {
        ($($name:ident => $bucket:ident),+) => {
            $(
                pub struct $name;
                impl BucketName for $name {
                    const BUCKET: Bucket = Bucket::$bucket;
                }
            )+
        };
    }

    bucket!(Login => Login, Register => Register, Token => Token, Refresh => Refresh, Totp => Totp,
        PasswordChange => PasswordChange, Mail => Mail);
}

/// One token of the client address's bucket `B`, taken before the handler runs; over
/// the limit the request gets 429 with `Retry-After`.
pub struct Charged<B>(PhantomData<B>);

impl<'a, B: BucketName> FromRequest<'a> for Charged<B> {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        charge(req, B::BUCKET)?;
        Ok(Self(PhantomData))
    }
}

/// The operation charges a bucket it picks after parsing the body.
pub struct ChargedByHandler<'a>(&'a Request);

impl<'a> FromRequest<'a> for ChargedByHandler<'a> {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        Ok(Self(req))
    }
}

impl ChargedByHandler<'_> {
    pub fn charge(self, bucket: Bucket) -> Result<(), ApiError> {
        charge(self.0, bucket)
    }
}

/// Takes one token from the client address's bucket of this group.
fn charge(req: &Request, bucket: Bucket) -> Result<(), ApiError> {
    charge_ip(req, bucket).map_err(ApiError::from)
}

/// [`charge`], answering the domain's error (the hosted pages render it as a page).
pub fn charge_ip(req: &Request, bucket: Bucket) -> Result<(), crate::domain::Error> {
    if let Some(state) = req.data::<AppState>()
        && let Some(ip) = client_ip(req, &state.config.rate_limits)
        && let Err(retry_after) = state.limits.check_ip(bucket, ip)
    {
        tracing::info!(%ip, bucket = bucket.as_str(), "rate limited");
        state.metrics.rate_limited.with_label_values(&[bucket.as_str()]).inc();
        return Err(crate::domain::Error::RateLimited { retry_after_secs: retry_after });
    }
    Ok(())
}

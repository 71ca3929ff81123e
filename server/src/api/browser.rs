//! Browser-facing rules: the refresh cookie, the CSRF check for cookie-authenticated
//! endpoints, and the request context (client IP, user agent).

use latchkey_codes::ErrorCode;
use std::net::IpAddr;

use ipnet::IpNet;
use poem::Request;
use poem::http::header::{COOKIE, ORIGIN, USER_AGENT};

use super::error::ApiError;
use crate::config::{ClientIpHeader, Config, RateLimits, normalise_origin};
use crate::domain::auth::RequestContext;
use crate::security::Secret;
use crate::state::AppState;

/// The custom header a cookie-authenticated request must carry. Browsers never add it
/// to cross-site form posts, and cross-origin scripts cannot set it without a CORS
/// preflight that our allow-list refuses.
pub const CSRF_HEADER: &str = "x-requested-with";
pub const CSRF_HEADER_VALUE: &str = "latchkey";

/// Endpoints that set or use the refresh cookie; `check_csrf` guards them all.
pub const COOKIE_ENDPOINTS: &[&str] = &["/auth/login", "/auth/login/mfa", "/auth/refresh", "/auth/logout"];

pub fn request_context(req: &Request) -> RequestContext {
    RequestContext {
        ip: req.data::<AppState>().and_then(|s| client_ip(req, &s.config.rate_limits)).map(|ip| ip.to_string()),
        user_agent: req.header(USER_AGENT).map(str::to_string),
    }
}

/// The client's address: the socket peer, unless the peer is a trusted proxy; then the
/// right-most address in the one header the operator named (`rate_limits.client_ip_header`)
/// that is not itself a trusted proxy. Entries left of it were written by the client and
/// prove nothing, and no other header is read, so a client cannot pick its bucket by
/// sending a header the proxy does not overwrite.
pub fn client_ip(req: &Request, limits: &RateLimits) -> Option<IpAddr> {
    let peer = req.remote_addr().as_socket_addr()?.ip();
    let header = match limits.client_ip_header {
        ClientIpHeader::XForwardedFor => "x-forwarded-for",
        ClientIpHeader::Forwarded => "forwarded",
        ClientIpHeader::XRealIp => "x-real-ip",
    };
    let values: Vec<&str> = req.headers().get_all(header).iter().filter_map(|v| v.to_str().ok()).collect();
    client_ip_from(peer, &limits.trusted_proxies, limits.client_ip_header, &values)
}

/// [`client_ip`] over the header's values, in the order received.
pub fn client_ip_from(peer: IpAddr, trusted: &[IpNet], header: ClientIpHeader, values: &[&str]) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut hops: Vec<Option<IpAddr>> = Vec::new();
    for value in values {
        match header {
            ClientIpHeader::XForwardedFor => hops.extend(value.split(',').map(parse_hop)),
            // One address, written by the proxy (a list would mean the client added one).
            ClientIpHeader::XRealIp => hops.push(parse_hop(value)),
            ClientIpHeader::Forwarded => {
                for element in value.split(',') {
                    let node = element.split(';').find_map(|pair| {
                        let (key, value) = pair.trim().split_once('=')?;
                        key.trim().eq_ignore_ascii_case("for").then(|| value.trim().trim_matches('"').to_string())
                    });
                    // An element without `for=` still marks a hop we cannot place.
                    hops.push(node.as_deref().and_then(parse_hop));
                }
            }
        }
    }
    let mut nearest = peer;
    for hop in hops.into_iter().rev() {
        match hop {
            Some(ip) if is_trusted(&ip) => nearest = ip,
            Some(ip) => return Some(ip),
            // An unparseable entry can only come from the untrusted side: stop there.
            None => break,
        }
    }
    Some(nearest)
}

fn parse_hop(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim();
    raw.parse::<IpAddr>()
        .ok()
        .or_else(|| raw.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| raw.strip_prefix('[').and_then(|r| r.split(']').next()).and_then(|r| r.parse().ok()))
}

/// Rejects cross-site requests to endpoints that a cookie authenticates: the Origin,
/// when present, must be allowed, and the custom header must be present.
pub fn check_csrf(config: &Config, req: &Request) -> Result<(), ApiError> {
    if let Some(origin) = req.headers().get(ORIGIN) {
        let allowed =
            origin.to_str().ok().and_then(normalise_origin).is_some_and(|o| {
                config.allowed_origins.contains(&o) || own_origin(config).as_deref() == Some(o.as_str())
            });
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

fn own_origin(config: &Config) -> Option<String> {
    normalise_origin(&config.issuer)
}

/// The refresh token from the request's cookie, if any.
pub fn refresh_cookie(config: &Config, req: &Request) -> Option<Secret<String>> {
    req.headers().get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|header| {
        header.split(';').find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == config.cookie_name && !value.is_empty()).then(|| Secret::new(value.to_string()))
        })
    })
}

/// `Set-Cookie` for a refresh token that lives `max_age` seconds.
pub fn set_refresh_cookie(config: &Config, token: &Secret<String>, max_age: i64) -> String {
    cookie_header(config, token.expose(), max_age.max(0))
}

/// `Set-Cookie` that deletes the refresh cookie.
pub fn clear_refresh_cookie(config: &Config) -> String {
    cookie_header(config, "", 0)
}

fn cookie_header(config: &Config, value: &str, max_age: i64) -> String {
    let secure = if config.cookie_secure { "; Secure" } else { "" };
    format!(
        "{}={value}; Path={}; Max-Age={max_age}; HttpOnly{secure}; SameSite=Strict",
        config.cookie_name, config.cookie_path
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_the_named_header_is_believed_and_only_from_a_trusted_peer() {
        let proxy = ip("10.0.0.2");
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // An untrusted peer is the client, whatever it claims.
        let untrusted = ip("198.51.100.7");
        assert_eq!(
            client_ip_from(untrusted, &trusted, ClientIpHeader::XForwardedFor, &["203.0.113.1"]),
            Some(untrusted)
        );
        // The right-most untrusted hop wins; what the client prepended does not.
        assert_eq!(
            client_ip_from(proxy, &trusted, ClientIpHeader::XForwardedFor, &["6.6.6.6, 203.0.113.1, 10.0.0.3"]),
            Some(ip("203.0.113.1"))
        );
        let forwarded = ["for=6.6.6.6", "for=\"[2001:db8::1]:4711\";proto=https, for=10.0.0.9"];
        assert_eq!(client_ip_from(proxy, &trusted, ClientIpHeader::Forwarded, &forwarded), Some(ip("2001:db8::1")));
        assert_eq!(client_ip_from(proxy, &trusted, ClientIpHeader::XRealIp, &["203.0.113.5"]), Some(ip("203.0.113.5")));
        // A hop that cannot be read ends the walk at the nearest trusted address.
        assert_eq!(
            client_ip_from(proxy, &trusted, ClientIpHeader::XForwardedFor, &["garbage, 10.0.0.3"]),
            Some(ip("10.0.0.3"))
        );
        // No header: the proxy itself.
        assert_eq!(client_ip_from(proxy, &trusted, ClientIpHeader::Forwarded, &[]), Some(proxy));
    }
}

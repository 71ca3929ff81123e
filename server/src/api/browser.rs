//! Browser-facing rules: the refresh cookie's attributes and the request context
//! (client IP, user agent). Reading and setting the cookie, and the CSRF check that
//! guards both, live in [`super::route_facts`].

use std::net::IpAddr;

use ipnet::IpNet;
use poem::Request;
use poem::http::header::USER_AGENT;

use crate::config::{ClientIpHeader, Config, RateLimits};
use crate::domain::auth::RequestContext;
use crate::state::AppState;

/// The custom header a cookie-authenticated request must carry. Browsers never add it
/// to cross-site form posts, and cross-origin scripts cannot set it without a CORS
/// preflight that our allow-list refuses.
pub const CSRF_HEADER: &str = "x-requested-with";
pub const CSRF_HEADER_VALUE: &str = "latchkey";

/// The request's context; reads the clock (the state's, so tests can move it).
pub fn request_context(req: &Request) -> RequestContext {
    let state = req.data::<AppState>();
    RequestContext {
        ip: state.and_then(|s| client_ip(req, &s.config.rate_limits)).map(|ip| ip.to_string()),
        user_agent: req.header(USER_AGENT).map(str::to_string),
        now: state.map_or_else(|| crate::clock::Clock::now(&crate::clock::SystemClock), AppState::now),
        dpop_jkt: None,
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

/// `Set-Cookie` that deletes the refresh cookie (needs no CSRF check: it only ends).
pub fn clear_refresh_cookie(config: &Config) -> String {
    cookie_header(config, "", 0)
}

pub(super) fn cookie_header(config: &Config, value: &str, max_age: i64) -> String {
    let secure = if config.cookie.secure { "; Secure" } else { "" };
    format!(
        "{}={value}; Path={}; Max-Age={max_age}; HttpOnly{secure}; SameSite=Strict",
        config.cookie.name, config.cookie.path
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

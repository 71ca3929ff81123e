//! The `Allow` header of a 405 answer (RFC 9110 §15.5.6: a 405 must list the methods
//! the resource takes). The methods come from the OpenAPI document the routes are built
//! from, read once at start-up, so the header cannot disagree with the routes.

use poem::http::header::ALLOW;
use poem::http::{HeaderValue, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};

/// Each path template of the document with the methods it takes, most specific first.
pub struct AllowedMethods(Vec<(Vec<Segment>, HeaderValue)>);

#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `{name}`: any one non-empty segment.
    Param,
}

impl AllowedMethods {
    /// From an OpenAPI document's `paths`, plus `extra` routes served beside it (the
    /// document itself, its UI, the metrics). `HEAD` is allowed wherever `GET` is, as the
    /// server answers it.
    pub fn from_spec(spec: &serde_json::Value, extra: &[(&str, &str)]) -> Self {
        let mut entries: Vec<(Vec<Segment>, Vec<String>)> = Vec::new();
        if let Some(paths) = spec.get("paths").and_then(|p| p.as_object()) {
            for (template, operations) in paths {
                let methods = operations.as_object().map(|ops| ops.keys().cloned().collect()).unwrap_or_default();
                entries.push((segments(template), methods));
            }
        }
        for (template, method) in extra {
            entries.push((segments(template), vec![method.to_string()]));
        }
        entries.sort_by_key(|(segments, _)| segments.iter().filter(|s| **s == Segment::Param).count());
        let table = entries
            .into_iter()
            .filter_map(|(segments, methods)| Some((segments, HeaderValue::from_str(&allow_list(methods)).ok()?)))
            .collect();
        Self(table)
    }

    /// The `Allow` value for a request path, if a template matches it.
    pub fn for_path(&self, path: &str) -> Option<&HeaderValue> {
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        self.0.iter().find(|(template, _)| matches(template, &parts)).map(|(_, allow)| allow)
    }
}

fn segments(template: &str) -> Vec<Segment> {
    template
        .trim_end_matches('/')
        .split('/')
        .skip(1)
        .map(|s| if s.starts_with('{') && s.ends_with('}') { Segment::Param } else { Segment::Literal(s.to_string()) })
        .collect()
}

fn matches(template: &[Segment], parts: &[&str]) -> bool {
    template.len() == parts.len()
        && template.iter().zip(parts).all(|(segment, part)| match segment {
            Segment::Literal(literal) => literal == part,
            Segment::Param => !part.is_empty(),
        })
}

fn allow_list(methods: Vec<String>) -> String {
    let mut methods: Vec<String> = methods.into_iter().map(|m| m.to_ascii_uppercase()).collect();
    if methods.iter().any(|m| m == "GET") {
        methods.push("HEAD".into());
    }
    methods.sort();
    methods.dedup();
    methods.join(", ")
}

/// Middleware: adds `Allow` to every 405 answer whose path the document knows.
pub async fn add_allow<E: Endpoint>(next: E, req: Request, allowed: &AllowedMethods) -> poem::Result<Response> {
    let allow = allowed.for_path(req.uri().path()).cloned();
    let mut response = next.call(req).await?.into_response();
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && let Some(allow) = allow
    {
        response.headers_mut().insert(ALLOW, allow);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::AllowedMethods;

    fn table() -> AllowedMethods {
        let spec = serde_json::json!({"paths": {
            "/admin/users": {"get": {}, "post": {}},
            "/admin/users/{id}": {"get": {}, "patch": {}, "delete": {}},
            "/admin/users/{id}/sessions": {"get": {}, "delete": {}},
            "/auth/totp": {"delete": {}},
        }});
        AllowedMethods::from_spec(&spec, &[("/openapi.json", "get")])
    }

    #[test]
    fn each_path_gets_its_templates_methods() {
        let table = table();
        let allow = |path: &str| table.for_path(path).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(allow("/admin/users").as_deref(), Some("GET, HEAD, POST"));
        assert_eq!(allow("/admin/users/").as_deref(), Some("GET, HEAD, POST"));
        assert_eq!(allow("/admin/users/0192").as_deref(), Some("DELETE, GET, HEAD, PATCH"));
        assert_eq!(allow("/admin/users/0192/sessions").as_deref(), Some("DELETE, GET, HEAD"));
        assert_eq!(allow("/auth/totp").as_deref(), Some("DELETE"));
        assert_eq!(allow("/openapi.json").as_deref(), Some("GET, HEAD"));
        assert_eq!(allow("/nowhere"), None);
        assert_eq!(allow("/admin/users/0192/other"), None);
    }
}

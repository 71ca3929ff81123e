//! What the served OpenAPI document says, read once at start-up and held to: the
//! methods each path takes (a 405 lists them in `Allow`, RFC 9110 §15.5.6) and the shape
//! of each JSON request body. poem-openapi parses leniently where the document is strict
//! (it reads `false` into a string field and takes `null` for an optional one), so a body
//! is first checked against the document's types: a value of the wrong type, or `null`
//! where the schema does not say `nullable`, is 400 `invalid_request` naming the field.

use poem::http::header::{ALLOW, CONTENT_TYPE};
use poem::http::{HeaderValue, Method, StatusCode};
use poem::{Body, Endpoint, IntoResponse, Request, Response};
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::domain::ErrorCode;

/// The served document: poem-openapi's, finished with what it cannot say itself. A
/// property a JSON request body may leave out may also be `null` — poem-openapi reads
/// `null` there as "not given" (and a client that serialises every field sends it) —
/// so it is marked `nullable`, in every schema a JSON request body reaches.
pub fn finish(generated: &str) -> String {
    let Ok(mut spec) = serde_json::from_str::<Value>(generated) else { return generated.to_string() };
    let mut pending: Vec<String> = Vec::new();
    for operations in spec.get("paths").and_then(Value::as_object).into_iter().flat_map(|paths| paths.values()) {
        for operation in operations.as_object().into_iter().flat_map(|ops| ops.values()) {
            let content = operation.pointer("/requestBody/content").and_then(Value::as_object);
            for (media, body) in content.into_iter().flatten() {
                if media.starts_with("application/json") {
                    collect_refs(&body["schema"], &mut pending);
                }
            }
        }
    }
    let mut done: Vec<String> = Vec::new();
    while let Some(name) = pending.pop() {
        if done.contains(&name) {
            continue;
        }
        if let Some(schema) = spec.pointer_mut(&format!("/components/schemas/{name}")) {
            collect_refs(schema, &mut pending);
            mark_optional_nullable(schema);
        }
        done.push(name);
    }
    serde_json::to_string_pretty(&spec).unwrap_or_else(|_| generated.to_string())
}

fn collect_refs(schema: &Value, into: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(name) =
                map.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/components/schemas/"))
            {
                into.push(name.to_string());
            }
            map.values().for_each(|v| collect_refs(v, into));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, into)),
        _ => {}
    }
}

fn mark_optional_nullable(schema: &mut Value) {
    let required: Vec<String> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(|n| n.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        for (name, property) in properties.iter_mut() {
            if !required.contains(name)
                && let Some(property) = property.as_object_mut()
                && property.contains_key("type")
            {
                property.insert("nullable".into(), Value::Bool(true));
                // OpenAPI 3.0.3 §4.7.25.1: `nullable` does not widen an `enum`; `null` must be listed.
                if let Some(Value::Array(values)) = property.get_mut("enum")
                    && !values.contains(&Value::Null)
                {
                    values.push(Value::Null);
                }
            }
        }
    }
}

/// Each path template of the document, most specific first.
pub struct Document {
    paths: Vec<PathEntry>,
    schemas: Map<String, Value>,
}

struct PathEntry {
    template: Vec<Segment>,
    allow: Option<HeaderValue>,
    /// The JSON request body schema of each method that takes one.
    json_bodies: Vec<(Method, Value)>,
}

#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `{name}`: any one non-empty segment.
    Param,
}

impl Document {
    /// From an OpenAPI document, plus `extra` routes served beside it (the document
    /// itself, its UI, the metrics) with their one method. `HEAD` is allowed wherever
    /// `GET` is, as the server answers it.
    pub fn read(spec: &Value, extra: &[(&str, &str)]) -> Self {
        let mut paths: Vec<PathEntry> = Vec::new();
        for (template, operations) in spec.get("paths").and_then(Value::as_object).into_iter().flatten() {
            let operations = operations.as_object().cloned().unwrap_or_default();
            let json_bodies = operations
                .iter()
                .filter_map(|(method, operation)| {
                    let content = operation.pointer("/requestBody/content")?.as_object()?;
                    let schema = content.iter().find(|(media, _)| media.starts_with("application/json"))?.1;
                    Some((
                        Method::from_bytes(method.to_ascii_uppercase().as_bytes()).ok()?,
                        schema.get("schema")?.clone(),
                    ))
                })
                .collect();
            let methods = operations.keys().cloned().collect();
            paths.push(PathEntry { template: segments(template), allow: allow_value(methods), json_bodies });
        }
        // Routes served beside the document, one (path, method) each: a path's methods
        // make one entry.
        let mut beside: Vec<(&str, Vec<String>)> = Vec::new();
        for (template, method) in extra {
            match beside.iter_mut().find(|(t, _)| t == template) {
                Some((_, methods)) => methods.push(method.to_string()),
                None => beside.push((template, vec![method.to_string()])),
            }
        }
        for (template, methods) in beside {
            paths.push(PathEntry {
                template: segments(template),
                allow: allow_value(methods),
                json_bodies: Vec::new(),
            });
        }
        paths.sort_by_key(|entry| entry.template.iter().filter(|s| **s == Segment::Param).count());
        let schemas = spec.pointer("/components/schemas").and_then(Value::as_object).cloned().unwrap_or_default();
        Self { paths, schemas }
    }

    fn entry(&self, path: &str) -> Option<&PathEntry> {
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        self.paths.iter().find(|entry| matches(&entry.template, &parts))
    }

    /// The `Allow` value for a request path, if a template matches it.
    pub fn allow_for(&self, path: &str) -> Option<&HeaderValue> {
        self.entry(path)?.allow.as_ref()
    }

    fn json_body_schema(&self, method: &Method, path: &str) -> Option<&Value> {
        self.entry(path)?.json_bodies.iter().find(|(m, _)| m == method).map(|(_, schema)| schema)
    }

    /// Checks `value` against `schema`: JSON types and nullability, into objects and
    /// arrays (the other constraints are poem-openapi's validators' and the domain's).
    /// The error names where the value breaks the schema.
    fn check(&self, value: &Value, schema: &Value, at: &str) -> Result<(), String> {
        let schema = self.resolve(schema);
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            return all.iter().try_for_each(|part| self.check(value, part, at));
        }
        let Some(expected) = schema.get("type").and_then(Value::as_str) else { return Ok(()) };
        let field = if at.is_empty() { "the body".to_string() } else { format!("`{at}`") };
        if value.is_null() {
            return match schema.get("nullable").and_then(Value::as_bool) {
                Some(true) => Ok(()),
                _ => Err(format!("{field} must not be null")),
            };
        }
        let fits = match expected {
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => true,
        };
        if !fits {
            let article = if matches!(expected, "integer" | "array" | "object") { "an" } else { "a" };
            return Err(format!("{field} must be {article} {expected}"));
        }
        match (value, schema.get("properties").and_then(Value::as_object), schema.get("items")) {
            (Value::Object(members), Some(properties), _) => {
                members.iter().try_for_each(|(name, member)| match properties.get(name) {
                    Some(property) => self.check(member, property, &join(at, name)),
                    None => Ok(()),
                })
            }
            (Value::Array(items), _, Some(item)) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, element)| self.check(element, item, &join(at, &i.to_string()))),
            _ => Ok(()),
        }
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/components/schemas/")) {
            Some(name) => self.schemas.get(name).unwrap_or(schema),
            None => schema,
        }
    }
}

fn join(at: &str, name: &str) -> String {
    if at.is_empty() { name.to_string() } else { format!("{at}.{name}") }
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

fn allow_value(methods: Vec<String>) -> Option<HeaderValue> {
    let mut methods: Vec<String> = methods.into_iter().map(|m| m.to_ascii_uppercase()).collect();
    if methods.iter().any(|m| m == "GET") {
        methods.push("HEAD".into());
    }
    methods.sort();
    methods.dedup();
    HeaderValue::from_str(&methods.join(", ")).ok()
}

/// Middleware: a JSON body of the wrong shape is refused before it is parsed. Runs
/// inside the body limit, so the body it reads is bounded.
pub async fn check_body<E: Endpoint>(next: E, mut req: Request, document: &Document) -> poem::Result<Response> {
    let is_json =
        req.header(CONTENT_TYPE).is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("application/json"));
    if let (true, Some(schema)) = (is_json, document.json_body_schema(req.method(), req.uri().path())) {
        let bytes = req.take_body().into_bytes().await?;
        // A body that is not JSON at all is left to the parser, which says so.
        if let Ok(value) = serde_json::from_slice::<Value>(&bytes)
            && let Err(problem) = document.check(&value, schema, "")
        {
            return Ok(ApiError::bad_request(ErrorCode::InvalidRequest, problem).into_response());
        }
        req.set_body(Body::from_bytes(bytes));
    }
    next.call(req).await.map(IntoResponse::into_response)
}

/// Middleware: a 405 answer gets `Allow`. Outermost, so it sees the rendered answer.
pub async fn add_allow<E: Endpoint>(next: E, req: Request, document: &Document) -> poem::Result<Response> {
    let allow = document.allow_for(req.uri().path()).cloned();
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
    use serde_json::json;

    use super::Document;

    fn document() -> Document {
        let spec = json!({
            "paths": {
                "/admin/users": {"get": {}, "post": {"requestBody": {"content": {
                    "application/json; charset=utf-8": {"schema": {"$ref": "#/components/schemas/New"}}}}}},
                "/admin/users/{id}": {"get": {}, "patch": {}, "delete": {}},
                "/admin/users/{id}/sessions": {"get": {}, "delete": {}},
                "/auth/totp": {"delete": {}},
            },
            "components": {"schemas": {"New": {"type": "object", "properties": {
                "name": {"type": "string"},
                "email": {"type": "string", "nullable": true},
                "roles": {"type": "array", "items": {"type": "string"}},
                "page": {"type": "integer"},
            }}}}
        });
        Document::read(&spec, &[("/openapi.json", "get")])
    }

    #[test]
    fn each_path_gets_its_templates_methods() {
        let document = document();
        let expected = [
            ("/admin/users", Some("GET, HEAD, POST")),
            ("/admin/users/", Some("GET, HEAD, POST")),
            ("/admin/users/0192", Some("DELETE, GET, HEAD, PATCH")),
            ("/admin/users/0192/sessions", Some("DELETE, GET, HEAD")),
            ("/auth/totp", Some("DELETE")),
            ("/openapi.json", Some("GET, HEAD")),
            ("/nowhere", None),
            ("/admin/users/0192/other", None),
        ];
        for (path, allow) in expected {
            assert_eq!(document.allow_for(path).map(|v| v.to_str().unwrap()), allow, "{path}");
        }
    }

    #[test]
    fn optional_properties_of_request_bodies_are_nullable_and_nothing_else_changes() {
        let generated = json!({
            "paths": {"/x": {"post": {"requestBody": {"content": {
                "application/json; charset=utf-8": {"schema": {"$ref": "#/components/schemas/Req"}}}}}}},
            "components": {"schemas": {
                "Req": {"type": "object", "required": ["a"], "properties": {
                    "a": {"type": "string"}, "b": {"type": "string"}, "inner": {"$ref": "#/components/schemas/Inner"},
                    "e": {"type": "string", "enum": ["x"]}}},
                "Inner": {"type": "object", "properties": {"c": {"type": "integer"}}},
                "Answer": {"type": "object", "properties": {"d": {"type": "string"}}},
            }}
        });
        let finished: serde_json::Value = serde_json::from_str(&super::finish(&generated.to_string())).unwrap();
        let schemas = &finished["components"]["schemas"];
        assert_eq!(schemas["Req"]["properties"]["a"].get("nullable"), None, "a required property stays non-null");
        assert_eq!(schemas["Req"]["properties"]["b"]["nullable"], true);
        assert_eq!(schemas["Inner"]["properties"]["c"]["nullable"], true, "reached through a $ref");
        assert_eq!(schemas["Req"]["properties"]["e"]["enum"], json!(["x", null]), "an enum lists null");
        assert_eq!(schemas["Answer"]["properties"]["d"].get("nullable"), None, "a response schema is untouched");
    }

    #[test]
    fn a_body_is_held_to_the_documents_types_and_nullability() {
        let document = document();
        let schema = document.json_body_schema(&poem::http::Method::POST, "/admin/users").unwrap().clone();
        let check = |body: serde_json::Value| document.check(&body, &schema, "");
        assert_eq!(check(json!({"name": "ada", "email": null, "roles": ["a"], "page": 2, "extra": false})), Ok(()));
        assert_eq!(check(json!({"name": false})), Err("`name` must be a string".into()));
        assert_eq!(check(json!({"name": null})), Err("`name` must not be null".into()));
        assert_eq!(check(json!({"roles": ["a", 1]})), Err("`roles.1` must be a string".into()));
        assert_eq!(check(json!({"page": 1.5})), Err("`page` must be an integer".into()));
        assert_eq!(check(json!([])), Err("the body must be an object".into()));
        assert!(document.json_body_schema(&poem::http::Method::GET, "/admin/users").is_none());
    }
}

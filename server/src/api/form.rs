//! The form bodies of the OAuth endpoints (`application/x-www-form-urlencoded`), read as
//! RFC 6749 §3.1 says and held to the document. poem-openapi's own `Form` deserialises
//! with serde alone, so the limits the document states (`maxLength`) went unchecked and
//! a repeated parameter silently took one of its values. [`OAuthForm`] instead:
//! - refuses a parameter of the schema sent more than once ("MUST NOT be included more
//!   than once"; a repeated unknown one, such as RFC 8707's `resource`, is ignored);
//! - treats a parameter without a value as omitted ("MUST be treated as if they were
//!   omitted");
//! - ignores parameters it does not know ("MUST ignore unrecognized request parameters");
//! - then parses the rest with the schema's own parser, so every limit, required field
//!   and type in the document is enforced: what a generated client checks is what the
//!   server checks.

use std::ops::Deref;

use poem::{FromRequest, Request, RequestBody, Result};
use poem_openapi::error::ParseRequestPayloadError;
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, Type};
use serde_json::{Map, Value};

/// A url-encoded form body parsed by the rules above.
#[derive(Debug, Clone)]
pub struct OAuthForm<T>(pub T);

impl<T> Deref for OAuthForm<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Type> Payload for OAuthForm<T> {
    const CONTENT_TYPE: &'static str = "application/x-www-form-urlencoded";

    fn check_content_type(content_type: &str) -> bool {
        <poem_openapi::payload::Form<T> as Payload>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: ParseFromJSON + Type> ParsePayload for OAuthForm<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(req: &Request, body: &mut RequestBody) -> Result<Self> {
        let data = Vec::<u8>::from_request(req, body).await?;
        parse(&data).map(Self).map_err(|reason| ParseRequestPayloadError { reason }.into())
    }
}

poem_openapi::impl_apirequest_for_payload!(OAuthForm<T>, T: ParseFromJSON + Type);

/// Parses a form body into `T`; the error says what is wrong, for the client, and names
/// only parameters of the schema (never one the request made up).
pub fn parse<T: ParseFromJSON + Type>(body: &[u8]) -> std::result::Result<T, String> {
    let known = parameters_of::<T>();
    let mut fields = Map::new();
    for (name, value) in url::form_urlencoded::parse(body) {
        let Some(name) = known.iter().find(|known| **known == name) else { continue };
        if value.is_empty() {
            continue;
        }
        if fields.insert((*name).to_string(), Value::String(value.into_owned())).is_some() {
            return Err(format!("parameter `{name}` is sent more than once"));
        }
    }
    T::parse_from_json(Some(Value::Object(fields))).map_err(|e| e.into_message())
}

/// The property names of `T`'s schema.
fn parameters_of<T: Type>() -> Vec<&'static str> {
    let mut registry = Registry::new();
    T::register(&mut registry);
    registry
        .schemas
        .get(&*T::name())
        .map(|schema| schema.properties.iter().map(|(name, _)| *name).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use poem_openapi::Object;

    use super::*;

    #[derive(Object, Debug, PartialEq)]
    struct Sample {
        #[oai(validator(max_length = 4))]
        grant_type: String,
        scope: Option<String>,
    }

    #[test]
    fn reads_a_form_by_rfc_6749() {
        let form: Sample = parse(b"grant_type=ab%20c&unknown=1&scope=&resource=a&resource=b").expect("parsed");
        assert_eq!(form, Sample { grant_type: "ab c".into(), scope: None }, "empty is omitted, unknown ignored");
        assert!(parameters_of::<Sample>().contains(&"scope"));
        let too_long = parse::<Sample>(b"grant_type=abcde").expect_err("over the limit");
        assert!(too_long.contains("grant_type"), "{too_long}");
        let repeated = parse::<Sample>(b"grant_type=a&scope=x&grant_type=a").expect_err("repeated");
        assert!(repeated.contains("`grant_type` is sent more than once"), "{repeated}");
        assert!(parse::<Sample>(b"scope=x").is_err(), "a required field is required");
        assert!(parse::<Sample>(b"grant_type=").is_err(), "an empty required field is missing");
    }
}

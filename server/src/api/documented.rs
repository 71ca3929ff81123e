//! Strings whose schema states a rule the domain enforces itself. The document tells a
//! generated client the rule (an enum, a length range), while the request still reaches
//! the domain, which refuses a breach with its own precise code (`invalid_password`,
//! `invalid_status`) rather than the parser's generic `invalid_request`.

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type};
use serde_json::Value;

use crate::config::PASSWORD_MAX_LENGTH;
use crate::domain::users::USERNAME_MAX_LENGTH;

/// The shortest password any configuration accepts (`passwords.min_length` may raise it).
const PASSWORD_MIN_LENGTH_FLOOR: usize = 8;

macro_rules! documented_string {
    ($(#[$doc:meta])* $name:ident, |$schema:ident| $describe:block) => {
        $(#[$doc])*
        pub struct $name(pub String);

        impl Type for $name {
            const IS_REQUIRED: bool = true;
            type RawValueType = String;
            type RawElementValueType = String;

            fn name() -> Cow<'static, str> {
                "string".into()
            }

            fn schema_ref() -> MetaSchemaRef {
                let mut $schema = MetaSchema::new("string");
                $describe
                MetaSchemaRef::Inline(Box::new($schema))
            }

            fn as_raw_value(&self) -> Option<&String> {
                Some(&self.0)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a String> + 'a> {
                Box::new(std::iter::once(&self.0))
            }
        }

        impl ParseFromJSON for $name {
            fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
                match value {
                    Some(Value::String(text)) => Ok(Self(text)),
                    other => Err(ParseError::expected_type(other.unwrap_or_default())),
                }
            }
        }

        impl ParseFromParameter for $name {
            fn parse_from_parameter(value: &str) -> ParseResult<Self> {
                Ok(Self(value.to_string()))
            }
        }

        impl ToJSON for $name {
            fn to_json(&self) -> Option<Value> {
                Some(Value::String(self.0.clone()))
            }
        }

        impl From<$name> for String {
            fn from(word: $name) -> String {
                word.0
            }
        }
    };
}

/// The plain strings of a list of documented ones.
pub fn strings<T: Into<String>>(words: Vec<T>) -> Vec<String> {
    words.into_iter().map(Into::into).collect()
}

documented_string!(
    /// A password being set: 8 to 128 characters (a deployment's `passwords.min_length`
    /// may ask for more). No `Debug`: it is a secret.
    NewPassword,
    |schema| {
        schema.format = Some("password");
        schema.min_length = Some(PASSWORD_MIN_LENGTH_FLOOR);
        schema.max_length = Some(PASSWORD_MAX_LENGTH);
    }
);

documented_string!(
    /// A username being chosen: 1 to 64 characters, not blank, without control or
    /// invisible formatting characters (compared after Unicode NFKC normalisation,
    /// trimming and case folding; look-alikes of a taken name are taken too).
    #[derive(Debug)]
    NewUsername,
    |schema| {
        schema.min_length = Some(1);
        schema.max_length = Some(USERNAME_MAX_LENGTH);
    }
);

documented_string!(
    /// A role name: 1 to 64 of `a-z 0-9 _ . -`, starting with a letter or digit.
    #[derive(Debug)]
    RoleName,
    |schema| {
        schema.pattern = Some("^[a-z0-9][a-z0-9_.-]{0,63}$".into());
    }
);

documented_string!(
    /// A permission: `resource:action`, each of `a-z 0-9 _ . - *`.
    #[derive(Debug)]
    PermissionWord,
    |schema| {
        schema.pattern = Some("^[a-z0-9_.*-]+:[a-z0-9_.*-]+$".into());
    }
);

documented_string!(
    /// A client id: 1 to 64 of `A-Z a-z 0-9 - _ .`, and not shaped like a UUID (a user's id).
    #[derive(Debug)]
    ClientIdWord,
    |schema| {
        schema.pattern = Some("^[A-Za-z0-9._-]{1,64}$".into());
    }
);

documented_string!(
    /// A scope token (RFC 6749 §3.3): printable ASCII but space, `"` and `\\`.
    #[derive(Debug)]
    ScopeToken,
    |schema| {
        schema.pattern = Some(r"^[\x21\x23-\x5B\x5D-\x7E]+$".into());
    }
);

documented_string!(
    /// The id of a user or a session: a UUID.
    #[derive(Debug)]
    IdWord,
    |schema| {
        schema.format = Some("uuid");
    }
);

documented_string!(
    /// An account status: `active` or `disabled`.
    #[derive(Debug)]
    StatusWord,
    |schema| {
        schema.enum_items = vec![Value::from("active"), Value::from("disabled")];
    }
);

documented_string!(
    /// How a client authenticates at the token endpoint (RFC 7591 §2).
    #[derive(Debug)]
    AuthMethodWord,
    |schema| {
        schema.enum_items =
            vec![Value::from("none"), Value::from("client_secret_basic"), Value::from("client_secret_post")];
    }
);

#[cfg(test)]
mod tests {
    use poem_openapi::types::{ParseFromJSON, Type};

    use super::{NewPassword, StatusWord};

    #[test]
    fn the_schema_states_the_rule_and_parsing_leaves_it_to_the_domain() {
        let schema = serde_json::to_value(NewPassword::schema_ref()).unwrap();
        assert_eq!((schema["minLength"].as_u64(), schema["maxLength"].as_u64()), (Some(8), Some(128)));
        let schema = serde_json::to_value(StatusWord::schema_ref()).unwrap();
        assert_eq!(schema["enum"], serde_json::json!(["active", "disabled"]));
        assert_eq!(StatusWord::parse_from_json(Some("sleeping".into())).unwrap().0, "sleeping");
        assert!(NewPassword::parse_from_json(Some(1.into())).is_err(), "a number is not a password");
    }
}

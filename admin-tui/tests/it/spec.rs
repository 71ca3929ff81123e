//! The client's types must carry exactly the fields of the server's schemas.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

use crate::fixtures;

fn spec() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn fields_of<T: Serialize>(value: &T) -> BTreeSet<String> {
    serde_json::to_value(value).unwrap().as_object().unwrap().keys().cloned().collect()
}

fn schema_fields(spec: &Value, name: &str) -> BTreeSet<String> {
    spec["components"]["schemas"][name]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("schema {name} is not in openapi.json"))
        .keys()
        .cloned()
        .collect()
}

#[test]
fn types_match_the_committed_openapi_document() {
    use latchkey_admin::api::*;
    let spec = spec();
    let user = fixtures::users().items.remove(0);
    let client = fixtures::clients().items.remove(0);
    let checks: Vec<(&str, BTreeSet<String>)> = vec![
        ("UserResponse", fields_of(&user)),
        ("UserPage", fields_of(&fixtures::users())),
        ("CreatedUserResponse", fields_of(&CreatedUser { user: user.clone(), one_time_password: Some("x".into()) })),
        ("RoleResponse", fields_of(&fixtures::roles()[0])),
        ("AdminSessionResponse", fields_of(&fixtures::sessions().items[0])),
        ("ClientResponse", fields_of(&client)),
        (
            "CreatedClientResponse",
            fields_of(&CreatedClient { client: client.clone(), client_secret: Some("s".into()) }),
        ),
        ("ClientSecretResponse", fields_of(&ClientSecret { client_id: "c".into(), client_secret: "s".into() })),
        ("BackchannelDeliveryResponse", fields_of(&fixtures::backchannel())),
        ("OutboxMessageResponse", fields_of(&fixtures::backchannel().recent[0])),
        ("RequeuedCount", fields_of(&Requeued { requeued: 1 })),
        (
            "ConsentResponse",
            fields_of(&Consent {
                client_id: "c".into(),
                client_name: "C".into(),
                scopes: vec!["openid".into()],
                granted_at: "2026-11-23T12:30:03+00:00".into(),
            }),
        ),
        ("SigningKeyResponse", fields_of(&fixtures::keys()[0])),
        ("AuditEventResponse", fields_of(&fixtures::audit().items[1])), // the one with names
        (
            "TotpSetupResponse",
            fields_of(&TotpSetup { secret: "s".into(), otpauth_uri: "u".into(), qr_svg: "q".into() }),
        ),
        ("RecoveryCodesResponse", fields_of(&RecoveryCodes { recovery_codes: vec![] })),
        ("RevokedCount", fields_of(&RevokedCount { revoked: 1 })),
        (
            "BrowserSessionResponse",
            fields_of(&BrowserSession {
                id: "b".into(),
                created_at: "t".into(),
                last_seen_at: "t".into(),
                idle_expires_at: "t".into(),
                absolute_expires_at: "t".into(),
                auth_time: "t".into(),
                amr: vec!["pwd".into()],
                ip: Some("127.0.0.1".into()),
                user_agent: Some("ua".into()),
            }),
        ),
    ];
    for (schema, ours) in checks {
        assert_eq!(ours, schema_fields(&spec, schema), "{schema} drifted from openapi/openapi.json");
    }
}

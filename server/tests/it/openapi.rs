//! The committed OpenAPI document must equal what the code generates.

#[test]
fn committed_spec_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json");
    let generated = latchkey_server::api::spec_json();
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is out of date. Regenerate it with:\n    \
         cargo run -p latchkey-server -- openapi > openapi/openapi.json"
    );
}

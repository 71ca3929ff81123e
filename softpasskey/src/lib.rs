//! A software passkey: an ES256 key pair and a credential id, answering WebAuthn's JSON
//! options (`{"publicKey": …}`) the way a browser and a platform authenticator together
//! would, with `attestation: none`. Tests use its [`Answer`] knobs to produce the
//! answers a relying party must refuse: another origin or relying party id, no user
//! verification, a counter that goes back.
//!
//! Only for tests and the benchmark: the private key lives in memory, unprotected.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// Why an answer could not be made.
#[derive(Debug)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

fn err(what: impl Into<String>) -> Error {
    Error(what.into())
}

/// How to answer a ceremony: by default as an honest browser at `origin` would.
#[derive(Debug, Clone)]
pub struct Answer {
    /// `clientData.origin`: the page's origin.
    pub origin: String,
    /// The relying party id hashed into the authenticator data; by default the one the
    /// options name (registration) or the one registered with (sign-in).
    pub rp_id: Option<String>,
    /// The UV flag: the authenticator checked a PIN or biometric.
    pub user_verified: bool,
    /// The signature counter to send instead of the next one.
    pub counter: Option<u32>,
    /// The challenge to sign instead of the options' (a replay of another ceremony).
    pub challenge: Option<String>,
}

impl Answer {
    pub fn at(origin: &str) -> Self {
        Self { origin: origin.to_string(), rp_id: None, user_verified: true, counter: None, challenge: None }
    }
}

/// A registered software passkey.
pub struct SoftPasskey {
    key: EcdsaKeyPair,
    credential_id: Vec<u8>,
    user_handle: Vec<u8>,
    rp_id: String,
    /// The last counter sent; `None` for an authenticator that never counts (sends 0).
    counter: Option<u32>,
}

impl SoftPasskey {
    /// Makes a new passkey for the creation `options`, and the browser's answer to them
    /// (`PublicKeyCredential.toJSON()`). `counting` picks an authenticator with a
    /// signature counter (a security key) or without (most synced passkeys).
    pub fn register(options: &Value, answer: &Answer, counting: bool) -> Result<(Self, Value), Error> {
        let public_key = options.get("publicKey").ok_or_else(|| err("no publicKey in the options"))?;
        let challenge = text(public_key, "challenge")?;
        let rp_id = public_key.pointer("/rp/id").and_then(Value::as_str).ok_or_else(|| err("no rp.id"))?;
        let user_handle =
            decode(public_key.pointer("/user/id").and_then(Value::as_str).ok_or_else(|| err("no user.id"))?)?;
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).map_err(|_| err("key generation"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
            .map_err(|_| err("key generation"))?;
        let mut credential_id = vec![0u8; 32];
        rng.fill(&mut credential_id).map_err(|_| err("randomness"))?;
        let passkey =
            Self { key, credential_id, user_handle, rp_id: rp_id.to_string(), counter: counting.then_some(0) };
        let client_data =
            client_data("webauthn.create", answer.challenge.as_deref().unwrap_or(challenge), &answer.origin);
        let mut auth_data = passkey.authenticator_data(answer, 0, true);
        // Attested credential data: AAGUID (zero: no attestation), the id, the COSE key.
        auth_data.extend_from_slice(&[0u8; 16]);
        auth_data.extend_from_slice(&(passkey.credential_id.len() as u16).to_be_bytes());
        auth_data.extend_from_slice(&passkey.credential_id);
        auth_data.extend_from_slice(&passkey.cose_key());
        let mut attestation = Vec::new();
        cbor_head(&mut attestation, 5, 3);
        cbor_text(&mut attestation, "fmt");
        cbor_text(&mut attestation, "none");
        cbor_text(&mut attestation, "attStmt");
        cbor_head(&mut attestation, 5, 0);
        cbor_text(&mut attestation, "authData");
        cbor_bytes(&mut attestation, &auth_data);
        let id = URL_SAFE_NO_PAD.encode(&passkey.credential_id);
        let credential = json!({
            "id": id,
            "rawId": id,
            "type": "public-key",
            "response": {
                "clientDataJSON": URL_SAFE_NO_PAD.encode(client_data.as_bytes()),
                "attestationObject": URL_SAFE_NO_PAD.encode(&attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": { "credProps": { "rk": true } },
        });
        Ok((passkey, credential))
    }

    /// The credential id, base64url.
    pub fn credential_id(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.credential_id)
    }

    /// Answers the request `options` of a sign-in (`navigator.credentials.get()`): an
    /// assertion over the challenge, with the user handle (a discoverable credential).
    pub fn sign_in(&mut self, options: &Value, answer: &Answer) -> Result<Value, Error> {
        let public_key = options.get("publicKey").ok_or_else(|| err("no publicKey in the options"))?;
        let challenge = answer.challenge.clone().unwrap_or(text(public_key, "challenge")?.to_string());
        let counter = match (answer.counter, self.counter) {
            (Some(forced), _) => forced,
            (None, Some(last)) => last + 1,
            (None, None) => 0,
        };
        if self.counter.is_some() {
            self.counter = Some(counter);
        }
        let client_data = client_data("webauthn.get", &challenge, &answer.origin);
        let auth_data = self.authenticator_data(answer, counter, false);
        let mut signed = auth_data.clone();
        signed.extend_from_slice(digest(&SHA256, client_data.as_bytes()).as_ref());
        let signature = self.key.sign(&SystemRandom::new(), &signed).map_err(|_| err("signing"))?;
        let id = self.credential_id();
        Ok(json!({
            "id": id,
            "rawId": id,
            "type": "public-key",
            "response": {
                "authenticatorData": URL_SAFE_NO_PAD.encode(&auth_data),
                "clientDataJSON": URL_SAFE_NO_PAD.encode(client_data.as_bytes()),
                "signature": URL_SAFE_NO_PAD.encode(signature.as_ref()),
                "userHandle": URL_SAFE_NO_PAD.encode(&self.user_handle),
            },
            "clientExtensionResults": {},
        }))
    }

    /// rpIdHash, flags (UP, UV as asked, AT when a credential follows), counter.
    fn authenticator_data(&self, answer: &Answer, counter: u32, attested: bool) -> Vec<u8> {
        let rp_id = answer.rp_id.as_deref().unwrap_or(&self.rp_id);
        let mut data = digest(&SHA256, rp_id.as_bytes()).as_ref().to_vec();
        let mut flags = 0x01u8;
        if answer.user_verified {
            flags |= 0x04;
        }
        if attested {
            flags |= 0x40;
        }
        data.push(flags);
        data.extend_from_slice(&counter.to_be_bytes());
        data
    }

    /// The public key as a COSE_Key: EC2, ES256, P-256, x, y.
    fn cose_key(&self) -> Vec<u8> {
        let point = self.key.public_key().as_ref();
        let (x, y) = (&point[1..33], &point[33..65]);
        let mut key = Vec::new();
        cbor_head(&mut key, 5, 5);
        cbor_int(&mut key, 1);
        cbor_int(&mut key, 2);
        cbor_int(&mut key, 3);
        cbor_int(&mut key, -7);
        cbor_int(&mut key, -1);
        cbor_int(&mut key, 1);
        cbor_int(&mut key, -2);
        cbor_bytes(&mut key, x);
        cbor_int(&mut key, -3);
        cbor_bytes(&mut key, y);
        key
    }
}

fn text<'a>(object: &'a Value, name: &str) -> Result<&'a str, Error> {
    object.get(name).and_then(Value::as_str).ok_or_else(|| err(format!("no {name}")))
}

fn decode(value: &str) -> Result<Vec<u8>, Error> {
    URL_SAFE_NO_PAD.decode(value.trim_end_matches('=')).map_err(|_| err("not base64url"))
}

fn client_data(kind: &str, challenge: &str, origin: &str) -> String {
    json!({ "type": kind, "challenge": challenge, "origin": origin, "crossOrigin": false }).to_string()
}

/// A CBOR head: major type and length (or value).
fn cbor_head(out: &mut Vec<u8>, major: u8, value: u64) {
    let major = major << 5;
    match value {
        0..=23 => out.push(major | value as u8),
        24..=0xff => out.extend_from_slice(&[major | 24, value as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend_from_slice(&(value as u16).to_be_bytes());
        }
        _ => {
            out.push(major | 26);
            out.extend_from_slice(&(value as u32).to_be_bytes());
        }
    }
}

fn cbor_int(out: &mut Vec<u8>, value: i64) {
    if value >= 0 {
        cbor_head(out, 0, value as u64);
    } else {
        cbor_head(out, 1, (-1 - value) as u64);
    }
}

fn cbor_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    cbor_head(out, 2, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn cbor_text(out: &mut Vec<u8>, text: &str) {
    cbor_head(out, 3, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

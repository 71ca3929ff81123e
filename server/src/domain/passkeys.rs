//! Passkeys (WebAuthn): registration, sign-in (usernameless, or as the second factor
//! after a password), and the user's list of them; and the policy that some roles must
//! hold a second factor.
//!
//! A ceremony is started by one request and finished by another, on any node: its state
//! is stored ([`store::create_ceremony`]) and taken once by the finish
//! ([`store::take_ceremony`]), so a challenge is answered once and never after
//! `passkeys.ceremony_ttl_secs`. Registration asks for a discoverable credential with
//! user verification; every sign-in requires user verification.
//!
//! The signature counter is judged here, not by the library (whose rule is fixed): a
//! counter that does not move past the stored one is audited as a possible clone, and
//! refused when `passkeys.refuse_counter_regression` is on.
//!
//! No attestation is asked for (it would identify the authenticator's model, and synced
//! passkeys rarely give one), so nothing proves a key is hardware-bound: `amr` says
//! `swk` and never `hwk`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use webauthn_rs::Webauthn;
use webauthn_rs::prelude::{
    Credential, DiscoverableAuthentication, Passkey, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, WebauthnError,
};

use crate::security::Secret;
use crate::security::passkeys::counter_regressed;
use crate::state::AppState;
use crate::store::TokenStore;
use crate::store::audit::{self, NewAuditEvent};
use crate::store::entities::UserStatus;
use crate::store::passkeys::{self as store, CeremonyRow, Deleted, PasskeyRow, PasskeyUse};
use crate::store::users::{self as user_store, UserRow};

use super::auth::RequestContext;
use super::{Error, ErrorCode, Result, new_id};

/// `amr` of a sign-in with a passkey alone (RFC 8176): proof of a software-secured key,
/// with the user verified by the authenticator.
pub const AMR_PASSKEY: &[&str] = &["swk", "user"];
/// `amr` of a password followed by a passkey.
pub const AMR_PASSWORD_AND_PASSKEY: &[&str] = &["pwd", "swk", "mfa"];
/// `amr` values of which one meets `mfa.require_for_roles`: a second factor after the
/// password, or a passkey (possession plus the authenticator's user verification).
pub const SATISFIES_POLICY: &[&str] = &["mfa", "swk", "hwk"];

/// What a ceremony is for, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Register,
    /// Usernameless: the passkey names the user.
    SignIn,
    /// After the password of the ceremony's user.
    SecondFactor,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Register => "register",
            Purpose::SignIn => "sign_in",
            Purpose::SecondFactor => "second_factor",
        }
    }
}

/// A started ceremony: its id (sent back with the answer) and the options for
/// `navigator.credentials.create()` or `.get()` (`{"publicKey": {…}}`, WebAuthn's JSON
/// form, binary values base64url).
pub struct Ceremony {
    pub id: String,
    pub options: Value,
    pub expires_in: u64,
}

/// A passkey as its owner and the admins see it.
#[derive(Debug, Clone)]
pub struct PasskeyView {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub backup_eligible: bool,
    pub backup_state: bool,
    pub sign_count: i64,
}

impl From<PasskeyRow> for PasskeyView {
    fn from(row: PasskeyRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            backup_eligible: row.backup_eligible,
            backup_state: row.backup_state,
            sign_count: row.sign_count,
        }
    }
}

/// Longest name of a passkey.
pub const NAME_MAX: usize = 64;

/// Most passkeys one account holds: enough for every device a person owns, and a bound
/// on the `excludeCredentials` and `allowCredentials` lists.
pub const PER_USER_MAX: usize = 25;

fn too_many() -> Error {
    Error::Conflict {
        code: ErrorCode::TooManyPasskeys,
        description: format!("an account holds at most {PER_USER_MAX} passkeys; delete one first"),
    }
}

fn relying_party(state: &AppState) -> Result<&Webauthn> {
    state.webauthn.as_ref().ok_or_else(|| Error::Forbidden {
        code: ErrorCode::PasskeysUnavailable,
        description: "passkeys are not available on this server (they need a public URL on a domain)".into(),
    })
}

/// Whether passkeys work on this server.
pub fn available(state: &AppState) -> bool {
    state.webauthn.is_some()
}

fn invalid(description: &str) -> Error {
    Error::InvalidPasskey(description.to_string())
}

fn internal(what: &str, err: impl std::fmt::Display) -> Error {
    Error::Internal(format!("{what}: {err}"))
}

/// A passkey's name as given: trimmed, 1–64 characters, no control characters.
pub fn check_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NAME_MAX || name.chars().any(char::is_control) {
        return Err(Error::bad_request(
            ErrorCode::InvalidName,
            format!("a passkey's name is 1-{NAME_MAX} characters, without control characters"),
        ));
    }
    Ok(name.to_string())
}

/// The WebAuthn user handle of a user: the bytes of its id (a UUID, never personal data).
fn user_handle(user: &UserRow) -> Result<uuid::Uuid> {
    uuid::Uuid::try_parse(&user.id).map_err(|e| internal("a user id is not a UUID", e))
}

fn passkey_of(row: &PasskeyRow) -> Result<Passkey> {
    serde_json::from_str(&row.credential).map_err(|e| internal("a stored passkey does not parse", e))
}

async fn start(
    state: &AppState,
    purpose: Purpose,
    user_id: Option<&str>,
    options: Value,
    ceremony: String,
) -> Result<Ceremony> {
    let now = state.now();
    let ttl = state.config.passkeys.as_ref().map_or(300, |p| p.ceremony_ttl.as_secs());
    let id = new_id();
    store::create_ceremony(
        &state.db,
        CeremonyRow {
            id: id.clone(),
            purpose: purpose.as_str().into(),
            user_id: user_id.map(str::to_string),
            state: ceremony,
            created_at: now,
            expires_at: now + ttl as i64,
        },
    )
    .await?;
    Ok(Ceremony { id, options, expires_in: ttl })
}

/// The options as JSON, with `edit` applied to their `publicKey` member.
fn options_json(
    options: &impl serde::Serialize,
    edit: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> Result<Value> {
    let mut value = serde_json::to_value(options).map_err(|e| internal("passkey options", e))?;
    if let Some(public_key) = value.get_mut("publicKey").and_then(Value::as_object_mut) {
        edit(public_key);
    }
    // Mediation (conditional UI or a dialog) is the page's choice, not the server's.
    if let Some(object) = value.as_object_mut() {
        object.remove("mediation");
    }
    Ok(value)
}

/// Starts registering a passkey for the signed-in `user`, whose password is checked
/// again first (as for TOTP): a stolen session or access token alone cannot plant a
/// lasting credential. Counts as a password attempt for the lockout.
pub async fn start_registration_rechecked(
    state: &AppState,
    user: &UserRow,
    password: &Secret<String>,
    ctx: &RequestContext,
) -> Result<Ceremony> {
    let checked = super::auth::check_password(state, &user.username, password, ctx).await?;
    if checked.id != user.id {
        return Err(Error::Internal("a re-checked password named another account".into()));
    }
    start_registration(state, &checked).await
}

/// Starts registering a passkey for `user`, whose password has just been checked (the
/// sign-in's enrolment stage, or [`start_registration_rechecked`]). Its existing
/// passkeys are excluded (an authenticator holding one says so instead of making a
/// second); an account holds at most [`PER_USER_MAX`].
pub async fn start_registration(state: &AppState, user: &UserRow) -> Result<Ceremony> {
    let webauthn = relying_party(state)?;
    let existing = store::of_user(&state.db, &user.id).await?;
    if existing.len() >= PER_USER_MAX {
        return Err(too_many());
    }
    let mut exclude = Vec::with_capacity(existing.len());
    for row in &existing {
        exclude.push(passkey_of(row)?.cred_id().clone());
    }
    let (options, registration) = webauthn
        .start_passkey_registration(user_handle(user)?, &user.username, &user.username, Some(exclude))
        .map_err(|e| internal("cannot start a passkey registration", e))?;
    // A discoverable credential, so the passkey alone can sign in (no username typed).
    let options = options_json(&options, |public_key| {
        if let Some(selection) = public_key.get_mut("authenticatorSelection").and_then(Value::as_object_mut) {
            selection.insert("residentKey".into(), "required".into());
            selection.insert("requireResidentKey".into(), true.into());
        }
    })?;
    let saved = serde_json::to_string(&registration).map_err(|e| internal("passkey registration state", e))?;
    start(state, Purpose::Register, Some(&user.id), options, saved).await
}

/// Finishes a registration `ceremony_id` of `user` with the browser's `credential`. A
/// refused answer is a 400 `invalid_passkey` (the user is signed in: nothing to
/// authenticate again).
pub async fn finish_registration(
    state: &AppState,
    user: &UserRow,
    ceremony_id: &str,
    name: &str,
    credential: Value,
    ctx: &RequestContext,
) -> Result<PasskeyView> {
    register(state, user, ceremony_id, name, credential, ctx).await.map_err(|err| match err {
        Error::InvalidPasskey(description) => Error::bad_request(ErrorCode::InvalidPasskey, description),
        other => other,
    })
}

async fn register(
    state: &AppState,
    user: &UserRow,
    ceremony_id: &str,
    name: &str,
    credential: Value,
    ctx: &RequestContext,
) -> Result<PasskeyView> {
    let webauthn = relying_party(state)?;
    let name = check_name(name)?;
    let now = ctx.now;
    let ceremony = take(state, ceremony_id, Purpose::Register, now).await?;
    if ceremony.user_id.as_deref() != Some(user.id.as_str()) {
        return Err(invalid("this registration was started for another account"));
    }
    // The browser reports (credProps) whether the authenticator made a discoverable
    // credential; one that says it did not cannot sign in without a username.
    if credential.pointer("/clientExtensionResults/credProps/rk") == Some(&Value::Bool(false)) {
        return Err(invalid("this authenticator cannot keep a passkey (a discoverable credential); use another"));
    }
    let credential: RegisterPublicKeyCredential = serde_json::from_value(credential)
        .map_err(|_| Error::bad_request(ErrorCode::InvalidRequest, "credential is not a WebAuthn registration"))?;
    let registration: PasskeyRegistration =
        serde_json::from_str(&ceremony.state).map_err(|e| internal("stored registration state", e))?;
    let passkey = webauthn.finish_passkey_registration(&credential, &registration).map_err(|e| {
        tracing::info!(error = %e, user_id = %user.id, "passkey registration refused");
        invalid(refusal(&e))
    })?;
    let facts: Credential = passkey.clone().into();
    let row = PasskeyRow {
        id: new_id(),
        user_id: user.id.clone(),
        credential_id: URL_SAFE_NO_PAD.encode::<&[u8]>(passkey.cred_id().as_ref()),
        name: name.clone(),
        credential: serde_json::to_string(&passkey).map_err(|e| internal("passkey", e))?,
        sign_count: i64::from(facts.counter),
        backup_eligible: facts.backup_eligible,
        backup_state: facts.backup_state,
        created_at: now,
        last_used_at: None,
    };
    let event = NewAuditEvent::success(now, &user.id, "passkey.register", &user.id)
        .ip(ctx.ip.clone())
        .details(serde_json::json!({ "passkey_id": row.id, "name": name, "backup_eligible": row.backup_eligible }));
    match store::insert(&state.db, row.clone(), PER_USER_MAX, event).await {
        Ok(true) => Ok(row.into()),
        Ok(false) => Err(too_many()),
        Err(crate::store::StoreError::Conflict) => Err(Error::Conflict {
            code: ErrorCode::PasskeyExists,
            description: "this authenticator's passkey is registered already".into(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Words for a refused answer that say what to fix and nothing of our state.
fn refusal(err: &WebauthnError) -> &'static str {
    match err {
        WebauthnError::InvalidRPOrigin => "the answer came from a page of another origin",
        WebauthnError::InvalidRPIDHash => "the answer is for another relying party id",
        WebauthnError::UserNotVerified => "the authenticator did not verify the user (PIN or biometrics)",
        WebauthnError::MismatchedChallenge => "the answer is for another challenge",
        WebauthnError::CredentialPossibleCompromise => "the passkey's signature counter went back",
        _ => "the authenticator's answer was refused",
    }
}

async fn take(state: &AppState, ceremony_id: &str, purpose: Purpose, now: i64) -> Result<CeremonyRow> {
    if ceremony_id.len() > 64 {
        return Err(invalid("this passkey ceremony is unknown, expired or used; start again"));
    }
    store::take_ceremony(&state.db, ceremony_id, purpose.as_str(), now)
        .await?
        .ok_or_else(|| invalid("this passkey ceremony is unknown, expired or used; start again"))
}

/// Starts a sign-in: usernameless (`for_user` is `None`: any discoverable passkey of
/// ours will do), or the second factor of `for_user`, whose passkeys are then listed.
pub async fn start_sign_in(state: &AppState, for_user: Option<&UserRow>) -> Result<Ceremony> {
    let webauthn = relying_party(state)?;
    let allowed = match for_user {
        Some(user) => {
            let mut ids = Vec::new();
            for row in store::of_user(&state.db, &user.id).await? {
                ids.push(serde_json::json!({ "type": "public-key", "id": row.credential_id }));
            }
            if ids.is_empty() {
                return Err(invalid("this account has no passkey"));
            }
            Some(ids)
        }
        None => None,
    };
    let (options, authentication) =
        webauthn.start_discoverable_authentication().map_err(|e| internal("cannot start a passkey sign-in", e))?;
    let options = options_json(&options, |public_key| {
        if let Some(ids) = allowed {
            public_key.insert("allowCredentials".into(), Value::Array(ids));
        }
    })?;
    let saved = serde_json::to_string(&authentication).map_err(|e| internal("passkey sign-in state", e))?;
    let purpose = if for_user.is_some() { Purpose::SecondFactor } else { Purpose::SignIn };
    start(state, purpose, for_user.map(|u| u.id.as_str()), options, saved).await
}

/// A finished sign-in: the user, and the passkey used.
pub struct SignedInWithPasskey {
    pub user: UserRow,
    pub passkey_id: String,
}

/// Finishes a sign-in ceremony with the browser's `credential`: usernameless when
/// `second_factor_of` is `None`, else the second factor of that user (the ceremony must
/// have been started for them). The user must be active.
pub async fn finish_sign_in(
    state: &AppState,
    ceremony_id: &str,
    second_factor_of: Option<&str>,
    credential: Value,
    ctx: &RequestContext,
) -> Result<SignedInWithPasskey> {
    let webauthn = relying_party(state)?;
    let now = ctx.now;
    let purpose = if second_factor_of.is_some() { Purpose::SecondFactor } else { Purpose::SignIn };
    let ceremony = take(state, ceremony_id, purpose, now).await?;
    if ceremony.user_id.as_deref() != second_factor_of {
        return Err(invalid("this passkey sign-in was started for another account"));
    }
    let answer: PublicKeyCredential = serde_json::from_value(credential)
        .map_err(|_| Error::bad_request(ErrorCode::InvalidRequest, "credential is not a WebAuthn assertion"))?;
    let credential_id = URL_SAFE_NO_PAD.encode(&answer.raw_id);
    let Some(row) = store::by_credential_id(&state.db, &credential_id).await? else {
        audit_failure(state, "anonymous", None, "unknown_passkey", ctx).await?;
        return Err(invalid("this passkey is not registered here"));
    };
    if second_factor_of.is_some_and(|expected| expected != row.user_id) {
        audit_failure(state, &row.user_id, Some(&row.id), "another_users_passkey", ctx).await?;
        return Err(invalid("this passkey belongs to another account"));
    }
    let user = user_store::find_by_id(&state.db, &row.user_id).await?.ok_or(Error::NotFound("user"))?;
    // A discoverable credential names its user; it must be the credential's owner.
    if let Some(handle) = answer.get_user_unique_id()
        && handle != user_handle(&user)?.as_bytes()
    {
        audit_failure(state, &row.user_id, Some(&row.id), "user_handle_mismatch", ctx).await?;
        return Err(invalid("this passkey belongs to another account"));
    }
    let mut passkey = passkey_of(&row)?;
    let authentication: DiscoverableAuthentication =
        serde_json::from_str(&ceremony.state).map_err(|e| internal("stored sign-in state", e))?;
    // The counter is ours to judge (below): the library sees it as never used.
    let mut checked: Credential = passkey.clone().into();
    checked.counter = 0;
    let result = match webauthn.finish_discoverable_authentication_v2(&answer, authentication, &checked) {
        Ok(result) => result,
        Err(e) => {
            tracing::info!(error = %e, passkey_id = %row.id, "passkey sign-in refused");
            audit_failure(state, &row.user_id, Some(&row.id), "assertion_refused", ctx).await?;
            return Err(invalid(refusal(&e)));
        }
    };
    let stored = u32::try_from(row.sign_count).unwrap_or(u32::MAX);
    let refuse_regressions = state.config.passkeys.as_ref().is_some_and(|p| p.refuse_counter_regression);
    if counter_regressed(stored, result.counter()) {
        let refused = refuse_regressions;
        tracing::warn!(passkey_id = %row.id, user_id = %row.user_id, stored, presented = result.counter(), refused,
            "a passkey's signature counter did not move forward: a possible cloned authenticator");
        let event = NewAuditEvent::success(now, &row.user_id, "passkey.counter_regression", &row.user_id)
            .outcome(if refused { "failure" } else { "success" })
            .ip(ctx.ip.clone())
            .details(serde_json::json!({
                "passkey_id": row.id, "stored": stored, "presented": result.counter(), "refused": refused,
            }));
        audit::record_alone(&state.db, event).await?;
        if refused {
            return Err(invalid(refusal(&WebauthnError::CredentialPossibleCompromise)));
        }
    }
    if user.status != UserStatus::Active {
        audit_failure(state, &user.id, Some(&row.id), "account_disabled", ctx).await?;
        return Err(invalid("this account cannot sign in"));
    }
    super::verification::check_may_sign_in(state, &user)?;
    passkey.update_credential(&result);
    let updated = serde_json::to_string(&passkey).map_err(|e| internal("passkey", e))?;
    let used = PasskeyUse {
        id: &row.id,
        credential: &updated,
        sign_count: i64::from(result.counter()),
        backup_eligible: result.backup_eligible(),
        backup_state: result.backup_state(),
        now,
    };
    let event = NewAuditEvent::success(now, &user.id, "passkey.use", &user.id)
        .ip(ctx.ip.clone())
        .details(serde_json::json!({ "passkey_id": row.id, "second_factor": second_factor_of.is_some() }));
    if !store::record_use(&state.db, used, refuse_regressions, event).await? {
        // Another use of the same counter won the race (a clone), or the passkey was
        // deleted since it was read.
        audit_failure(state, &user.id, Some(&row.id), "stale_use", ctx).await?;
        return Err(invalid("this passkey's use was overtaken by another; sign in again"));
    }
    Ok(SignedInWithPasskey { user, passkey_id: row.id })
}

async fn audit_failure(
    state: &AppState,
    actor: &str,
    passkey_id: Option<&str>,
    reason: &'static str,
    ctx: &RequestContext,
) -> Result<()> {
    let event = NewAuditEvent::success(ctx.now, actor, "passkey.use", actor)
        .outcome("failure")
        .ip(ctx.ip.clone())
        .details(serde_json::json!({ "reason": reason, "passkey_id": passkey_id }));
    audit::record_alone(&state.db, event).await?;
    Ok(())
}

/// A user's passkeys.
pub async fn list(state: &AppState, user_id: &str) -> Result<Vec<PasskeyView>> {
    Ok(store::of_user(&state.db, user_id).await?.into_iter().map(Into::into).collect())
}

/// Renames one of `user_id`'s passkeys.
pub async fn rename(state: &AppState, user_id: &str, id: &str, name: &str, ctx: &RequestContext) -> Result<()> {
    super::users::check_id(id)?;
    let name = check_name(name)?;
    let event = NewAuditEvent::success(ctx.now, user_id, "passkey.rename", user_id)
        .ip(ctx.ip.clone())
        .details(serde_json::json!({ "passkey_id": id, "name": name }));
    if !store::rename(&state.db, user_id, id, &name, event).await? {
        return Err(Error::NotFound("passkey"));
    }
    Ok(())
}

/// The user deletes one of their passkeys. The last second factor of an account whose
/// roles require one stays.
pub async fn delete(state: &AppState, user_id: &str, id: &str, ctx: &RequestContext) -> Result<()> {
    let keep_a_factor = requires_second_factor(state, user_id).await?;
    remove(state, user_id, id, user_id, keep_a_factor, ctx).await
}

/// An admin deletes a user's passkey (a lost device), even the last one: an account
/// that must have a second factor then enrols one at its next sign-in.
pub async fn admin_delete(state: &AppState, user_id: &str, id: &str, by: &super::rbac::Grantor<'_>) -> Result<()> {
    super::users::check_id(user_id)?;
    user_store::find_by_id(&state.db, user_id).await?.ok_or(Error::NotFound("user"))?;
    super::users::check_may_manage(state, by, user_id, "passkey.delete").await?;
    remove(state, user_id, id, by.actor(), false, &RequestContext::internal(state.now())).await
}

async fn remove(
    state: &AppState,
    user_id: &str,
    id: &str,
    actor: &str,
    keep_a_factor: bool,
    ctx: &RequestContext,
) -> Result<()> {
    super::users::check_id(id)?;
    let event = NewAuditEvent::success(ctx.now, actor, "passkey.delete", user_id)
        .ip(ctx.ip.clone())
        .details(serde_json::json!({ "passkey_id": id }));
    match store::delete(&state.db, user_id, id, keep_a_factor, event).await? {
        Deleted::Done => Ok(()),
        Deleted::NotFound => Err(Error::NotFound("passkey")),
        Deleted::LastFactor => Err(last_factor()),
    }
}

/// The refusal to remove an account's last required second factor.
pub fn last_factor() -> Error {
    Error::Conflict {
        code: ErrorCode::LastFactor,
        description: "this account's roles require a second factor, and this is its last one; add another first".into(),
    }
}

/// Warns of `mfa.require_for_roles` names that are no role (yet): a typo there would
/// quietly require nothing. Not an error, since the role may be created later.
pub async fn check_policy_roles_at_startup(state: &AppState) -> Result<()> {
    let required = &state.config.mfa.require_for_roles;
    if required.is_empty() {
        return Ok(());
    }
    let missing = crate::store::roles::missing(&state.db, required).await?;
    if !missing.is_empty() {
        tracing::warn!(roles = ?missing, "mfa.require_for_roles names roles that do not exist: nobody holds them yet");
    }
    Ok(())
}

/// Whether a sign-in whose `amr` (space-separated) is this proved a second factor or a
/// passkey, as `mfa.require_for_roles` asks.
pub fn amr_meets_policy(amr: &str) -> bool {
    amr.split_ascii_whitespace().any(|method| SATISFIES_POLICY.contains(&method))
}

/// Whether `mfa.require_for_roles` names one of `roles`.
pub fn roles_require_second_factor(state: &AppState, roles: &[String]) -> bool {
    let required = &state.config.mfa.require_for_roles;
    !required.is_empty() && roles.iter().any(|role| required.contains(role))
}

/// Whether `mfa.require_for_roles` names one of the user's roles.
pub async fn requires_second_factor(state: &AppState, user_id: &str) -> Result<bool> {
    if state.config.mfa.require_for_roles.is_empty() {
        return Ok(false);
    }
    let roles = state.tokens.user_role_names(user_id).await?;
    Ok(roles_require_second_factor(state, &roles))
}

/// The second factors a user can use after the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Factors {
    pub totp: bool,
    pub passkey: bool,
}

impl Factors {
    pub async fn of(state: &AppState, user: &UserRow) -> Result<Self> {
        let passkey = available(state) && store::count_of_user(&state.db, &user.id).await? > 0;
        Ok(Self { totp: user.totp_enabled, passkey })
    }

    pub fn any(self) -> bool {
        self.totp || self.passkey
    }
}

/// What follows a correct password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterPassword {
    /// Signed in with the password alone.
    Done,
    /// A second factor is needed: one of these.
    SecondFactor(Factors),
    /// The account's roles require a second factor it does not have.
    MustEnrol,
}

/// The rule after a correct password: TOTP, once enabled, is always asked for; an
/// account whose roles require a second factor must use one it has (a passkey, if that
/// is what it has), or enrol one first.
pub async fn after_password(state: &AppState, user: &UserRow) -> Result<AfterPassword> {
    let factors = Factors::of(state, user).await?;
    let required = requires_second_factor(state, &user.id).await?;
    Ok(match (factors.totp, required, factors.any()) {
        (true, _, _) | (false, true, true) => AfterPassword::SecondFactor(factors),
        (false, true, false) => AfterPassword::MustEnrol,
        (false, false, _) => AfterPassword::Done,
    })
}

/// The refusal of an API sign-in that has to enrol a second factor first.
pub fn enrolment_required() -> Error {
    Error::Forbidden {
        code: ErrorCode::MfaEnrolmentRequired,
        description: "this account's roles require a second factor: sign in at the hosted page to register a passkey"
            .into(),
    }
}

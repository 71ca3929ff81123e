//! User accounts: validation of usernames and passwords, registration and creation.

use crate::store::entities::{EmailTokenPurpose, UserStatus};
use latchkey_codes::ErrorCode;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use crate::config::PASSWORD_MAX_LENGTH;
use crate::security::Secret;
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::audit::NewAuditEvent;
use crate::store::users::{self, NewUser, UserRow};

use super::rbac::Grantor;
use super::{Error, Result, new_id};

pub const USERNAME_MAX_LENGTH: usize = 64;
/// Every account holds this role, so resource servers can tell users from services.
pub const DEFAULT_ROLE: &str = "user";

/// A user as the rest of the system sees it: never with the password hash.
#[derive(Debug, Clone)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    /// Whether `email` was proved (a mailed link followed, or an admin's word).
    pub email_verified: bool,
    pub status: UserStatus,
    pub roles: Vec<String>,
    pub created_at: i64,
    pub totp_enabled: bool,
    /// Consecutive failures of the password or of TOTP, whichever is higher.
    pub failed_logins: i32,
    /// The later of the password and TOTP locks, if any is set.
    pub locked_until: Option<i64>,
}

impl UserView {
    pub fn new(row: UserRow, roles: Vec<String>) -> Self {
        Self {
            locked_until: row.locked_until.max(row.totp_locked_until),
            failed_logins: row.failed_logins.max(row.totp_failures),
            totp_enabled: row.totp_enabled,
            email_verified: row.email_verified && row.email.is_some(),
            id: row.id,
            username: row.username,
            email: row.email,
            status: row.status,
            roles,
            created_at: row.created_at,
        }
    }
}

/// The display form and the login form of a username. Both are NFKC-normalised (so the
/// fullwidth `ａdmin` *is* `admin`) and trimmed; the login form is also case-folded, which
/// is what uniqueness and login compare, so `Alice` and `alice ` are one account. Control
/// and invisible format characters (Unicode category Cf: zero-width spaces, joiners,
/// direction marks) are refused, since two names that differ only by them look the same.
pub fn normalize_username(raw: &str) -> Result<(String, String)> {
    // The limit holds for the name as sent (what the published schema's `maxLength`
    // promises) and again after normalising, which can expand a character eighteen-fold.
    if raw.chars().count() > USERNAME_MAX_LENGTH {
        return Err(username_length_error());
    }
    normalized(raw)
}

fn normalized(raw: &str) -> Result<(String, String)> {
    // Bound the work before normalising: NFKC can expand a character eighteen-fold.
    if raw.len() > USERNAME_MAX_LENGTH * 4 * 4 {
        return Err(username_length_error());
    }
    let display: String = raw.nfkc().collect::<String>().trim().to_string();
    let length = display.chars().count();
    if length == 0 || length > USERNAME_MAX_LENGTH {
        return Err(username_length_error());
    }
    if display.chars().any(|c| c.is_control() || c.general_category() == GeneralCategory::Format) {
        return Err(Error::bad_request(
            ErrorCode::InvalidUsername,
            "username must not contain control or invisible formatting characters",
        ));
    }
    let login: String = display.to_lowercase().nfkc().collect();
    Ok((display, login))
}

fn username_length_error() -> Error {
    Error::bad_request(ErrorCode::InvalidUsername, format!("username must be 1 to {USERNAME_MAX_LENGTH} characters"))
}

/// The login form of a username typed at a login, checked as at registration (except
/// that blanks around it do not count towards the length: a name typed with a stray
/// space still signs in), before it keys a rate-limit bucket, a lookup or an audit event.
pub fn login_name(raw: &str) -> Result<String> {
    normalized(raw).map(|(_, login)| login)
}

/// The UTS #39 skeleton of a login name: look-alikes (Cyrillic `а` for Latin `a`, `rn`
/// for `m`, `0` for `O`) share one, and only one account may hold each.
pub fn username_skeleton(login: &str) -> String {
    unicode_security::skeleton(login).collect::<String>().to_lowercase()
}

/// Length in characters (not bytes), so any Unicode password of that length is allowed.
pub fn validate_password(password: &str, min_length: usize) -> Result<()> {
    let length = password.chars().count();
    if length < min_length || length > PASSWORD_MAX_LENGTH {
        return Err(Error::bad_request(
            ErrorCode::InvalidPassword,
            format!("password must be {min_length} to {PASSWORD_MAX_LENGTH} characters"),
        ));
    }
    Ok(())
}

pub fn validate_email(email: Option<String>) -> Result<Option<String>> {
    let Some(email) = email.map(|e| e.trim().to_string()).filter(|e| !e.is_empty()) else {
        return Ok(None);
    };
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        return Err(Error::bad_request(ErrorCode::InvalidEmail, "email address is not valid"));
    }
    Ok(Some(email))
}

pub struct NewAccount {
    pub username: String,
    pub password: Secret<String>,
    pub email: Option<String>,
    /// Roles in addition to the default `user` role.
    pub roles: Vec<String>,
}

/// Creates an account. `by` names who did it, for the audit log, and bounds the roles
/// it may hand out (self-registration asks for none).
pub async fn create(state: &AppState, account: NewAccount, by: &Grantor<'_>, ip: Option<String>) -> Result<UserView> {
    let actor = by.actor();
    let self_registered = actor == SELF_REGISTRATION;
    let (username, normalized) = normalize_username(&account.username)?;
    validate_password(account.password.expose(), state.config.passwords.min_length)?;
    let email = validate_email(account.email)?;
    if self_registered && state.config.require_verified_email && email.is_none() {
        return Err(Error::bad_request(ErrorCode::InvalidEmail, "an email address is required to register"));
    }
    let extra = granted_roles(account.roles);
    by.check_roles(state, "user.create", &normalized, &extra).await?;
    let mut roles = extra;
    roles.push(DEFAULT_ROLE.to_string());
    roles.sort();
    roles.dedup();

    if users::find_by_username(&state.db, &normalized).await?.is_some() {
        return Err(username_taken());
    }
    let password_hash = state.passwords.hash(&account.password).await?;
    let now = state.now();
    let id = new_id();
    let event = NewAuditEvent {
        occurred_at: now,
        actor: actor.to_string(),
        action: "user.create",
        target: Some(id.clone()),
        ip,
        outcome: "success",
        details: serde_json::json!({ "username": username, "roles": roles }),
    };
    let skeleton = username_skeleton(&normalized);
    // With mail, an address given is one to prove: its link commits with the account,
    // within the address's hourly share (registering accounts is no way to mail-bomb
    // it; past the share, the account asks for its link later).
    let verification = match (&email, &state.config.mail) {
        (Some(address), Some(_))
            if super::mail::take_address_token(state, address, EmailTokenPurpose::Verify).await?.is_ok() =>
        {
            Some(super::verification::prepare(state, &id, &username, address, None, now))
        }
        _ => None,
    };
    let mails = verification.as_ref().map_or(0, |(_, mails)| mails.len());
    let new_user =
        NewUser { id, username, username_normalized: normalized, skeleton, email, password_hash, self_registered, now };
    let row = match users::create(&state.db, new_user, &roles, verification, event).await {
        Ok(row) => row,
        // Two registrations raced; the unique index decided.
        Err(StoreError::Conflict) => return Err(username_taken()),
        Err(StoreError::Missing(what)) => {
            return Err(Error::bad_request(ErrorCode::UnknownRole, format!("unknown {what}")));
        }
        Err(e) => return Err(e.into()),
    };
    super::mail::count_queued(state, mails);
    Ok(UserView::new(row, roles))
}

/// The actor of `POST /auth/register`: accounts it makes are self-registered.
pub const SELF_REGISTRATION: &str = "self-registration";

/// The roles of a grant besides the default `user` role, which every account holds anyway
/// (self-registration hands it out), deduplicated and sorted.
fn granted_roles(roles: Vec<String>) -> Vec<String> {
    let mut roles: Vec<String> = roles.into_iter().filter(|r| r != DEFAULT_ROLE).collect();
    roles.sort();
    roles.dedup();
    roles
}

/// Refuses `operation` on an account holding roles the grantor could not grant.
pub(crate) async fn check_may_manage(
    state: &AppState,
    by: &Grantor<'_>,
    user_id: &str,
    operation: &'static str,
) -> Result<()> {
    if by.is_full_admin() {
        return Ok(());
    }
    let held = granted_roles(users::role_names(&state.db, user_id).await?);
    by.check_roles(state, operation, user_id, &held).await
}

fn username_taken() -> Error {
    Error::Conflict {
        code: ErrorCode::UsernameTaken,
        description: "that username is taken, or looks like one that is".into(),
    }
}

pub async fn get(state: &AppState, user_id: &str) -> Result<UserView> {
    let row = users::find_by_id(&state.db, user_id).await?.ok_or(Error::NotFound("user"))?;
    let roles = users::role_names(&state.db, &row.id).await?;
    Ok(UserView::new(row, roles))
}

/// A user status as submitted (`active` or `disabled`).
pub fn parse_status(word: &str) -> Result<UserStatus> {
    UserStatus::parse(word)
        .ok_or_else(|| Error::bad_request(ErrorCode::InvalidStatus, "status must be active or disabled"))
}

/// Rejects ids that cannot be ours (ids are UUIDs) with 400 rather than a lookup.
pub fn check_id(id: &str) -> Result<()> {
    uuid::Uuid::try_parse(id).map(|_| ()).map_err(|_| Error::bad_request(ErrorCode::InvalidId, "malformed id"))
}

pub async fn list(
    state: &AppState,
    filter: &users::UserFilter,
    page: crate::store::Page,
) -> Result<(Vec<UserView>, u64)> {
    let (rows, total) = users::list(&state.db, filter, page).await?;
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut roles = users::role_names_of(&state.db, &ids).await?;
    let views = rows
        .into_iter()
        .map(|row| {
            let roles = roles.remove(&row.id).unwrap_or_default();
            UserView::new(row, roles)
        })
        .collect();
    Ok((views, total))
}

/// Creates a user for an admin. Without a password, a one-time password is generated
/// and returned (shown once).
pub async fn admin_create(
    state: &AppState,
    username: String,
    email: Option<String>,
    password: Option<Secret<String>>,
    roles: Vec<String>,
    by: &Grantor<'_>,
) -> Result<(UserView, Option<Secret<String>>)> {
    let (password, generated) = match password {
        Some(password) => (password, false),
        None => (crate::security::generate_token(""), true),
    };
    let account = NewAccount { username, password: password.clone(), email, roles };
    let user = create(state, account, by, None).await?;
    Ok((user, generated.then_some(password)))
}

fn user_event(now: i64, actor: &str, action: &'static str, user_id: &str, details: serde_json::Value) -> NewAuditEvent {
    NewAuditEvent::success(now, actor, action, user_id).details(details)
}

async fn apply(state: &AppState, user_id: &str, changes: users::UserChanges, event: NewAuditEvent) -> Result<UserView> {
    check_id(user_id)?;
    match users::update(&state.db, user_id, changes, event.occurred_at, event).await {
        Ok(Some(_)) => get(state, user_id).await,
        Ok(None) => Err(Error::NotFound("user")),
        Err(StoreError::Missing(what)) => Err(Error::bad_request(ErrorCode::UnknownRole, format!("unknown {what}"))),
        Err(e) => Err(e.into()),
    }
}

/// What an admin changes on a user; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct AdminUpdate {
    /// A new address (or `Some(None)` to remove it). It is unverified unless
    /// `email_verified` says otherwise in the same change.
    pub email: Option<Option<String>>,
    pub email_verified: Option<bool>,
    pub status: Option<String>,
}

/// Changes email, its verified mark and/or status. Disabling revokes every session at
/// once. A verified address belongs to one account: 409 `email_taken` otherwise.
pub async fn admin_update(state: &AppState, user_id: &str, update: AdminUpdate, by: &Grantor<'_>) -> Result<UserView> {
    let now = state.now();
    check_id(user_id)?;
    check_may_manage(state, by, user_id, "user.update").await?;
    let email = match update.email {
        Some(email) => Some(validate_email(email)?),
        None => None,
    };
    let status = update.status.as_deref().map(parse_status).transpose()?;
    let details = serde_json::json!({
        "email_changed": email.is_some(),
        "email_verified": update.email_verified,
        "status": status.map(UserStatus::as_str),
    });
    let event = user_event(now, by.actor(), "user.update", user_id, details);
    let before = users::find_by_id(&state.db, user_id).await?.ok_or(Error::NotFound("user"))?;
    let address_after = email.clone().unwrap_or_else(|| before.email.clone());
    if update.email_verified == Some(true) && address_after.is_none() {
        return Err(Error::bad_request(ErrorCode::NoEmail, "there is no email address to mark verified"));
    }
    let changes = users::UserChanges { email, email_verified: update.email_verified, status, ..Default::default() };
    let view = match apply(state, user_id, changes, event).await {
        Err(Error::Conflict { code: ErrorCode::Conflict, .. }) => return Err(super::verification::email_taken()),
        other => other?,
    };
    super::verification::after_admin_change(state, &before, &view, by.actor()).await;
    Ok(view)
}

/// Mails the user a verification link (to its current address) or a password reset
/// link, for an admin; audited as theirs.
pub async fn admin_send_link(state: &AppState, user_id: &str, reset: bool, by: &Grantor<'_>) -> Result<()> {
    check_id(user_id)?;
    super::mail::configured(state)?;
    let operation = if reset { "user.send_reset" } else { "user.send_verification" };
    check_may_manage(state, by, user_id, operation).await?;
    let user = users::find_by_id(&state.db, user_id).await?.ok_or(Error::NotFound("user"))?;
    let sent = if reset {
        super::reset::send(state, &user, by.actor(), None).await?
    } else {
        super::verification::send(state, &user, None, by.actor(), None).await?
    };
    super::verification::limited(sent)
}

/// Sets a new password and ends every session of the user.
pub async fn admin_set_password(
    state: &AppState,
    user_id: &str,
    password: &Secret<String>,
    by: &Grantor<'_>,
) -> Result<()> {
    let now = state.now();
    check_id(user_id)?;
    check_may_manage(state, by, user_id, "user.set_password").await?;
    validate_password(password.expose(), state.config.passwords.min_length)?;
    let hash = state.passwords.hash(password).await?;
    let event = user_event(now, by.actor(), "user.set_password", user_id, serde_json::json!({}));
    apply(state, user_id, users::UserChanges { password_hash: Some(hash), ..Default::default() }, event).await?;
    Ok(())
}

/// Replaces the user's roles (takes effect in tokens at the next refresh). The grantor
/// must be able to grant every role added and every role taken away.
pub async fn admin_set_roles(
    state: &AppState,
    user_id: &str,
    roles: Vec<String>,
    by: &Grantor<'_>,
) -> Result<UserView> {
    let now = state.now();
    check_id(user_id)?;
    let mut roles = roles;
    roles.sort();
    roles.dedup();
    if !by.is_full_admin() {
        let current = granted_roles(users::role_names(&state.db, user_id).await?);
        let requested = granted_roles(roles.clone());
        let changed: Vec<String> = requested
            .iter()
            .filter(|r| !current.contains(r))
            .chain(current.iter().filter(|r| !requested.contains(r)))
            .cloned()
            .collect();
        by.check_roles(state, "user.set_roles", user_id, &changed).await?;
    }
    let event = user_event(now, by.actor(), "user.set_roles", user_id, serde_json::json!({ "roles": roles }));
    apply(state, user_id, users::UserChanges { roles: Some(roles), ..Default::default() }, event).await
}

/// The user changes their own password: the current one is re-checked, and every other
/// session of theirs ends.
pub async fn change_password(
    state: &AppState,
    user_id: &str,
    current_session: Option<&str>,
    current: &Secret<String>,
    new: &Secret<String>,
    ctx: &super::auth::RequestContext,
) -> Result<()> {
    let keep = users::UserChanges { keep_session: current_session.map(str::to_string), ..Default::default() };
    set_own_password(state, user_id, keep, current, new, ctx).await
}

/// [`change_password`] from the account page: every session ends but this browser's
/// login session.
pub async fn change_password_keeping_browser(
    state: &AppState,
    user_id: &str,
    sso_session: &str,
    current: &Secret<String>,
    new: &Secret<String>,
    ctx: &super::auth::RequestContext,
) -> Result<()> {
    let keep = users::UserChanges { keep_sso_session: Some(sso_session.to_string()), ..Default::default() };
    set_own_password(state, user_id, keep, current, new, ctx).await
}

/// The user sets their own password (the current one re-checked); `keep` names the
/// session that stays.
async fn set_own_password(
    state: &AppState,
    user_id: &str,
    keep: users::UserChanges,
    current: &Secret<String>,
    new: &Secret<String>,
    ctx: &super::auth::RequestContext,
) -> Result<()> {
    let now = ctx.now;
    let user = users::find_by_id(&state.db, user_id).await?.ok_or(Error::NotFound("user"))?;
    super::auth::check_password(state, &user.username, current, ctx).await?;
    validate_password(new.expose(), state.config.passwords.min_length)?;
    let hash = state.passwords.hash(new).await?;
    let mut event = user_event(now, user_id, "user.change_password", user_id, serde_json::json!({}));
    event.ip = ctx.ip.clone();
    let changes = users::UserChanges { password_hash: Some(hash), ..keep };
    apply(state, user_id, changes, event).await?;
    Ok(())
}

/// Clears a user's lockouts (password and TOTP).
pub async fn admin_unlock(state: &AppState, user_id: &str, by: &Grantor<'_>) -> Result<UserView> {
    let now = state.now();
    check_id(user_id)?;
    check_may_manage(state, by, user_id, "user.unlock").await?;
    let event = user_event(now, by.actor(), "user.unlock", user_id, serde_json::json!({}));
    if !users::unlock(&state.db, user_id, event).await? {
        return Err(Error::NotFound("user"));
    }
    get(state, user_id).await
}

pub async fn admin_delete(state: &AppState, user_id: &str, by: &Grantor<'_>) -> Result<()> {
    let now = state.now();
    check_id(user_id)?;
    check_may_manage(state, by, user_id, "user.delete").await?;
    let event = user_event(now, by.actor(), "user.delete", user_id, serde_json::json!({}));
    if users::delete(&state.db, user_id, event).await? { Ok(()) } else { Err(Error::NotFound("user")) }
}

/// Accounts whose names look alike: each group shares one skeleton, oldest first.
#[derive(Debug, Clone)]
pub struct ConfusableGroup {
    pub skeleton: String,
    /// (user id, username)
    pub users: Vec<(String, String)>,
}

/// Every group of look-alike account names (from before the guard, or normalised another
/// way then). They are reported, never renamed: only the operator can tell which is real.
pub async fn confusable_groups(state: &AppState) -> Result<Vec<ConfusableGroup>> {
    let mut groups: std::collections::BTreeMap<String, Vec<(String, String)>> = Default::default();
    for (id, username, login) in users::all_login_names(&state.db).await? {
        groups.entry(username_skeleton(&login)).or_default().push((id, username));
    }
    Ok(groups
        .into_iter()
        .filter(|(_, users)| users.len() > 1)
        .map(|(skeleton, users)| ConfusableGroup { skeleton, users })
        .collect())
}

/// At start-up: records the skeleton of every account that lacks one (accounts made
/// before the guard), then warns about each account left without one — its skeleton is
/// another account's, so the two names look alike. Returns how many were left.
pub async fn check_confusables_at_startup(state: &AppState) -> Result<usize> {
    let missing = users::without_skeleton(&state.db).await?;
    for chunk in missing.chunks(500) {
        let rows: Vec<(String, String)> =
            chunk.iter().map(|(id, login)| (id.clone(), username_skeleton(login))).collect();
        users::insert_missing_skeletons(&state.db, &rows).await?;
    }
    let left = if missing.is_empty() { Vec::new() } else { users::without_skeleton(&state.db).await? };
    for (id, login) in &left {
        let holder = users::holder_of_skeleton(&state.db, &username_skeleton(login)).await?;
        tracing::warn!(
            user_id = %id,
            username = %login,
            looks_like = ?holder.map(|(_, name)| name),
            "an account's username looks like another's; review with `latchkey user list --confusables`"
        );
    }
    Ok(left.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alike_usernames_normalise_or_share_a_skeleton() {
        // Fullwidth letters are compatibility characters: NFKC makes them the same name.
        assert_eq!(normalize_username("ａdmin").unwrap().1, "admin");
        // Invisible format characters are refused outright.
        for raw in ["admin\u{200b}", "ad\u{200d}min", "\u{202e}nimda", "adm\u{00ad}in"] {
            assert_eq!(
                normalize_username(raw).unwrap_err().to_string(),
                "username must not contain control or invisible formatting characters",
                "{raw:?}"
            );
        }
        // Cyrillic а (U+0430) is a different letter that looks the same: same skeleton.
        let cyrillic = normalize_username("\u{0430}dmin").unwrap().1;
        assert_ne!(cyrillic, "admin");
        assert_eq!(username_skeleton(&cyrillic), username_skeleton("admin"));
        assert_eq!(username_skeleton("rnallory"), username_skeleton("mallory"));
        assert_ne!(username_skeleton("alice"), username_skeleton("alicia"));
    }

    #[test]
    fn usernames_are_trimmed_and_case_folded() {
        assert_eq!(normalize_username("  Alice ").unwrap(), ("Alice".into(), "alice".into()));
        assert_eq!(normalize_username("ÉMILE").unwrap().1, "émile");
        assert!(normalize_username("   ").is_err());
        assert!(normalize_username("a\u{0}b").is_err());
        assert!(normalize_username(&"x".repeat(65)).is_err());
        // Blank characters count while the name is as sent: 65 with a leading space is
        // too long even though 64 are left after trimming (the schema says `maxLength: 64`).
        assert!(normalize_username(&format!("\u{a0}{}", "x".repeat(64))).is_err());
        assert!(normalize_username(&format!(" {}", "x".repeat(63))).is_ok());
        // NFKC expands U+FDFA into 18 characters: a short name can still be too long.
        assert!(normalize_username(&"\u{fdfa}".repeat(4)).is_err());
        // At a login the stray blank is forgiven: the name it names is 64 characters.
        assert_eq!(login_name(&format!("\u{a0}{}", "x".repeat(64))).unwrap(), "x".repeat(64));
        assert!(login_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn password_length_counts_characters() {
        assert!(validate_password("short", 8).is_err());
        assert!(validate_password("пароль-пароль", 8).is_ok());
        assert!(validate_password("🔑🔑🔑🔑🔑🔑🔑🔑", 8).is_ok());
        assert!(validate_password(&"a".repeat(129), 8).is_err());
    }

    #[test]
    fn emails_are_checked_loosely() {
        assert_eq!(validate_email(Some(" a@b.io ".into())).unwrap().as_deref(), Some("a@b.io"));
        assert_eq!(validate_email(Some("".into())).unwrap(), None);
        assert!(validate_email(Some("nope".into())).is_err());
    }
}

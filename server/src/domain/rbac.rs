//! Role-based access control: the permissions our own admin API checks, the principal
//! behind a token with its effective permissions, and role administration.
//!
//! Permissions are strings, so operators can invent their own (`billing:read`) for
//! their resource servers without a release; [`Permission`] names the ones Latchkey
//! itself enforces. Effective permissions are read on every admin request (on
//! PostgreSQL through the caches every change invalidates on every node), so a role
//! change applies to the admin API at once; the `roles` claim of access tokens follows
//! at the next refresh.

use crate::store::TokenStore;
use crate::store::entities::UserStatus;
use latchkey_codes::ErrorCode;
use std::collections::BTreeSet;
use std::fmt;

use crate::state::AppState;
use crate::store::StoreError;
use crate::store::audit::NewAuditEvent;
use crate::store::roles::{self, RoleDetails};
use crate::store::users::ADMIN_ROLE;
use crate::tokens::AccessClaims;

use super::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    UsersRead,
    UsersWrite,
    RolesRead,
    RolesWrite,
    SessionsRead,
    SessionsRevoke,
    ClientsRead,
    ClientsWrite,
    KeysRead,
    KeysRotate,
    AuditRead,
}

impl Permission {
    pub const ALL: [Permission; 11] = [
        Permission::UsersRead,
        Permission::UsersWrite,
        Permission::RolesRead,
        Permission::RolesWrite,
        Permission::SessionsRead,
        Permission::SessionsRevoke,
        Permission::ClientsRead,
        Permission::ClientsWrite,
        Permission::KeysRead,
        Permission::KeysRotate,
        Permission::AuditRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::UsersRead => "users:read",
            Permission::UsersWrite => "users:write",
            Permission::RolesRead => "roles:read",
            Permission::RolesWrite => "roles:write",
            Permission::SessionsRead => "sessions:read",
            Permission::SessionsRevoke => "sessions:revoke",
            Permission::ClientsRead => "clients:read",
            Permission::ClientsWrite => "clients:write",
            Permission::KeysRead => "keys:read",
            Permission::KeysRotate => "keys:rotate",
            Permission::AuditRead => "audit:read",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is calling the admin API, with the permissions their roles grant right now.
#[derive(Debug, Clone)]
pub struct Principal {
    /// User id, or client id for service tokens.
    pub subject: String,
    pub is_user: bool,
    pub permissions: BTreeSet<String>,
    /// Holds the `admin` role: every permission, custom ones included.
    pub full_admin: bool,
    pub claims: AccessClaims,
}

impl Principal {
    /// The guard every admin handler calls first.
    pub fn require(&self, permission: Permission) -> Result<()> {
        if self.permissions.contains(permission.as_str()) {
            Ok(())
        } else {
            Err(Error::Forbidden {
                code: ErrorCode::InsufficientScope,
                description: format!("this operation requires the {permission} permission"),
            })
        }
    }

    /// How this principal appears in the audit log.
    pub fn actor(&self) -> &str {
        &self.subject
    }

    /// What this principal may hand out: only what it holds itself.
    pub fn grantor(&self) -> Grantor<'_> {
        Grantor { actor: &self.subject, held: (!self.full_admin).then_some(&self.permissions) }
    }
}

/// Who grants roles or permissions (to a user, a role or a client), and so how far a
/// grant may reach: an actor grants only permissions it holds itself, and roles all of
/// whose permissions it holds; the `admin` role only a full admin grants. The same bound
/// applies to changing an account or client that holds more than the actor (resetting an
/// admin's password or rotating an admin client's secret would be a grant by another name).
pub struct Grantor<'a> {
    actor: &'a str,
    /// `None`: may grant anything (a holder of the `admin` role, or the local operator).
    held: Option<&'a BTreeSet<String>>,
}

impl<'a> Grantor<'a> {
    /// The operator at the server's own command line, who could edit the database anyway.
    pub const fn operator(actor: &'a str) -> Self {
        Self { actor, held: None }
    }

    /// Someone acting on their own account (self-registration): grants nothing.
    pub fn nobody(actor: &'a str) -> Self {
        static NOTHING: BTreeSet<String> = BTreeSet::new();
        Self { actor, held: Some(&NOTHING) }
    }

    pub fn actor(&self) -> &str {
        self.actor
    }

    pub fn is_full_admin(&self) -> bool {
        self.held.is_none()
    }

    /// Refuses, with an audited 403, unless every one of `permissions` is held.
    pub async fn check_permissions<'p>(
        &self,
        state: &AppState,
        operation: &'static str,
        target: &str,
        permissions: impl IntoIterator<Item = &'p String>,
    ) -> Result<()> {
        let Some(held) = self.held else { return Ok(()) };
        let missing: BTreeSet<&str> =
            permissions.into_iter().filter(|p| !held.contains(*p)).map(String::as_str).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let missing: Vec<&str> = missing.into_iter().collect();
        Err(self.refuse(state, operation, target, &format!("the permissions {}", missing.join(", "))).await)
    }

    /// Refuses, with an audited 403, unless the grantor holds every permission of `roles`
    /// (the `admin` role: every permission there is).
    pub async fn check_roles(
        &self,
        state: &AppState,
        operation: &'static str,
        target: &str,
        roles: &[String],
    ) -> Result<()> {
        if self.is_full_admin() {
            return Ok(());
        }
        if roles.iter().any(|r| r == ADMIN_ROLE) {
            return Err(self.refuse(state, operation, target, "the admin role (only a full admin grants it)").await);
        }
        let permissions = state.tokens.permissions_of(roles).await?;
        self.check_permissions(state, operation, target, &permissions).await
    }

    /// Refuses (audited) an operation only a full admin may perform.
    pub async fn require_full_admin(&self, state: &AppState, operation: &'static str, target: &str) -> Result<()> {
        if self.is_full_admin() {
            return Ok(());
        }
        Err(self.refuse(state, operation, target, "the admin role").await)
    }

    /// Audits a refused grant and returns the 403 naming what was missing.
    async fn refuse(&self, state: &AppState, operation: &'static str, target: &str, missing: &str) -> Error {
        tracing::warn!(actor = self.actor, operation, target, missing, "grant refused");
        let event = NewAuditEvent::success(state.now(), self.actor, "grant.refused", target)
            .outcome("denied")
            .details(serde_json::json!({ "operation": operation, "missing": missing }));
        if let Err(e) = crate::store::audit::record_alone(&state.db, event).await {
            return e.into();
        }
        Error::Forbidden {
            code: ErrorCode::InsufficientPermissions,
            description: format!("{operation} needs {missing}, which the caller does not hold"),
        }
    }
}

/// Resolves the principal of a verified token: a user (token with a session) must still
/// exist and be active; a service's permissions come from its client's roles.
pub async fn principal(state: &AppState, authenticated: super::auth::Authenticated) -> Result<Principal> {
    let super::auth::Authenticated { claims, user } = authenticated;
    let is_user = claims.sid.is_some();
    let role_names = if is_user {
        if user.is_none_or(|u| u.status != UserStatus::Active) {
            return Err(Error::InvalidToken("the user of this token is disabled or gone".into()));
        }
        state.tokens.user_role_names(&claims.sub).await?
    } else {
        state.tokens.client_role_names(&claims.client_id).await?
    };
    let mut permissions = state.tokens.permissions_of(&role_names).await?;
    let full_admin = role_names.iter().any(|r| r == ADMIN_ROLE);
    if full_admin {
        permissions.extend(Permission::ALL.iter().map(|p| p.as_str().to_string()));
    }
    Ok(Principal { subject: claims.sub.clone(), is_user, permissions, full_admin, claims })
}

fn validate_role_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let valid = name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
    if valid {
        Ok(())
    } else {
        Err(Error::bad_request(
            ErrorCode::InvalidRoleName,
            "role names are 1-64 of a-z 0-9 _ . - starting with a letter or digit",
        ))
    }
}

/// Normalises a permission list: `resource:action` strings, deduplicated and sorted.
fn validate_permissions(permissions: &[String]) -> Result<Vec<String>> {
    let mut out = BTreeSet::new();
    for permission in permissions {
        let valid = permission.len() <= 128
            && permission.split_once(':').is_some_and(|(resource, action)| {
                let ok = |s: &str| {
                    !s.is_empty()
                        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-*".contains(c))
                };
                ok(resource) && ok(action)
            });
        if !valid {
            return Err(Error::bad_request(
                ErrorCode::InvalidPermission,
                format!("permission {permission:?} must look like resource:action (a-z 0-9 _ . - *)"),
            ));
        }
        out.insert(permission.clone());
    }
    Ok(out.into_iter().collect())
}

fn validate_description(description: &str) -> Result<()> {
    if description.chars().count() > 512 {
        return Err(Error::bad_request(ErrorCode::InvalidDescription, "description is limited to 512 characters"));
    }
    Ok(())
}

fn role_event(now: i64, actor: &str, action: &'static str, name: &str, details: serde_json::Value) -> NewAuditEvent {
    NewAuditEvent::success(now, actor, action, name).details(details)
}

pub async fn list_roles(state: &AppState) -> Result<Vec<RoleDetails>> {
    Ok(roles::list(&state.db).await?)
}

pub async fn get_role(state: &AppState, name: &str) -> Result<RoleDetails> {
    roles::get(&state.db, name).await?.ok_or(Error::NotFound("role"))
}

pub async fn create_role(
    state: &AppState,
    name: &str,
    description: &str,
    permissions: &[String],
    by: &Grantor<'_>,
) -> Result<RoleDetails> {
    let now = state.now();
    validate_role_name(name)?;
    validate_description(description)?;
    let permissions = validate_permissions(permissions)?;
    by.check_permissions(state, "role.create", name, &permissions).await?;
    let event = role_event(now, by.actor(), "role.create", name, serde_json::json!({ "permissions": permissions }));
    match roles::create(&state.db, name, description, &permissions, now, event).await {
        Ok(()) => get_role(state, name).await,
        Err(StoreError::Conflict) => {
            Err(Error::Conflict { code: ErrorCode::RoleExists, description: format!("role {name:?} already exists") })
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn update_role(
    state: &AppState,
    name: &str,
    description: Option<&str>,
    permissions: Option<&[String]>,
    by: &Grantor<'_>,
) -> Result<RoleDetails> {
    let current = get_role(state, name).await?;
    if let Some(description) = description {
        validate_description(description)?;
    }
    let permissions = permissions.map(validate_permissions).transpose()?;
    if current.row.name == ADMIN_ROLE && permissions.is_some() {
        return Err(Error::Conflict {
            code: ErrorCode::BuiltinRole,
            description: "the admin role always holds every permission".into(),
        });
    }
    // Whoever edits a role must hold what it grants today (or could take it from its
    // holders) and what it will grant; built-in roles are a full admin's alone.
    if current.row.builtin {
        by.require_full_admin(state, "role.update", name).await?;
    }
    by.check_permissions(state, "role.update", name, &current.permissions).await?;
    if let Some(permissions) = &permissions {
        by.check_permissions(state, "role.update", name, permissions).await?;
        if name == super::users::DEFAULT_ROLE
            && let Some(own) = permissions.iter().find(|p| Permission::ALL.iter().any(|q| q.as_str() == p.as_str()))
        {
            return Err(Error::Conflict {
                code: ErrorCode::BuiltinRole,
                description: format!(
                    "the user role every account holds may carry only your own permissions, never Latchkey's {own}"
                ),
            });
        }
    }
    let event = role_event(
        state.now(),
        by.actor(),
        "role.update",
        name,
        serde_json::json!({ "description": description, "permissions": permissions }),
    );
    roles::update(&state.db, name, description, permissions.as_deref(), event).await?;
    get_role(state, name).await
}

pub async fn delete_role(state: &AppState, name: &str, by: &Grantor<'_>) -> Result<()> {
    let now = state.now();
    let current = get_role(state, name).await?;
    if current.row.builtin {
        return Err(Error::Conflict {
            code: ErrorCode::BuiltinRole,
            description: format!("{name} is a built-in role and cannot be deleted"),
        });
    }
    by.check_permissions(state, "role.delete", name, &current.permissions).await?;
    let event = role_event(now, by.actor(), "role.delete", name, serde_json::json!({ "users": current.user_count }));
    if roles::delete(&state.db, name, event).await? { Ok(()) } else { Err(Error::NotFound("role")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_strings_are_validated() {
        assert_eq!(
            validate_permissions(&["billing:read".into(), "billing:read".into(), "a:*".into()]).unwrap(),
            vec!["a:*".to_string(), "billing:read".to_string()]
        );
        assert!(validate_permissions(&["nocolon".into()]).is_err());
        assert!(validate_permissions(&["Upper:case".into()]).is_err());
        assert!(validate_role_name("billing-reader").is_ok());
        assert!(validate_role_name("-bad").is_err());
        assert!(validate_role_name("Bad").is_err());
    }
}

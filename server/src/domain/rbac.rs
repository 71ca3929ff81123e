//! Role-based access control: the permissions our own admin API checks, the principal
//! behind a token with its effective permissions, and role administration.
//!
//! Permissions are strings, so operators can invent their own (`billing:read`) for
//! their resource servers without a release; [`Permission`] names the ones Latchkey
//! itself enforces. Effective permissions are read from the database on every admin
//! request, so a role change applies to the admin API at once; the `roles` claim of
//! access tokens follows at the next refresh.

use std::collections::BTreeSet;
use std::fmt;

use crate::state::AppState;
use crate::store::StoreError;
use crate::store::audit::NewAuditEvent;
use crate::store::roles::{self, RoleDetails};
use crate::store::users::{ADMIN_ROLE, STATUS_ACTIVE};
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
    pub claims: AccessClaims,
}

impl Principal {
    /// The guard every admin handler calls first.
    pub fn require(&self, permission: Permission) -> Result<()> {
        if self.permissions.contains(permission.as_str()) {
            Ok(())
        } else {
            Err(Error::Forbidden {
                code: "insufficient_scope",
                description: format!("this operation requires the {permission} permission"),
            })
        }
    }

    /// How this principal appears in the audit log.
    pub fn actor(&self) -> &str {
        &self.subject
    }
}

/// Resolves the principal of a verified token: a user (token with a session) must still
/// exist and be active; a service's permissions come from its client's roles.
pub async fn principal(state: &AppState, authenticated: super::auth::Authenticated) -> Result<Principal> {
    let super::auth::Authenticated { claims, user } = authenticated;
    let is_user = claims.sid.is_some();
    let role_names = if is_user {
        if user.is_none_or(|u| u.status != STATUS_ACTIVE) {
            return Err(Error::InvalidToken("the user of this token is disabled or gone".into()));
        }
        state.hot().user_role_names(&claims.sub).await?
    } else {
        state.hot().client_role_names(&claims.client_id).await?
    };
    let mut permissions = roles::permissions_of(&state.db, &role_names).await?;
    if role_names.iter().any(|r| r == ADMIN_ROLE) {
        permissions.extend(Permission::ALL.iter().map(|p| p.as_str().to_string()));
    }
    Ok(Principal { subject: claims.sub.clone(), is_user, permissions, claims })
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
            "invalid_role_name",
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
                "invalid_permission",
                format!("permission {permission:?} must look like resource:action (a-z 0-9 _ . - *)"),
            ));
        }
        out.insert(permission.clone());
    }
    Ok(out.into_iter().collect())
}

fn validate_description(description: &str) -> Result<()> {
    if description.chars().count() > 512 {
        return Err(Error::bad_request("invalid_description", "description is limited to 512 characters"));
    }
    Ok(())
}

fn role_event(
    state: &AppState,
    actor: &str,
    action: &'static str,
    name: &str,
    details: serde_json::Value,
) -> NewAuditEvent {
    NewAuditEvent::success(state.now(), actor, action, name).details(details)
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
    actor: &str,
) -> Result<RoleDetails> {
    validate_role_name(name)?;
    validate_description(description)?;
    let permissions = validate_permissions(permissions)?;
    let event = role_event(state, actor, "role.create", name, serde_json::json!({ "permissions": permissions }));
    match roles::create(&state.db, name, description, &permissions, state.now(), event).await {
        Ok(()) => get_role(state, name).await,
        Err(StoreError::Conflict) => {
            Err(Error::Conflict { code: "role_exists", description: format!("role {name:?} already exists") })
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn update_role(
    state: &AppState,
    name: &str,
    description: Option<&str>,
    permissions: Option<&[String]>,
    actor: &str,
) -> Result<RoleDetails> {
    let current = get_role(state, name).await?;
    if let Some(description) = description {
        validate_description(description)?;
    }
    let permissions = permissions.map(validate_permissions).transpose()?;
    if current.row.name == ADMIN_ROLE && permissions.is_some() {
        return Err(Error::Conflict {
            code: "builtin_role",
            description: "the admin role always holds every permission".into(),
        });
    }
    let event = role_event(
        state,
        actor,
        "role.update",
        name,
        serde_json::json!({ "description": description, "permissions": permissions }),
    );
    roles::update(&state.db, name, description, permissions.as_deref(), event).await?;
    get_role(state, name).await
}

pub async fn delete_role(state: &AppState, name: &str, actor: &str) -> Result<()> {
    let current = get_role(state, name).await?;
    if current.row.builtin {
        return Err(Error::Conflict {
            code: "builtin_role",
            description: format!("{name} is a built-in role and cannot be deleted"),
        });
    }
    let event = role_event(state, actor, "role.delete", name, serde_json::json!({ "users": current.user_count }));
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

//! Executes the console's network requests. Each runs in its own task and reports back
//! with one [`Action`].

use crate::api::{ApiClient, ApiError};
use crate::app::{Action, Loaded, PAGE_SIZE, Request, Screen};

/// What the loader needs to know about the current view.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub page: u64,
    pub user_query: String,
    pub session_user: Option<String>,
    pub audit_action: String,
}

pub async fn run(api: &ApiClient, request: Request, view: View) -> Action {
    match execute(api, request, view).await {
        Ok(loaded) => Action::Loaded(loaded),
        Err(err) => Action::Failed(err),
    }
}

async fn execute(api: &ApiClient, request: Request, view: View) -> Result<Loaded, ApiError> {
    let done = |text: String| Ok(Loaded::Done(text));
    match request {
        Request::Login { username, password, totp } => {
            api.login(&username, &password, totp.as_deref()).await?;
            Ok(Loaded::LoggedIn)
        }
        Request::Refresh => {
            api.refresh().await?;
            Ok(Loaded::Done("Session refreshed.".into()))
        }
        Request::Load(screen) => load(api, screen, &view).await,
        Request::CreateUser { username, email, password } => {
            let created = api.create_user(&username, email.as_deref(), password.as_deref()).await?;
            let mut lines = vec![format!("User {} created.", created.user.username)];
            if let Some(password) = created.one_time_password {
                lines.push(format!("One-time password: {password}"));
            }
            Ok(Loaded::ShowOnce { title: "User created".into(), lines })
        }
        Request::SetEmail { user_id, email } => {
            let user = api.set_user_email(&user_id, email.as_deref()).await?;
            done(format!("Email of {} saved.", user.username))
        }
        Request::SetStatus { user_id, status } => {
            let user = api.set_user_status(&user_id, &status).await?;
            done(format!("User {} is now {}.", user.username, user.status))
        }
        Request::LoadRolesForPicker { user_id, username, current } => {
            let roles = api.roles().await?;
            let options = roles.into_iter().map(|r| {
                let on = current.contains(&r.name);
                (r.name, on)
            });
            Ok(Loaded::RolePicker { user_id, username, options: options.collect() })
        }
        Request::SetRoles { user_id, roles } => {
            let user = api.set_user_roles(&user_id, &roles).await?;
            done(format!("Roles of {}: {}.", user.username, user.roles.join(", ")))
        }
        Request::SetPassword { user_id, password } => {
            api.set_user_password(&user_id, &password).await?;
            done("Password set; the user's sessions have ended.".into())
        }
        Request::Unlock { user_id } => {
            let user = api.unlock_user(&user_id).await?;
            done(format!("{} unlocked.", user.username))
        }
        Request::ResetTotp { user_id } => {
            api.reset_user_totp(&user_id).await?;
            done("TOTP reset.".into())
        }
        Request::DeleteUser { user_id } => {
            api.delete_user(&user_id).await?;
            done("User deleted.".into())
        }
        Request::CreateRole { name } => {
            let role = api.create_role(&name, "", &[]).await?;
            done(format!("Role {} created.", role.name))
        }
        Request::SetRoleDescription { name, description } => {
            api.update_role(&name, Some(&description), None).await?;
            done(format!("Description of {name} saved."))
        }
        Request::SetRolePermissions { name, permissions } => {
            let role = api.update_role(&name, None, Some(&permissions)).await?;
            done(format!("{} now has: {}.", role.name, role.permissions.join(" ")))
        }
        Request::DeleteRole { name } => {
            api.delete_role(&name).await?;
            done(format!("Role {name} deleted."))
        }
        Request::RevokeSession { id } => {
            api.revoke_session(&id).await?;
            done("Session revoked.".into())
        }
        Request::RevokeUserSessions { user_id } => {
            let count = api.revoke_user_sessions(&user_id).await?;
            done(format!("{} session(s) revoked.", count.revoked))
        }
        Request::CreateClient { client_id, grants } => {
            let confidential = grants.iter().any(|g| g == "client_credentials");
            let created = api.create_client(&client_id, confidential, &grants).await?;
            let mut lines =
                vec![format!("Client {} ({}) created.", created.client.client_id, created.client.client_type)];
            if let Some(secret) = created.client_secret {
                lines.push(format!("Client secret: {secret}"));
            }
            Ok(Loaded::ShowOnce { title: "Client created".into(), lines })
        }
        Request::RotateClientSecret { client_id } => {
            let secret = api.rotate_client_secret(&client_id).await?;
            Ok(Loaded::ShowOnce {
                title: "New client secret".into(),
                lines: vec![format!("{}: {}", secret.client_id, secret.client_secret)],
            })
        }
        Request::DeleteClient { client_id } => {
            api.delete_client(&client_id).await?;
            done(format!("Client {client_id} deleted."))
        }
        Request::RotateKeys => {
            let key = api.rotate_keys().await?;
            done(format!("Key {} published; it signs from {}.", key.kid, key.activates_at.unwrap_or_default()))
        }
        Request::TotpSetup { password } => Ok(Loaded::TotpSetup(api.totp_setup(&password).await?)),
        Request::TotpConfirm { code } => {
            let codes = api.totp_confirm(&code).await?;
            let mut lines = vec!["TOTP is on. Recovery codes (each works once):".to_string()];
            lines.extend(codes.recovery_codes);
            Ok(Loaded::ShowOnce { title: "TOTP enabled".into(), lines })
        }
    }
}

async fn load(api: &ApiClient, screen: Screen, view: &View) -> Result<Loaded, ApiError> {
    let page = view.page.max(1);
    Ok(match screen {
        Screen::Users => Loaded::Users(api.users(&view.user_query, page, PAGE_SIZE).await?),
        Screen::Roles => Loaded::Roles(api.roles().await?),
        Screen::Sessions => Loaded::Sessions(api.sessions(view.session_user.as_deref(), page, PAGE_SIZE).await?),
        Screen::Clients => Loaded::Clients(api.clients(page, PAGE_SIZE).await?),
        Screen::Keys => Loaded::Keys(api.keys().await?),
        Screen::Audit => {
            let action = Some(view.audit_action.as_str()).filter(|a| !a.is_empty());
            Loaded::Audit(api.audit(action, page, PAGE_SIZE).await?)
        }
    })
}

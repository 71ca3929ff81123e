//! The console's network calls. A [`Request`] carries every parameter it needs (the page,
//! the search, the filter), so it runs the same whenever it runs; [`run`] executes one in
//! its own task and reports back with one [`Action`]. The screens' data comes back as
//! [`Loaded`].

use crate::api::{ApiClient, ApiError, AuditEvent, Client, Page, Passkey, Role, Session, SigningKey, TotpSetup, User};
use crate::app::{Action, Masked};

/// Rows per page of every paged list.
pub const PAGE_SIZE: u64 = 50;

/// Sessions shown in a user's detail view; the Sessions screen has the rest.
pub const DETAIL_SESSIONS: u64 = 5;

/// What a screen shows, with the parameters that select it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Load {
    Users { query: String, page: u64 },
    Roles,
    Sessions { user_id: Option<String>, page: u64 },
    Clients { page: u64 },
    Keys,
    Audit { action: Option<String>, page: u64 },
}

/// A network call for the main loop to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Login {
        username: String,
        password: Masked,
        totp: Option<String>,
    },
    Refresh,
    Load(Load),
    /// The first sessions of one user, for the user's detail view.
    UserSessions {
        user_id: String,
    },
    CreateUser {
        username: String,
        email: Option<String>,
        password: Option<Masked>,
    },
    SetEmail {
        user_id: String,
        email: Option<String>,
    },
    SetStatus {
        user_id: String,
        status: String,
    },
    SetRoles {
        user_id: String,
        roles: Vec<String>,
    },
    LoadRolesForPicker {
        user_id: String,
        username: String,
        current: Vec<String>,
    },
    SetPassword {
        user_id: String,
        password: Masked,
    },
    Unlock {
        user_id: String,
    },
    SetEmailVerified {
        user_id: String,
        verified: bool,
    },
    /// Mail the user a verification link, or (`reset`) a password reset link.
    SendLink {
        user_id: String,
        reset: bool,
    },
    ResetTotp {
        user_id: String,
    },
    DeleteUser {
        user_id: String,
    },
    CreateRole {
        name: String,
    },
    SetRoleDescription {
        name: String,
        description: String,
    },
    SetRolePermissions {
        name: String,
        permissions: Vec<String>,
    },
    DeleteRole {
        name: String,
    },
    RevokeSession {
        id: String,
    },
    RevokeUserSessions {
        user_id: String,
    },
    CreateClient {
        client_id: String,
        grants: Vec<String>,
        redirect_uris: Vec<String>,
    },
    /// A user's browser sessions, in a checklist: unticked ones end.
    BrowserSessions {
        user_id: String,
        username: String,
    },
    EndBrowserSessions {
        user_id: String,
        ids: Vec<String>,
    },
    /// A user's passkeys, in a checklist: unticked ones are deleted.
    Passkeys {
        user_id: String,
        username: String,
    },
    DeletePasskeys {
        user_id: String,
        ids: Vec<String>,
    },
    /// The apps a user allowed, in a checklist: unticked ones are revoked.
    Consents {
        user_id: String,
        username: String,
    },
    RevokeConsents {
        user_id: String,
        client_ids: Vec<String>,
    },
    SetClientRedirectUris {
        client_id: String,
        uris: Vec<String>,
    },
    SetClientFirstParty {
        client_id: String,
        first_party: bool,
    },
    RotateClientSecret {
        client_id: String,
    },
    /// How a client's back-channel logout tokens are delivered, shown as a list.
    ClientBackchannel {
        client_id: String,
    },
    RetryClientBackchannel {
        client_id: String,
    },
    DeleteClient {
        client_id: String,
    },
    RotateKeys,
    TotpSetup {
        password: Masked,
    },
    TotpConfirm {
        code: String,
    },
}

/// Results of network calls.
#[derive(Debug, Clone)]
pub enum Loaded {
    LoggedIn,
    Users(Page<User>),
    Roles(Vec<Role>),
    Sessions(Page<Session>),
    Clients(Page<Client>),
    Keys(Vec<SigningKey>),
    Audit(Page<AuditEvent>),
    UserSessions {
        user_id: String,
        sessions: Page<Session>,
        passkeys: Vec<Passkey>,
    },
    RolePicker {
        user_id: String,
        username: String,
        options: Vec<(String, bool)>,
    },
    /// A checklist of things a user has; those left unticked are taken away.
    KeepPicker {
        title: String,
        user_id: String,
        kind: KeepKind,
        /// Each option's label and the id it stands for, in order.
        options: Vec<(String, String)>,
    },
    /// A change succeeded: say so and reload the screen.
    Done(String),
    /// Something to show once (generated password, client secret, recovery codes).
    ShowOnce {
        title: String,
        lines: Vec<String>,
    },
    TotpSetup(TotpSetup),
}

pub async fn run(api: &ApiClient, request: Request) -> Action {
    match execute(api, request).await {
        Ok(loaded) => Action::Loaded(loaded),
        Err(err) => Action::Failed(err),
    }
}

async fn execute(api: &ApiClient, request: Request) -> Result<Loaded, ApiError> {
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
        Request::Load(what) => load(api, what).await,
        Request::UserSessions { user_id } => {
            let sessions = api.sessions(Some(&user_id), 1, DETAIL_SESSIONS).await?;
            let passkeys = api.user_passkeys(&user_id).await?;
            Ok(Loaded::UserSessions { user_id, sessions, passkeys })
        }
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
        Request::SetEmailVerified { user_id, verified } => {
            let user = api.set_email_verified(&user_id, verified).await?;
            let state = if user.email_verified { "verified" } else { "not verified" };
            done(format!("Email of {}: {state}.", user.username))
        }
        Request::SendLink { user_id, reset } => {
            api.send_user_link(&user_id, reset).await?;
            done(if reset { "Password reset link mailed." } else { "Verification link mailed." }.into())
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
        Request::CreateClient { client_id, grants, redirect_uris } => {
            let confidential = grants.iter().any(|g| g == "client_credentials");
            let created = api.create_client(&client_id, confidential, &grants, &redirect_uris).await?;
            let mut lines =
                vec![format!("Client {} ({}) created.", created.client.client_id, created.client.client_type)];
            if let Some(secret) = created.client_secret {
                lines.push(format!("Client secret: {secret}"));
            }
            Ok(Loaded::ShowOnce { title: "Client created".into(), lines })
        }
        Request::BrowserSessions { user_id, username } => {
            let sessions = api.user_browser_sessions(&user_id).await?;
            if sessions.is_empty() {
                return done(format!("{username} has no live browser session."));
            }
            let options = sessions
                .into_iter()
                .map(|s| {
                    let label = format!(
                        "since {}, last seen {}, {} from {} ({})",
                        s.created_at,
                        s.last_seen_at,
                        s.amr.join("+"),
                        s.ip.as_deref().unwrap_or("-"),
                        s.user_agent.as_deref().unwrap_or("-")
                    );
                    (label, s.id)
                })
                .collect();
            let title = format!("Browser sessions of {username} (untick to end)");
            Ok(Loaded::KeepPicker { title, user_id, kind: KeepKind::BrowserSessions, options })
        }
        Request::EndBrowserSessions { user_id, ids } => {
            for id in &ids {
                api.end_user_browser_session(&user_id, id).await?;
            }
            done(format!("{} browser session(s) ended, with the app sessions made through them.", ids.len()))
        }
        Request::Passkeys { user_id, username } => {
            let passkeys = api.user_passkeys(&user_id).await?;
            if passkeys.is_empty() {
                return done(format!("{username} has no passkey."));
            }
            let options = passkeys.into_iter().map(|p| (passkey_line(&p), p.id)).collect();
            let title = format!("Passkeys of {username} (untick to delete)");
            Ok(Loaded::KeepPicker { title, user_id, kind: KeepKind::Passkeys, options })
        }
        Request::DeletePasskeys { user_id, ids } => {
            for id in &ids {
                api.delete_user_passkey(&user_id, id).await?;
            }
            done(format!("{} passkey(s) deleted.", ids.len()))
        }
        Request::Consents { user_id, username } => {
            let consents = api.user_consents(&user_id).await?;
            if consents.is_empty() {
                return done(format!("{username} has allowed no application."));
            }
            let options = consents
                .into_iter()
                .map(|c| (format!("{} ({}): {}", c.client_name, c.client_id, c.scopes.join(" ")), c.client_id))
                .collect();
            let title = format!("Apps {username} allowed (untick to revoke)");
            Ok(Loaded::KeepPicker { title, user_id, kind: KeepKind::Consents, options })
        }
        Request::RevokeConsents { user_id, client_ids } => {
            for client_id in &client_ids {
                api.revoke_user_consent(&user_id, client_id).await?;
            }
            done(format!("{} consent(s) revoked; those apps' sessions ended.", client_ids.len()))
        }
        Request::SetClientRedirectUris { client_id, uris } => {
            let client = api.set_client_redirect_uris(&client_id, &uris).await?;
            done(format!("Client {} now has {} redirect URI(s).", client.client_id, client.redirect_uris.len()))
        }
        Request::SetClientFirstParty { client_id, first_party } => {
            let client = api.set_client_first_party(&client_id, first_party).await?;
            let kind = if client.first_party { "first-party" } else { "third-party" };
            done(format!("Client {} is {kind}.", client.client_id))
        }
        Request::RotateClientSecret { client_id } => {
            let secret = api.rotate_client_secret(&client_id).await?;
            Ok(Loaded::ShowOnce {
                title: "New client secret".into(),
                lines: vec![format!("{}: {}", secret.client_id, secret.client_secret)],
            })
        }
        Request::ClientBackchannel { client_id } => {
            let delivery = api.client_backchannel(&client_id).await?;
            Ok(Loaded::ShowOnce {
                title: format!("Back-channel logout of {client_id}"),
                lines: delivery_lines(&delivery),
            })
        }
        Request::RetryClientBackchannel { client_id } => {
            let requeued = api.retry_client_backchannel(&client_id).await?;
            done(format!("{} dead logout token(s) of {client_id} queued again.", requeued.requeued))
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

async fn load(api: &ApiClient, what: Load) -> Result<Loaded, ApiError> {
    Ok(match what {
        Load::Users { query, page } => Loaded::Users(api.users(&query, page.max(1), PAGE_SIZE).await?),
        Load::Roles => Loaded::Roles(api.roles().await?),
        Load::Sessions { user_id, page } => {
            Loaded::Sessions(api.sessions(user_id.as_deref(), page.max(1), PAGE_SIZE).await?)
        }
        Load::Clients { page } => Loaded::Clients(api.clients(page.max(1), PAGE_SIZE).await?),
        Load::Keys => Loaded::Keys(api.keys().await?),
        Load::Audit { action, page } => Loaded::Audit(api.audit(action.as_deref(), page.max(1), PAGE_SIZE).await?),
    })
}

/// What a [`Loaded::KeepPicker`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepKind {
    BrowserSessions,
    Consents,
    Passkeys,
}

impl KeepKind {
    /// The request that takes away the `ids` left unticked.
    pub fn take_away(self, user_id: String, ids: Vec<String>) -> Request {
        match self {
            KeepKind::BrowserSessions => Request::EndBrowserSessions { user_id, ids },
            KeepKind::Consents => Request::RevokeConsents { user_id, client_ids: ids },
            KeepKind::Passkeys => Request::DeletePasskeys { user_id, ids },
        }
    }
}

/// One passkey in a line: its name, whether it is synced, when it was added and used.
pub fn passkey_line(passkey: &Passkey) -> String {
    let kept = if passkey.backup_state { "synced" } else { "this device only" };
    // The day is enough to tell passkeys apart; the API has the instant.
    let day = |t: &str| t.get(..10).unwrap_or(t).to_string();
    let used = passkey.last_used_at.as_deref().map_or_else(|| "never used".to_string(), |t| format!("used {}", day(t)));
    format!("{} ({kept}), added {}, {used}", passkey.name, day(&passkey.created_at))
}

/// What the back-channel view of a client says, a line each.
fn delivery_lines(delivery: &crate::api::BackchannelDelivery) -> Vec<String> {
    let required = if delivery.backchannel_logout_session_required { " (sid required)" } else { "" };
    let mut lines = vec![
        match &delivery.backchannel_logout_uri {
            Some(uri) => format!("URI: {uri}{required}"),
            None => "No back-channel logout URI: the client is sent no logout tokens.".into(),
        },
        format!(
            "{} pending ({} failing), {} delivered, {} dead; last delivered {}",
            delivery.pending,
            delivery.failing,
            delivery.delivered,
            delivery.dead,
            delivery.last_delivered_at.as_deref().unwrap_or("never")
        ),
    ];
    for message in &delivery.recent {
        let when = message.finished_at.as_deref().or(message.next_attempt_at.as_deref()).unwrap_or("-");
        lines.push(format!(
            "{} {} after {} attempt(s), {when}{}",
            message.created_at,
            message.state,
            message.attempts,
            message.last_error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{BackchannelDelivery, OutboxMessage};

    #[test]
    fn the_delivery_view_names_the_uri_the_counts_and_each_message_with_its_error() {
        let mut delivery = BackchannelDelivery {
            client_id: "wiki".into(),
            backchannel_logout_uri: Some("https://wiki.example/bc".into()),
            backchannel_logout_session_required: true,
            pending: 1,
            failing: 1,
            delivered: 2,
            dead: 0,
            last_delivered_at: None,
            recent: vec![OutboxMessage {
                id: "m1".into(),
                state: "pending".into(),
                attempts: 2,
                created_at: "2026-11-23T12:30:03+00:00".into(),
                next_attempt_at: Some("2026-11-23T12:31:00+00:00".into()),
                finished_at: None,
                last_error: Some("answered HTTP 503".into()),
            }],
        };
        assert_eq!(
            delivery_lines(&delivery),
            [
                "URI: https://wiki.example/bc (sid required)",
                "1 pending (1 failing), 2 delivered, 0 dead; last delivered never",
                "2026-11-23T12:30:03+00:00 pending after 2 attempt(s), 2026-11-23T12:31:00+00:00: answered HTTP 503",
            ]
        );
        delivery.backchannel_logout_uri = None;
        let lines = delivery_lines(&delivery);
        assert!(lines[0].starts_with("No back-channel logout URI"), "{lines:?}");
        assert_eq!(lines.len(), 3, "its counts and messages still show");
    }
}

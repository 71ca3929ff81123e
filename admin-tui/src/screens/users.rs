//! Users: the list with search and paging, and every per-user action — create, email,
//! roles, status, unlock, password, TOTP reset, delete, their sessions — plus the detail
//! view with the user's first sessions.

use std::any::Any;

use chrono::{DateTime, FixedOffset};
use ratatui::crossterm::event::KeyCode;

use super::Screen;
use super::sessions::Sessions;
use crate::api::{Page, Passkey, Session, User};
use crate::command::Command;
use crate::components::detail::{Detail, Value};
use crate::components::input::Input;
use crate::components::list::List;
use crate::components::table::{Column, TableView, short};
use crate::outcome::{NOTHING_ENTERED, Outcome};
use crate::popup::Popup;
use crate::request::{Load, Loaded, Request, passkey_line};

#[derive(Debug, Clone, Copy)]
enum Action {
    Search,
    Create,
    /// Acts on the selected user.
    Row(Row),
}

#[derive(Debug, Clone, Copy)]
enum Row {
    Details,
    Email,
    EmailVerified,
    MailVerification,
    MailReset,
    Roles,
    Status,
    Unlock,
    Password,
    ResetTotp,
    Delete,
    Sessions,
    BrowserSessions,
    Consents,
    Passkeys,
    RevokeSessions,
}

const COMMANDS: &[Command<Action>] = &[
    Command::new(&[KeyCode::Char('/')], "search", Action::Search),
    Command::new(&[KeyCode::Char('c')], "create", Action::Create),
    Command::new(&[KeyCode::Char('e')], "edit email", Action::Row(Row::Email)),
    Command::new(&[KeyCode::Char('o')], "set roles", Action::Row(Row::Roles)),
    Command::new(&[KeyCode::Char('s')], "disable/enable", Action::Row(Row::Status)),
    Command::new(&[KeyCode::Char('u')], "unlock", Action::Row(Row::Unlock)),
    Command::new(&[KeyCode::Char('p')], "reset password", Action::Row(Row::Password)),
    Command::new(&[KeyCode::Char('t')], "reset TOTP", Action::Row(Row::ResetTotp)),
    Command::new(&[KeyCode::Char('d')], "delete", Action::Row(Row::Delete)),
    Command::new(&[KeyCode::Char('v')], "view sessions", Action::Row(Row::Sessions)),
    Command::new(&[KeyCode::Char('b')], "browser sessions", Action::Row(Row::BrowserSessions)),
    Command::new(&[KeyCode::Char('a')], "apps allowed", Action::Row(Row::Consents)),
    Command::new(&[KeyCode::Char('K')], "passkeys", Action::Row(Row::Passkeys)),
    Command::new(&[KeyCode::Char('V')], "mark email verified/not", Action::Row(Row::EmailVerified)),
    Command::new(&[KeyCode::Char('M')], "mail verification link", Action::Row(Row::MailVerification)),
    Command::new(&[KeyCode::Char('R')], "mail password reset link", Action::Row(Row::MailReset)),
    Command::new(&[KeyCode::Char('X')], "revoke all sessions", Action::Row(Row::RevokeSessions)),
    Command::new(&[KeyCode::Enter], "details", Action::Row(Row::Details)),
];

/// The prompts this screen opens; creating a user is three in a row.
#[derive(Debug)]
enum Prompt {
    Search,
    Username,
    Email { username: String },
    Password { username: String, email: Option<String> },
    SetEmail { user_id: String },
    SetPassword { user_id: String },
}

#[derive(Default)]
pub struct Users {
    list: List<User>,
    query: String,
}

impl Users {
    /// The current search (username or email).
    pub fn query(&self) -> &str {
        &self.query
    }

    fn run(&mut self, action: Action) -> Outcome {
        match action {
            Action::Search => Outcome::popup(Popup::Input(Input::new(
                "Search users (username or email)",
                &self.query,
                Prompt::Search,
            ))),
            Action::Create => Outcome::popup(Popup::Input(Input::new("New user — username", "", Prompt::Username))),
            Action::Row(row) => self.list.on_selected(|user| on_user(row, user.clone())),
        }
    }
}

fn on_user(row: Row, user: User) -> Outcome {
    let (id, name) = (user.id.clone(), user.username.clone());
    match row {
        Row::Details => Outcome {
            requests: vec![Request::UserSessions { user_id: id }],
            ..Outcome::popup(Popup::Detail(detail(&user, None)))
        },
        Row::Email => Outcome::popup(Popup::Input(Input::new(
            format!("Email of {name} (empty: remove)"),
            user.email.as_deref().unwrap_or(""),
            Prompt::SetEmail { user_id: id },
        ))),
        Row::EmailVerified => {
            let Some(email) = user.email.as_deref() else { return Outcome::error(format!("{name} has no email.")) };
            let (question, verified) = if user.email_verified {
                (format!("Mark {email} of {name} as not verified?"), false)
            } else {
                (format!("Mark {email} of {name} as verified, on your word?"), true)
            };
            Outcome::confirm(question, Request::SetEmailVerified { user_id: id, verified })
        }
        Row::MailVerification => Outcome::confirm(
            format!("Mail {name} a link that verifies their address?"),
            Request::SendLink { user_id: id, reset: false },
        ),
        Row::MailReset => Outcome::confirm(
            format!("Mail {name} a password reset link (valid 30 minutes)?"),
            Request::SendLink { user_id: id, reset: true },
        ),
        Row::Roles => {
            Outcome::request(Request::LoadRolesForPicker { user_id: id, username: name, current: user.roles })
        }
        Row::Status => {
            let (verb, status) = if user.status == "active" { ("Disable", "disabled") } else { ("Enable", "active") };
            let extra = if status == "disabled" { " Their sessions end at once." } else { "" };
            Outcome::confirm(
                format!("{verb} user {name}?{extra}"),
                Request::SetStatus { user_id: id, status: status.into() },
            )
        }
        Row::Unlock => Outcome::request(Request::Unlock { user_id: id }),
        Row::Password => Outcome::popup(Popup::Input(Input::secret(
            format!("New password for {name} (their sessions end)"),
            Prompt::SetPassword { user_id: id },
        ))),
        Row::ResetTotp => Outcome::confirm(
            format!("Reset TOTP of {name}? They log in with the password alone until they enrol again."),
            Request::ResetTotp { user_id: id },
        ),
        Row::Delete => Outcome::confirm(
            format!("Delete user {name} and all their sessions? This cannot be undone."),
            Request::DeleteUser { user_id: id },
        ),
        Row::Sessions => Outcome::open::<Sessions>(id),
        Row::BrowserSessions => Outcome::request(Request::BrowserSessions { user_id: id, username: name }),
        Row::Consents => Outcome::request(Request::Consents { user_id: id, username: name }),
        Row::Passkeys => Outcome::request(Request::Passkeys { user_id: id, username: name }),
        Row::RevokeSessions => Outcome::confirm(
            format!("Revoke every session of {name}, browser sessions included?"),
            Request::RevokeUserSessions { user_id: id },
        ),
    }
}

/// Everything about one user; their sessions once they have been fetched.
fn detail(user: &User, loaded: Option<(&Page<Session>, &[Passkey])>) -> Detail {
    let passkeys = match loaded {
        None => Value::Text("loading…".into()),
        Some((_, [])) => Value::Text("none".into()),
        Some((_, passkeys)) => Value::Lines(passkeys.iter().map(passkey_line).collect()),
    };
    let sessions = match loaded.map(|(sessions, _)| sessions) {
        None => Value::Text("loading…".into()),
        Some(page) => {
            let mut lines: Vec<String> = page
                .items
                .iter()
                .map(|s| {
                    let ip = s.ip.as_deref().unwrap_or("unknown IP");
                    format!("{} from {ip}, {}", s.client_id, s.user_agent.as_deref().unwrap_or("no user agent"))
                })
                .collect();
            let more = page.total.saturating_sub(page.items.len() as u64);
            if more > 0 {
                lines.push(format!("… and {more} more on the Sessions screen"));
            }
            Value::Lines(lines)
        }
    };
    Detail {
        id: format!("user:{}", user.id),
        title: format!("User {}", user.username),
        rows: vec![
            ("Username", Value::Text(user.username.clone())),
            ("Id", Value::Text(user.id.clone())),
            ("Email", Value::maybe(user.email.as_deref())),
            (
                "Verified",
                Value::Text(match (&user.email, user.email_verified) {
                    (None, _) => "-".into(),
                    (Some(_), true) => "yes".into(),
                    (Some(_), false) => "no".into(),
                }),
            ),
            ("Status", Value::Text(user.status.clone())),
            ("Roles", Value::Text(user.roles.join(", "))),
            ("TOTP", Value::Text(if user.totp_enabled { "on" } else { "off" }.into())),
            ("Passkeys", passkeys),
            ("Failed logins", Value::Text(user.failed_logins.to_string())),
            ("Locked until", Value::maybe_time(user.locked_until.as_deref())),
            ("Created", Value::Time(user.created_at.clone())),
            ("Sessions", sessions),
        ],
    }
}

impl Screen for Users {
    screen_basics!(title: "Users", commands: COMMANDS => run);

    fn submit(&mut self, prompt: Box<dyn Any>, value: String) -> Outcome {
        let Ok(prompt) = prompt.downcast::<Prompt>() else { return Outcome::default() };
        let trimmed = value.trim().to_string();
        let optional = (!trimmed.is_empty()).then(|| trimmed.clone());
        match *prompt {
            Prompt::Search => {
                self.query = trimmed;
                self.reload_from_first_page()
            }
            Prompt::Username if !trimmed.is_empty() => {
                Outcome::popup(Popup::Input(Input::new("Email (optional)", "", Prompt::Email { username: trimmed })))
            }
            Prompt::Email { username } => Outcome::popup(Popup::Input(Input::secret(
                "Password (empty: generate a one-time password)",
                Prompt::Password { username, email: optional },
            ))),
            Prompt::Password { username, email } => Outcome::request(Request::CreateUser {
                username,
                email,
                password: (!value.is_empty()).then(|| value.into()),
            }),
            Prompt::SetEmail { user_id } => Outcome::request(Request::SetEmail { user_id, email: optional }),
            Prompt::SetPassword { user_id } if !value.is_empty() => {
                Outcome::request(Request::SetPassword { user_id, password: value.into() })
            }
            Prompt::Username | Prompt::SetPassword { .. } => Outcome::info(NOTHING_ENTERED),
        }
    }

    fn load(&self) -> Load {
        Load::Users { query: self.query.clone(), page: self.list.table().page() }
    }

    fn apply(&mut self, loaded: Loaded) -> Result<Outcome, Loaded> {
        match loaded {
            Loaded::Users(page) => {
                self.list.apply_page(page);
                Ok(Outcome::default())
            }
            Loaded::UserSessions { user_id, sessions, passkeys } => {
                let user = self.list.items().iter().find(|u| u.id == user_id);
                Ok(Outcome { detail: user.map(|u| detail(u, Some((&sessions, &passkeys)))), ..Outcome::default() })
            }
            other => Err(other),
        }
    }

    fn view(&self, _now: DateTime<FixedOffset>) -> TableView {
        const COLUMNS: &[Column] = &[
            Column::fixed("Username", 18),
            Column::fixed("Status", 9),
            Column::fixed("Roles", 22),
            Column::fixed("TOTP", 5),
            Column::rest("Email", 10),
        ];
        let search = if self.query.is_empty() { String::new() } else { format!("— search “{}”", self.query) };
        self.list.view(self.title(), &search, COLUMNS, |u| {
            let status = if u.locked_until.is_some() { "locked".to_string() } else { u.status.clone() };
            vec![
                short(&u.username, 18),
                status,
                short(&u.roles.join(","), 22),
                if u.totp_enabled { "on" } else { "-" }.into(),
                u.email.clone().unwrap_or_default(),
            ]
        })
    }
}

//! Sessions: every session, or one user's (a filter the Users screen can set), with
//! revoking one or all of a user's.

use std::any::Any;

use chrono::{DateTime, FixedOffset};
use ratatui::crossterm::event::KeyCode;

use super::Screen;
use crate::api::Session;
use crate::command::Command;
use crate::components::detail::{Detail, Value};
use crate::components::input::Input;
use crate::components::list::List;
use crate::components::table::{Column, TableView, short};
use crate::outcome::Outcome;
use crate::popup::Popup;
use crate::request::{Load, Request};
use crate::time;

#[derive(Debug, Clone, Copy)]
enum Action {
    Filter,
    /// Acts on the selected session.
    Row(Row),
    Details,
}

#[derive(Debug, Clone, Copy)]
enum Row {
    Revoke,
    RevokeUser,
}

const COMMANDS: &[Command<Action>] = &[
    Command::new(&[KeyCode::Char('f')], "filter by user id", Action::Filter),
    Command::new(&[KeyCode::Char('d')], "revoke", Action::Row(Row::Revoke)),
    Command::new(&[KeyCode::Char('X')], "revoke all of user", Action::Row(Row::RevokeUser)),
    Command::new(&[KeyCode::Enter], "details", Action::Details),
];

/// The filter prompt, the only one here.
#[derive(Debug)]
struct FilterPrompt;

#[derive(Default)]
pub struct Sessions {
    list: List<Session>,
    user_id: Option<String>,
}

fn on_session(row: Row, session: Session) -> Outcome {
    match row {
        Row::Revoke => Outcome::confirm(
            format!("Revoke session of {} from {}?", session.username, session.ip.as_deref().unwrap_or("unknown IP")),
            Request::RevokeSession { id: session.id },
        ),
        Row::RevokeUser => Outcome::confirm(
            format!("Revoke every session of {}?", session.username),
            Request::RevokeUserSessions { user_id: session.user_id },
        ),
    }
}

fn detail(session: &Session) -> Detail {
    Detail {
        id: format!("session:{}", session.id),
        title: format!("Session of {}", session.username),
        rows: vec![
            ("Id", Value::Text(session.id.clone())),
            ("User", Value::Text(format!("{} ({})", session.username, session.user_id))),
            ("Client", Value::Text(session.client_id.clone())),
            ("IP", Value::maybe(session.ip.as_deref())),
            ("User agent", Value::maybe(session.user_agent.as_deref())),
            ("Created", Value::Time(session.created_at.clone())),
            ("Last used", Value::Time(session.last_used_at.clone())),
            ("Idle expiry", Value::Time(session.idle_expires_at.clone())),
            ("Ends at", Value::Time(session.absolute_expires_at.clone())),
        ],
    }
}

impl Sessions {
    /// What one of [`COMMANDS`] does.
    fn run(&mut self, action: Action) -> Outcome {
        match action {
            Action::Filter => Outcome::popup(Popup::Input(Input::new(
                "Filter by user id (empty: all)",
                self.user_id.as_deref().unwrap_or(""),
                FilterPrompt,
            ))),
            Action::Row(row) => self.list.on_selected(|session| on_session(row, session.clone())),
            Action::Details => self.list.details(detail),
        }
    }
}

impl Screen for Sessions {
    screen_basics!(title: "Sessions", commands: COMMANDS => run, loaded: Sessions => apply_page);

    fn submit(&mut self, prompt: Box<dyn Any>, value: String) -> Outcome {
        if !prompt.is::<FilterPrompt>() {
            return Outcome::default();
        }
        let trimmed = value.trim();
        self.user_id = (!trimmed.is_empty()).then(|| trimmed.to_string());
        self.reload_from_first_page()
    }

    fn load(&self) -> Load {
        Load::Sessions { user_id: self.user_id.clone(), page: self.list.table().page() }
    }

    fn open_with(&mut self, user_id: String) {
        self.user_id = Some(user_id);
        self.list.table_mut().first_page();
    }

    fn view(&self, now: DateTime<FixedOffset>) -> TableView {
        const COLUMNS: &[Column] = &[
            Column::fixed("User", 12),
            Column::fixed("Client", 10),
            Column::fixed("IP", 15),
            Column::fixed("Created", 15),
            Column::fixed("Last used", 15),
            Column::rest("User agent", 8),
        ];
        let filter = self.user_id.as_deref().map(|u| format!("— user {}", short(u, 13))).unwrap_or_default();
        self.list.view(self.title(), &filter, COLUMNS, |s| {
            vec![
                short(&s.username, 12),
                short(&s.client_id, 10),
                s.ip.clone().unwrap_or_default(),
                time::relative(&s.created_at, now),
                time::relative(&s.last_used_at, now),
                s.user_agent.clone().unwrap_or_default(),
            ]
        })
    }
}

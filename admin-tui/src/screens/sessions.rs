//! Sessions: every session, or one user's (a filter the Users screen can set), with
//! revoking one or all of a user's.

use std::any::Any;

use chrono::{DateTime, FixedOffset};
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Constraint;

use super::Screen;
use crate::api::{Page, Session};
use crate::command::{Command, Hint, hints, lookup};
use crate::components::detail::{Detail, Value};
use crate::components::input::Input;
use crate::components::table::{Table, TableView, short};
use crate::outcome::Outcome;
use crate::popup::Popup;
use crate::request::{Load, Loaded, Request};
use crate::time;

#[derive(Debug, Clone, Copy)]
enum Action {
    Filter,
    /// Acts on the selected session.
    Row(Row),
}

#[derive(Debug, Clone, Copy)]
enum Row {
    Details,
    Revoke,
    RevokeUser,
}

const COMMANDS: &[Command<Action>] = &[
    Command::new(&[KeyCode::Char('f')], "filter by user id", Action::Filter),
    Command::new(&[KeyCode::Char('d')], "revoke", Action::Row(Row::Revoke)),
    Command::new(&[KeyCode::Char('X')], "revoke all of user", Action::Row(Row::RevokeUser)),
    Command::new(&[KeyCode::Enter], "details", Action::Row(Row::Details)),
];

/// The filter prompt, the only one here.
#[derive(Debug)]
struct FilterPrompt;

#[derive(Default)]
pub struct Sessions {
    list: Option<Page<Session>>,
    table: Table,
    user_id: Option<String>,
}

fn on_session(row: Row, session: Session) -> Outcome {
    match row {
        Row::Details => Outcome::popup(Popup::Detail(detail(&session))),
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

impl Screen for Sessions {
    fn title(&self) -> &'static str {
        "Sessions"
    }

    fn commands(&self) -> Vec<Hint> {
        hints(COMMANDS)
    }

    fn on_key(&mut self, key: &KeyEvent) -> Option<Outcome> {
        Some(match lookup(COMMANDS, key)? {
            Action::Filter => Outcome::popup(Popup::Input(Input::new(
                "Filter by user id (empty: all)",
                self.user_id.as_deref().unwrap_or(""),
                FilterPrompt,
            ))),
            Action::Row(row) => {
                let selected = self.list.as_ref().and_then(|p| p.items.get(self.table.selected()));
                selected.cloned().map_or_else(Outcome::default, |s| on_session(row, s))
            }
        })
    }

    fn submit(&mut self, prompt: Box<dyn Any>, value: String) -> Outcome {
        if !prompt.is::<FilterPrompt>() {
            return Outcome::default();
        }
        let trimmed = value.trim();
        self.user_id = (!trimmed.is_empty()).then(|| trimmed.to_string());
        self.table.first_page();
        Outcome::request(Request::Load(self.load()))
    }

    fn load(&self) -> Load {
        Load::Sessions { user_id: self.user_id.clone(), page: self.table.page() }
    }

    fn open_with(&mut self, user_id: String) {
        self.user_id = Some(user_id);
        self.table.first_page();
    }

    fn apply(&mut self, loaded: Loaded) -> Result<Outcome, Loaded> {
        let Loaded::Sessions(page) = loaded else { return Err(loaded) };
        self.table.loaded(page.items.len(), Some(page.total));
        self.list = Some(page);
        Ok(Outcome::default())
    }

    fn table(&self) -> &Table {
        &self.table
    }

    fn table_mut(&mut self) -> &mut Table {
        &mut self.table
    }

    fn view(&self, now: DateTime<FixedOffset>) -> TableView {
        let filter = self.user_id.as_deref().map(|u| format!("— user {}", short(u, 13))).unwrap_or_default();
        let rows = self.list.as_ref().map_or_else(Vec::new, |p| {
            p.items
                .iter()
                .map(|s| {
                    vec![
                        short(&s.username, 12),
                        short(&s.client_id, 10),
                        s.ip.clone().unwrap_or_default(),
                        time::relative(&s.created_at, now),
                        time::relative(&s.last_used_at, now),
                        s.user_agent.clone().unwrap_or_default(),
                    ]
                })
                .collect()
        });
        TableView {
            title: self.table.title("Sessions", &filter),
            header: vec!["User", "Client", "IP", "Created", "Last used", "User agent"],
            widths: vec![
                Constraint::Length(12),
                Constraint::Length(10),
                Constraint::Length(15),
                Constraint::Length(15),
                Constraint::Length(15),
                Constraint::Min(8),
            ],
            rows,
        }
    }
}

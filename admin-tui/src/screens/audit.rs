//! The audit log: newest first, filtered by action, followed live (reloaded every few
//! seconds) unless the operator turns that off. Actors and targets show their names
//! when the server knows them, else the raw id.

use std::any::Any;

use chrono::{DateTime, FixedOffset};
use ratatui::crossterm::event::KeyCode;

use super::Screen;
use crate::api::AuditEvent;
use crate::command::Command;
use crate::components::detail::{Detail, Value};
use crate::components::input::Input;
use crate::components::list::List;
use crate::components::table::{Column, TableView, short};
use crate::outcome::Outcome;
use crate::popup::Popup;
use crate::request::Load;
use crate::time;

#[derive(Debug, Clone, Copy)]
enum Action {
    Details,
    Filter,
    Follow,
}

const COMMANDS: &[Command<Action>] = &[
    Command::new(&[KeyCode::Char('f')], "filter by action", Action::Filter),
    Command::new(&[KeyCode::Char('F')], "follow on/off", Action::Follow),
    Command::new(&[KeyCode::Enter], "details", Action::Details),
];

/// The filter prompt, the only one here.
#[derive(Debug)]
struct FilterPrompt;

pub struct Audit {
    list: List<AuditEvent>,
    action: String,
    follow: bool,
}

impl Default for Audit {
    /// Following is on from the start: the screen is mostly watched.
    fn default() -> Self {
        Self { list: List::default(), action: String::new(), follow: true }
    }
}

/// `name` when the server sent one, else the raw id.
fn named(name: Option<&str>, id: &str) -> String {
    name.unwrap_or(id).to_string()
}

/// `carol (01a2…)`, or the id alone.
fn name_and_id(name: Option<&str>, id: &str) -> String {
    match name {
        Some(name) => format!("{name} ({id})"),
        None => id.to_string(),
    }
}

fn detail(event: &AuditEvent) -> Detail {
    let details = serde_json::to_string_pretty(&event.details).unwrap_or_else(|_| event.details.to_string());
    let target = event.target.as_deref().map(|t| name_and_id(event.target_name.as_deref(), t));
    Detail {
        id: format!("audit:{}", event.id),
        title: format!("Audit event {}", event.id),
        rows: vec![
            ("When", Value::Time(event.occurred_at.clone())),
            ("Action", Value::Text(event.action.clone())),
            ("Outcome", Value::Text(event.outcome.clone())),
            ("Actor", Value::Text(name_and_id(event.actor_name.as_deref(), &event.actor))),
            ("Target", Value::maybe(target.as_deref())),
            ("IP", Value::maybe(event.ip.as_deref())),
            ("Details", Value::Lines(details.lines().map(str::to_string).collect())),
        ],
    }
}

impl Audit {
    /// What one of [`COMMANDS`] does.
    fn run(&mut self, action: Action) -> Outcome {
        match action {
            Action::Details => self.list.details(detail),
            Action::Filter => {
                Outcome::popup(Popup::Input(Input::new("Filter by action (empty: all)", &self.action, FilterPrompt)))
            }
            Action::Follow => {
                self.follow = !self.follow;
                Outcome::info(if self.follow { "Following new events." } else { "Not following." })
            }
        }
    }
}

impl Screen for Audit {
    screen_basics!(title: "Audit", commands: COMMANDS => run, loaded: Audit => apply_page);

    fn submit(&mut self, prompt: Box<dyn Any>, value: String) -> Outcome {
        if !prompt.is::<FilterPrompt>() {
            return Outcome::default();
        }
        self.action = value.trim().to_string();
        self.reload_from_first_page()
    }

    fn load(&self) -> Load {
        let action = Some(self.action.clone()).filter(|a| !a.is_empty());
        Load::Audit { action, page: self.list.table().page() }
    }

    fn view(&self, now: DateTime<FixedOffset>) -> TableView {
        const COLUMNS: &[Column] = &[
            Column::fixed("When", 15),
            Column::fixed("Action", 20),
            Column::fixed("Outcome", 8),
            Column::fixed("Actor", 16),
            Column::rest("Target", 8),
        ];
        let mut extra = if self.follow { "— following".to_string() } else { String::new() };
        if !self.action.is_empty() {
            extra.push_str(&format!(" — action {}", self.action));
        }
        self.list.view(self.title(), &extra, COLUMNS, |e| {
            let target = e.target.as_deref().map(|t| named(e.target_name.as_deref(), t));
            vec![
                time::relative(&e.occurred_at, now),
                short(&e.action, 20),
                e.outcome.clone(),
                short(&named(e.actor_name.as_deref(), &e.actor), 16),
                target.unwrap_or_default(),
            ]
        })
    }

    fn follows(&self) -> bool {
        self.follow
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Page;
    use crate::request::Loaded;

    /// Today's server sends no names; newer ones do. Both parse, and the table shows
    /// the name when there is one, else the raw id.
    #[test]
    fn names_when_the_server_sends_them_else_ids() {
        let event = |names: serde_json::Value| {
            let mut json = serde_json::json!({
                "id": 1, "occurred_at": "2026-12-01T06:52:00+00:00", "actor": "01a2-actor",
                "action": "user.delete", "target": "01a2-target", "outcome": "success", "details": {}
            });
            json.as_object_mut().unwrap().extend(names.as_object().unwrap().clone());
            serde_json::from_value::<AuditEvent>(json).unwrap()
        };
        let mut audit = Audit::default();
        let items =
            vec![event(serde_json::json!({})), event(serde_json::json!({"actor_name": "root", "target_name": "dana"}))];
        audit.apply(Loaded::Audit(Page { items, total: 2, page: 1, page_size: 50 })).unwrap();
        let now = DateTime::parse_from_rfc3339("2026-12-01T06:55:00+00:00").unwrap();
        let rows = audit.view(now).rows;
        assert_eq!(rows[0][3..], ["01a2-actor".to_string(), "01a2-target".to_string()]);
        assert_eq!(rows[1][3..], ["root".to_string(), "dana".to_string()]);
        assert_eq!(rows[0][0], "3m ago");
    }
}

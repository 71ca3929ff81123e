//! Signing keys: their states and when they activate, and rotating them.

use std::any::Any;

use chrono::{DateTime, FixedOffset};
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Constraint;

use super::Screen;
use crate::api::SigningKey;
use crate::command::{Command, Hint, hints, lookup};
use crate::components::detail::{Detail, Value};
use crate::components::table::{Table, TableView, short};
use crate::outcome::Outcome;
use crate::popup::Popup;
use crate::request::{Load, Loaded, Request};
use crate::time;

#[derive(Debug, Clone, Copy)]
enum Action {
    Details,
    Rotate,
}

const COMMANDS: &[Command<Action>] = &[
    Command::new(&[KeyCode::Char('R')], "rotate", Action::Rotate),
    Command::new(&[KeyCode::Enter], "details", Action::Details),
];

#[derive(Default)]
pub struct Keys {
    keys: Vec<SigningKey>,
    table: Table,
}

fn detail(key: &SigningKey) -> Detail {
    Detail {
        id: format!("key:{}", key.kid),
        title: "Signing key".into(),
        rows: vec![
            ("Kid", Value::Text(key.kid.clone())),
            ("Algorithm", Value::Text(format!("{} ({} bits)", key.algorithm, key.bits))),
            ("State", Value::Text(key.state.clone())),
            ("In JWKS", Value::Text(if key.published { "yes" } else { "no" }.into())),
            ("Created", Value::Time(key.created_at.clone())),
            ("Activated", Value::maybe_time(key.activated_at.as_deref())),
            ("Activates", Value::maybe_time(key.activates_at.as_deref())),
            ("Retired", Value::maybe_time(key.retired_at.as_deref())),
            ("Unpublished", Value::maybe_time(key.unpublished_at.as_deref())),
        ],
    }
}

impl Screen for Keys {
    fn title(&self) -> &'static str {
        "Keys"
    }

    fn commands(&self) -> Vec<Hint> {
        hints(COMMANDS)
    }

    fn on_key(&mut self, key: &KeyEvent) -> Option<Outcome> {
        Some(match lookup(COMMANDS, key)? {
            Action::Details => self
                .keys
                .get(self.table.selected())
                .map_or_else(Outcome::default, |k| Outcome::popup(Popup::Detail(detail(k)))),
            Action::Rotate => Outcome::confirm(
                "Rotate signing keys? A new key is published now and signs after the JWKS cache lifetime.",
                Request::RotateKeys,
            ),
        })
    }

    /// This screen opens no prompt.
    fn submit(&mut self, _prompt: Box<dyn Any>, _value: String) -> Outcome {
        Outcome::default()
    }

    fn load(&self) -> Load {
        Load::Keys
    }

    fn apply(&mut self, loaded: Loaded) -> Result<Outcome, Loaded> {
        let Loaded::Keys(keys) = loaded else { return Err(loaded) };
        self.table.loaded(keys.len(), None);
        self.keys = keys;
        Ok(Outcome::default())
    }

    fn table(&self) -> &Table {
        &self.table
    }

    fn table_mut(&mut self) -> &mut Table {
        &mut self.table
    }

    fn view(&self, now: DateTime<FixedOffset>) -> TableView {
        TableView {
            title: self.table.title("Signing keys", ""),
            header: vec!["Kid", "State", "Bits", "Created", "Activated / due", "JWKS"],
            widths: vec![
                Constraint::Length(14),
                Constraint::Length(8),
                Constraint::Length(5),
                Constraint::Length(16),
                Constraint::Length(16),
                Constraint::Min(4),
            ],
            rows: self
                .keys
                .iter()
                .map(|k| {
                    let activated = k.activated_at.as_deref().or(k.activates_at.as_deref());
                    vec![
                        short(&k.kid, 14),
                        k.state.clone(),
                        k.bits.to_string(),
                        time::relative(&k.created_at, now),
                        activated.map(|at| time::relative(at, now)).unwrap_or_default(),
                        if k.published { "yes" } else { "no" }.into(),
                    ]
                })
                .collect(),
        }
    }
}

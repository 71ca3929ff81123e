//! Signing keys: their states and when they activate, and rotating them.

use chrono::{DateTime, FixedOffset};
use ratatui::crossterm::event::KeyCode;

use super::Screen;
use crate::api::SigningKey;
use crate::command::Command;
use crate::components::detail::{Detail, Value};
use crate::components::list::List;
use crate::components::table::{Column, TableView, short};
use crate::outcome::Outcome;
use crate::request::{Load, Request};
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
    list: List<SigningKey>,
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

impl Keys {
    /// What one of [`COMMANDS`] does.
    fn run(&mut self, action: Action) -> Outcome {
        match action {
            Action::Details => self.list.details(detail),
            Action::Rotate => Outcome::confirm(
                "Rotate signing keys? A new key is published now and signs after the JWKS cache lifetime.",
                Request::RotateKeys,
            ),
        }
    }
}

impl Screen for Keys {
    screen_basics!(title: "Keys", commands: COMMANDS => run, loaded: Keys => apply_all);

    fn load(&self) -> Load {
        Load::Keys
    }

    fn view(&self, now: DateTime<FixedOffset>) -> TableView {
        const COLUMNS: &[Column] = &[
            Column::fixed("Kid", 14),
            Column::fixed("State", 8),
            Column::fixed("Bits", 5),
            Column::fixed("Created", 16),
            Column::fixed("Activated / due", 16),
            Column::rest("JWKS", 4),
        ];
        self.list.view("Signing keys", "", COLUMNS, |k| {
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
    }
}

//! OAuth clients: the list, creating one (its secret shown once), rotating a secret,
//! deleting one.

use std::any::Any;

use chrono::{DateTime, FixedOffset};
use ratatui::crossterm::event::{KeyCode, KeyEvent};

use super::Screen;
use crate::api::Client;
use crate::command::{Command, Hint, hints, lookup};
use crate::components::detail::{Detail, Value};
use crate::components::input::Input;
use crate::components::list::List;
use crate::components::table::{Column, Table, TableView, short};
use crate::outcome::Outcome;
use crate::popup::Popup;
use crate::request::{Load, Loaded, Request};

#[derive(Debug, Clone, Copy)]
enum Action {
    Create,
    /// Acts on the selected client.
    Row(Row),
    Details,
}

#[derive(Debug, Clone, Copy)]
enum Row {
    RotateSecret,
    Delete,
}

const COMMANDS: &[Command<Action>] = &[
    Command::new(&[KeyCode::Char('c')], "create", Action::Create),
    Command::new(&[KeyCode::Char('s')], "rotate secret", Action::Row(Row::RotateSecret)),
    Command::new(&[KeyCode::Char('d')], "delete", Action::Row(Row::Delete)),
    Command::new(&[KeyCode::Enter], "details", Action::Details),
];

/// The create prompt, the only one here.
#[derive(Debug)]
struct CreatePrompt;

#[derive(Default)]
pub struct Clients {
    list: List<Client>,
}

fn on_client(row: Row, client: Client) -> Outcome {
    match row {
        Row::RotateSecret => Outcome::confirm(
            format!("Rotate the secret of {}? The old one stops working at once.", client.client_id),
            Request::RotateClientSecret { client_id: client.client_id },
        ),
        Row::Delete => Outcome::confirm(
            format!("Delete client {} and its sessions?", client.client_id),
            Request::DeleteClient { client_id: client.client_id },
        ),
    }
}

/// The admin API's client record has no redirect URIs, so neither has this view.
fn detail(client: &Client) -> Detail {
    Detail {
        id: format!("client:{}", client.client_id),
        title: format!("Client {}", client.client_id),
        rows: vec![
            ("Client id", Value::Text(client.client_id.clone())),
            ("Name", Value::Text(client.name.clone())),
            ("Type", Value::Text(client.client_type.clone())),
            ("Grants", Value::Lines(client.grant_types.clone())),
            ("Scopes", Value::Text(client.scopes.join(" "))),
            ("Audience", Value::maybe(client.audience.as_deref())),
            ("Roles", Value::Text(client.roles.join(", "))),
            ("Created", Value::Time(client.created_at.clone())),
            ("Updated", Value::Time(client.updated_at.clone())),
        ],
    }
}

impl Screen for Clients {
    fn title(&self) -> &'static str {
        "Clients"
    }

    fn commands(&self) -> Vec<Hint> {
        hints(COMMANDS)
    }

    fn on_key(&mut self, key: &KeyEvent) -> Option<Outcome> {
        Some(match lookup(COMMANDS, key)? {
            Action::Create => Outcome::popup(Popup::Input(Input::new(
                "New client: <client_id> <grant>… (client_credentials ⇒ confidential)",
                "",
                CreatePrompt,
            ))),
            Action::Row(row) => self.list.on_selected(|client| on_client(row, client.clone())),
            Action::Details => self.list.details(detail),
        })
    }

    fn submit(&mut self, prompt: Box<dyn Any>, value: String) -> Outcome {
        if !prompt.is::<CreatePrompt>() {
            return Outcome::default();
        }
        let mut parts: Vec<String> = value.split_whitespace().map(str::to_string).collect();
        if parts.len() < 2 {
            return Outcome::error("Type a client id and at least one grant type.");
        }
        let client_id = parts.remove(0);
        Outcome::request(Request::CreateClient { client_id, grants: parts })
    }

    fn load(&self) -> Load {
        Load::Clients { page: self.list.table().page() }
    }

    fn apply(&mut self, loaded: Loaded) -> Result<Outcome, Loaded> {
        let Loaded::Clients(page) = loaded else { return Err(loaded) };
        self.list.apply_page(page);
        Ok(Outcome::default())
    }

    fn table(&self) -> &Table {
        self.list.table()
    }

    fn table_mut(&mut self) -> &mut Table {
        self.list.table_mut()
    }

    fn view(&self, _now: DateTime<FixedOffset>) -> TableView {
        const COLUMNS: &[Column] = &[
            Column::fixed("Client id", 18),
            Column::fixed("Type", 13),
            Column::fixed("Grants", 30),
            Column::rest("Roles", 8),
        ];
        self.list.view(self.title(), "", COLUMNS, |c| {
            vec![short(&c.client_id, 18), c.client_type.clone(), c.grant_types.join(" "), c.roles.join(",")]
        })
    }
}

//! OAuth clients: the list, creating one (its secret shown once), rotating a secret,
//! deleting one.

use std::any::Any;

use chrono::{DateTime, FixedOffset};
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Constraint;

use super::Screen;
use crate::api::{Client, Page};
use crate::command::{Command, Hint, hints, lookup};
use crate::components::detail::{Detail, Value};
use crate::components::input::Input;
use crate::components::table::{Table, TableView, short};
use crate::outcome::Outcome;
use crate::popup::Popup;
use crate::request::{Load, Loaded, Request};

#[derive(Debug, Clone, Copy)]
enum Action {
    Create,
    /// Acts on the selected client.
    Row(Row),
}

#[derive(Debug, Clone, Copy)]
enum Row {
    Details,
    RotateSecret,
    Delete,
}

const COMMANDS: &[Command<Action>] = &[
    Command::new(&[KeyCode::Char('c')], "create", Action::Create),
    Command::new(&[KeyCode::Char('s')], "rotate secret", Action::Row(Row::RotateSecret)),
    Command::new(&[KeyCode::Char('d')], "delete", Action::Row(Row::Delete)),
    Command::new(&[KeyCode::Enter], "details", Action::Row(Row::Details)),
];

/// The create prompt, the only one here.
#[derive(Debug)]
struct CreatePrompt;

#[derive(Default)]
pub struct Clients {
    list: Option<Page<Client>>,
    table: Table,
}

fn on_client(row: Row, client: Client) -> Outcome {
    match row {
        Row::Details => Outcome::popup(Popup::Detail(detail(&client))),
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
            Action::Row(row) => {
                let selected = self.list.as_ref().and_then(|p| p.items.get(self.table.selected()));
                selected.cloned().map_or_else(Outcome::default, |c| on_client(row, c))
            }
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
        Load::Clients { page: self.table.page() }
    }

    fn apply(&mut self, loaded: Loaded) -> Result<Outcome, Loaded> {
        let Loaded::Clients(page) = loaded else { return Err(loaded) };
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

    fn view(&self, _now: DateTime<FixedOffset>) -> TableView {
        let rows = self.list.as_ref().map_or_else(Vec::new, |p| {
            p.items
                .iter()
                .map(|c| {
                    vec![short(&c.client_id, 18), c.client_type.clone(), c.grant_types.join(" "), c.roles.join(",")]
                })
                .collect()
        });
        TableView {
            title: self.table.title("Clients", ""),
            header: vec!["Client id", "Type", "Grants", "Roles"],
            widths: vec![Constraint::Length(18), Constraint::Length(13), Constraint::Length(30), Constraint::Min(8)],
            rows,
        }
    }
}

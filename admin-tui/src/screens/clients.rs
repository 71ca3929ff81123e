//! OAuth clients: the list, creating one (its secret shown once), rotating a secret,
//! deleting one.

use std::any::Any;

use chrono::{DateTime, FixedOffset};
use ratatui::crossterm::event::KeyCode;

use super::Screen;
use crate::api::Client;
use crate::command::Command;
use crate::components::detail::{Detail, Value};
use crate::components::input::Input;
use crate::components::list::List;
use crate::components::table::{Column, TableView, short};
use crate::outcome::Outcome;
use crate::popup::Popup;
use crate::request::{Load, Request};

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

impl Clients {
    /// What one of [`COMMANDS`] does.
    fn run(&mut self, action: Action) -> Outcome {
        match action {
            Action::Create => Outcome::popup(Popup::Input(Input::new(
                "New client: <client_id> <grant>… (client_credentials ⇒ confidential)",
                "",
                CreatePrompt,
            ))),
            Action::Row(row) => self.list.on_selected(|client| on_client(row, client.clone())),
            Action::Details => self.list.details(detail),
        }
    }
}

impl Screen for Clients {
    screen_basics!(title: "Clients", commands: COMMANDS => run, loaded: Clients => apply_page);

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

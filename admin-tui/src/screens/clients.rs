//! OAuth clients: the list, creating one (its secret shown once), editing where the
//! code flow may send users back to and whether a client is first-party, rotating a
//! secret, deleting one, and how its back-channel logout tokens are delivered (dead ones
//! sent again).

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
    RedirectUris,
    FirstParty,
    RotateSecret,
    Backchannel,
    RetryBackchannel,
    Delete,
}

const COMMANDS: &[Command<Action>] = &[
    Command::new(&[KeyCode::Char('c')], "create", Action::Create),
    Command::new(&[KeyCode::Char('u')], "redirect URIs", Action::Row(Row::RedirectUris)),
    Command::new(&[KeyCode::Char('f')], "first-party", Action::Row(Row::FirstParty)),
    Command::new(&[KeyCode::Char('s')], "rotate secret", Action::Row(Row::RotateSecret)),
    Command::new(&[KeyCode::Char('d')], "delete", Action::Row(Row::Delete)),
    Command::new(&[KeyCode::Char('l')], "logout deliveries", Action::Row(Row::Backchannel)),
    Command::new(&[KeyCode::Char('R')], "retry dead logouts", Action::Row(Row::RetryBackchannel)),
    Command::new(&[KeyCode::Enter], "details", Action::Details),
];

/// The create prompt.
#[derive(Debug)]
struct CreatePrompt;

/// The redirect URI prompt of one client.
#[derive(Debug)]
struct RedirectPrompt {
    client_id: String,
}

#[derive(Default)]
pub struct Clients {
    list: List<Client>,
}

fn on_client(row: Row, client: Client) -> Outcome {
    match row {
        Row::RedirectUris => Outcome::popup(Popup::Input(Input::new(
            format!("Redirect URIs of {} (space-separated, exact; empty clears)", client.client_id),
            &client.redirect_uris.join(" "),
            RedirectPrompt { client_id: client.client_id },
        ))),
        Row::FirstParty if client.first_party => Outcome::confirm(
            format!(
                "Make {} third-party? Users will be asked for consent; its tokens get its own audience.",
                client.client_id
            ),
            Request::SetClientFirstParty { client_id: client.client_id, first_party: false },
        ),
        Row::FirstParty => Outcome::confirm(
            format!(
                "Make {} first-party? It skips consent and its tokens may carry Latchkey's audience and every role.",
                client.client_id
            ),
            Request::SetClientFirstParty { client_id: client.client_id, first_party: true },
        ),
        Row::RotateSecret => Outcome::confirm(
            format!("Rotate the secret of {}? The old one stops working at once.", client.client_id),
            Request::RotateClientSecret { client_id: client.client_id },
        ),
        Row::Backchannel => Outcome::request(Request::ClientBackchannel { client_id: client.client_id }),
        Row::RetryBackchannel => Outcome::confirm(
            format!("Send the dead logout tokens of {} again?", client.client_id),
            Request::RetryClientBackchannel { client_id: client.client_id },
        ),
        Row::Delete => Outcome::confirm(
            format!("Delete client {} and its sessions?", client.client_id),
            Request::DeleteClient { client_id: client.client_id },
        ),
    }
}

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
            ("First-party", Value::Text(if client.first_party { "yes" } else { "no (asks consent)" }.into())),
            ("Redirect URIs", Value::Lines(client.redirect_uris.clone())),
            ("Logout URIs", Value::Lines(client.post_logout_redirect_uris.clone())),
            ("Origins", Value::Lines(client.allowed_origins.clone())),
            (
                "Back-channel",
                Value::maybe(
                    client
                        .backchannel_logout_uri
                        .as_ref()
                        .map(|uri| {
                            if client.backchannel_logout_session_required {
                                format!("{uri} (sid required)")
                            } else {
                                uri.clone()
                            }
                        })
                        .as_deref(),
                ),
            ),
            ("Visible roles", Value::maybe(client.visible_roles.as_ref().map(|r| r.join(", ")).as_deref())),
            (
                "DPoP",
                Value::Text(
                    if client.dpop_bound_access_tokens { "required (tokens bound to its key)" } else { "optional" }
                        .into(),
                ),
            ),
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
                "New client: <client_id> <grant>… [<redirect URI>…] (client_credentials ⇒ confidential)",
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
        let words = || value.split_whitespace().map(str::to_string);
        if let Some(redirect) = prompt.downcast_ref::<RedirectPrompt>() {
            let uris = words().collect();
            return Outcome::request(Request::SetClientRedirectUris { client_id: redirect.client_id.clone(), uris });
        }
        if !prompt.is::<CreatePrompt>() {
            return Outcome::default();
        }
        // Grant types are plain words; anything with a colon is a redirect URI.
        let (redirect_uris, mut grants): (Vec<String>, Vec<String>) = words().partition(|w| w.contains(':'));
        if grants.len() < 2 {
            return Outcome::error("Type a client id and at least one grant type.");
        }
        let client_id = grants.remove(0);
        Outcome::request(Request::CreateClient { client_id, grants, redirect_uris })
    }

    fn load(&self) -> Load {
        Load::Clients { page: self.list.table().page() }
    }

    fn view(&self, _now: DateTime<FixedOffset>) -> TableView {
        const COLUMNS: &[Column] = &[
            Column::fixed("Client id", 18),
            Column::fixed("Type", 13),
            Column::fixed("1st", 4),
            Column::fixed("Grants", 30),
            Column::rest("Roles", 8),
        ];
        self.list.view(self.title(), "", COLUMNS, |c| {
            let first = if c.first_party { "yes" } else { "no" }.to_string();
            vec![short(&c.client_id, 18), c.client_type.clone(), first, c.grant_types.join(" "), c.roles.join(",")]
        })
    }
}

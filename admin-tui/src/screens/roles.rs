//! Roles: the list, creating one, its description and permissions, deleting it.

use std::any::Any;

use chrono::{DateTime, FixedOffset};
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Constraint;

use super::Screen;
use crate::api::Role;
use crate::command::{Command, Hint, hints, lookup};
use crate::components::detail::{Detail, Value};
use crate::components::input::Input;
use crate::components::table::{Table, TableView};
use crate::outcome::{NOTHING_ENTERED, Outcome};
use crate::popup::Popup;
use crate::request::{Load, Loaded, Request};

#[derive(Debug, Clone, Copy)]
enum Action {
    Create,
    /// Acts on the selected role.
    Row(Row),
}

#[derive(Debug, Clone, Copy)]
enum Row {
    Details,
    Description,
    Permissions,
    Delete,
}

const COMMANDS: &[Command<Action>] = &[
    Command::new(&[KeyCode::Char('c')], "create", Action::Create),
    Command::new(&[KeyCode::Char('e')], "edit description", Action::Row(Row::Description)),
    Command::new(&[KeyCode::Char('p')], "edit permissions", Action::Row(Row::Permissions)),
    Command::new(&[KeyCode::Char('d')], "delete", Action::Row(Row::Delete)),
    Command::new(&[KeyCode::Enter], "details", Action::Row(Row::Details)),
];

#[derive(Debug)]
enum Prompt {
    Create,
    Description { name: String },
    Permissions { name: String },
}

#[derive(Default)]
pub struct Roles {
    roles: Vec<Role>,
    table: Table,
}

fn on_role(row: Row, role: Role) -> Outcome {
    match row {
        Row::Details => Outcome::popup(Popup::Detail(detail(&role))),
        Row::Description => Outcome::popup(Popup::Input(Input::new(
            format!("Description of {}", role.name),
            &role.description,
            Prompt::Description { name: role.name.clone() },
        ))),
        Row::Permissions => Outcome::popup(Popup::Input(Input::new(
            format!("Permissions of {} (space-separated resource:action)", role.name),
            &role.permissions.join(" "),
            Prompt::Permissions { name: role.name.clone() },
        ))),
        Row::Delete => Outcome::confirm(
            format!("Delete role {}? It is removed from every user and client.", role.name),
            Request::DeleteRole { name: role.name },
        ),
    }
}

fn detail(role: &Role) -> Detail {
    let permissions = if role.name == "admin" { vec!["(all)".to_string()] } else { role.permissions.clone() };
    Detail {
        id: format!("role:{}", role.name),
        title: format!("Role {}", role.name),
        rows: vec![
            ("Name", Value::Text(role.name.clone())),
            ("Description", Value::Text(role.description.clone())),
            ("Built-in", Value::Text(if role.builtin { "yes" } else { "no" }.into())),
            ("Users", Value::Text(role.user_count.to_string())),
            ("Permissions", Value::Lines(permissions)),
            ("Created", Value::Time(role.created_at.clone())),
        ],
    }
}

impl Screen for Roles {
    fn title(&self) -> &'static str {
        "Roles"
    }

    fn commands(&self) -> Vec<Hint> {
        hints(COMMANDS)
    }

    fn on_key(&mut self, key: &KeyEvent) -> Option<Outcome> {
        Some(match lookup(COMMANDS, key)? {
            Action::Create => {
                Outcome::popup(Popup::Input(Input::new("New role — name (a-z 0-9 _ . -)", "", Prompt::Create)))
            }
            Action::Row(row) => {
                self.roles.get(self.table.selected()).cloned().map_or_else(Outcome::default, |r| on_role(row, r))
            }
        })
    }

    fn submit(&mut self, prompt: Box<dyn Any>, value: String) -> Outcome {
        let Ok(prompt) = prompt.downcast::<Prompt>() else { return Outcome::default() };
        let trimmed = value.trim().to_string();
        match *prompt {
            Prompt::Create if trimmed.is_empty() => Outcome::info(NOTHING_ENTERED),
            Prompt::Create => Outcome::request(Request::CreateRole { name: trimmed }),
            Prompt::Description { name } => {
                Outcome::request(Request::SetRoleDescription { name, description: trimmed })
            }
            Prompt::Permissions { name } => Outcome::request(Request::SetRolePermissions {
                name,
                permissions: trimmed.split_whitespace().map(str::to_string).collect(),
            }),
        }
    }

    fn load(&self) -> Load {
        Load::Roles
    }

    fn apply(&mut self, loaded: Loaded) -> Result<Outcome, Loaded> {
        let Loaded::Roles(roles) = loaded else { return Err(loaded) };
        self.table.loaded(roles.len(), None);
        self.roles = roles;
        Ok(Outcome::default())
    }

    fn table(&self) -> &Table {
        &self.table
    }

    fn table_mut(&mut self) -> &mut Table {
        &mut self.table
    }

    fn view(&self, _now: DateTime<FixedOffset>) -> TableView {
        TableView {
            title: self.table.title("Roles", ""),
            header: vec!["Name", "Users", "Built-in", "Permissions"],
            widths: vec![Constraint::Length(18), Constraint::Length(6), Constraint::Length(9), Constraint::Min(20)],
            rows: self
                .roles
                .iter()
                .map(|r| {
                    let perms = if r.name == "admin" { "(all)".into() } else { r.permissions.join(" ") };
                    vec![r.name.clone(), r.user_count.to_string(), if r.builtin { "yes" } else { "" }.into(), perms]
                })
                .collect(),
        }
    }
}

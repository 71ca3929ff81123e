//! Roles: the list, creating one, its description and permissions, deleting it.

use std::any::Any;

use chrono::{DateTime, FixedOffset};
use ratatui::crossterm::event::KeyCode;

use super::Screen;
use crate::api::Role;
use crate::command::Command;
use crate::components::detail::{Detail, Value};
use crate::components::input::Input;
use crate::components::list::List;
use crate::components::table::{Column, TableView};
use crate::outcome::{NOTHING_ENTERED, Outcome};
use crate::popup::Popup;
use crate::request::{Load, Request};

#[derive(Debug, Clone, Copy)]
enum Action {
    Create,
    /// Acts on the selected role.
    Row(Row),
    Details,
}

#[derive(Debug, Clone, Copy)]
enum Row {
    Description,
    Permissions,
    Delete,
}

const COMMANDS: &[Command<Action>] = &[
    Command::new(&[KeyCode::Char('c')], "create", Action::Create),
    Command::new(&[KeyCode::Char('e')], "edit description", Action::Row(Row::Description)),
    Command::new(&[KeyCode::Char('p')], "edit permissions", Action::Row(Row::Permissions)),
    Command::new(&[KeyCode::Char('d')], "delete", Action::Row(Row::Delete)),
    Command::new(&[KeyCode::Enter], "details", Action::Details),
];

#[derive(Debug)]
enum Prompt {
    Create,
    Description { name: String },
    Permissions { name: String },
}

#[derive(Default)]
pub struct Roles {
    list: List<Role>,
}

fn on_role(row: Row, role: Role) -> Outcome {
    match row {
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

impl Roles {
    /// What one of [`COMMANDS`] does.
    fn run(&mut self, action: Action) -> Outcome {
        match action {
            Action::Create => {
                Outcome::popup(Popup::Input(Input::new("New role — name (a-z 0-9 _ . -)", "", Prompt::Create)))
            }
            Action::Row(row) => self.list.on_selected(|role| on_role(row, role.clone())),
            Action::Details => self.list.details(detail),
        }
    }
}

impl Screen for Roles {
    screen_basics!(title: "Roles", commands: COMMANDS => run, loaded: Roles => apply_all);

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

    fn view(&self, _now: DateTime<FixedOffset>) -> TableView {
        const COLUMNS: &[Column] = &[
            Column::fixed("Name", 18),
            Column::fixed("Users", 6),
            Column::fixed("Built-in", 9),
            Column::rest("Permissions", 20),
        ];
        self.list.view(self.title(), "", COLUMNS, |r| {
            let perms = if r.name == "admin" { "(all)".into() } else { r.permissions.join(" ") };
            vec![r.name.clone(), r.user_count.to_string(), if r.builtin { "yes" } else { "" }.into(), perms]
        })
    }
}

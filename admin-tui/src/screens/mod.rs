//! The console's screens, one file each (gitui's `tabs/`). A screen owns its list (the
//! rows and the selection, in a [`crate::components::list::List`]), its search and
//! filters, its command table and key handling, the prompts it opens, the request that
//! loads it and how it applies what comes back. The app adds the list keys
//! ([`crate::components::table`]) and the global ones around it.
//!
//! Adding a screen is one file plus one line in [`all`].

pub mod audit;
pub mod clients;
pub mod keys;
pub mod roles;
pub mod sessions;
pub mod users;

use std::any::Any;

use chrono::{DateTime, FixedOffset};
use ratatui::crossterm::event::KeyEvent;

use crate::command::Hint;
use crate::components::table::{Table, TableView};
use crate::outcome::Outcome;
use crate::request::{Load, Loaded, Request};

pub trait Screen: Any {
    /// The tab's name.
    fn title(&self) -> &'static str;

    /// This screen's own commands, as its key handler dispatches them.
    fn commands(&self) -> Vec<Hint>;

    /// `None` when the key is not one of [`Screen::commands`].
    fn on_key(&mut self, key: &KeyEvent) -> Option<Outcome>;

    /// The answer to a prompt this screen opened (the prompt is its own type). Screens
    /// that open no prompt keep this default.
    fn submit(&mut self, _prompt: Box<dyn Any>, _value: String) -> Outcome {
        Outcome::default()
    }

    /// What to fetch to show this screen as it stands (page, search, filter).
    fn load(&self) -> Load;

    /// Takes the data loaded for it; hands back anything that is not its own.
    fn apply(&mut self, loaded: Loaded) -> Result<Outcome, Loaded>;

    /// The table of the screen's list, which the list keys move through.
    fn table(&self) -> &Table;

    fn table_mut(&mut self) -> &mut Table;

    /// The rows as drawn; times relative to `now`.
    fn view(&self, now: DateTime<FixedOffset>) -> TableView;

    /// Opened from another screen with an argument (Users → the sessions of one user).
    /// Screens nobody opens that way keep this default.
    fn open_with(&mut self, _arg: String) {}

    /// Reload once in a while on its own (following the audit log).
    fn follows(&self) -> bool {
        false
    }

    /// After a new search or filter: back to the first page, and load it.
    fn reload_from_first_page(&mut self) -> Outcome {
        self.table_mut().first_page();
        Outcome::request(Request::Load(self.load()))
    }
}

/// Every screen, in tab order (the tab number is the position).
pub fn all() -> Vec<Box<dyn Screen>> {
    vec![
        Box::new(users::Users::default()),
        Box::new(roles::Roles::default()),
        Box::new(sessions::Sessions::default()),
        Box::new(clients::Clients::default()),
        Box::new(keys::Keys::default()),
        Box::new(audit::Audit::default()),
    ]
}

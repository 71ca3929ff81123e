//! The console's screens, one file each (gitui's `tabs/`). A screen owns its list (the
//! rows and the selection, in a [`crate::components::list::List`]), its search and
//! filters, its command table and key handling, the prompts it opens, the request that
//! loads it and how it applies what comes back. The app adds the list keys
//! ([`crate::components::table`]) and the global ones around it.
//!
//! Adding a screen is one file plus one line in [`all`].

/// The [`Screen`] methods every screen spells the same way, written from what is
/// particular to the screen: its title; its command table and the method that runs one
/// of its actions (the key handler dispatches on the very table the key bar draws, so the
/// two cannot disagree); and, where the screen's only data is its list, the [`Loaded`]
/// variant that carries its records and the [`List`](crate::components::list::List)
/// method that stores them (`apply_page` for a paged list, `apply_all` for a whole one).
/// The list is the screen's `list` field. A macro rather than default methods because the
/// action and record types differ per screen while the app holds screens as `dyn Screen`.
macro_rules! screen_basics {
    (title: $title:literal, commands: $commands:ident => $run:ident $(, loaded: $variant:ident => $store:ident)?) => {
        fn title(&self) -> &'static str {
            $title
        }

        fn commands(&self) -> Vec<$crate::command::Hint> {
            $crate::command::hints($commands)
        }

        fn on_key(
            &mut self,
            key: &::ratatui::crossterm::event::KeyEvent,
        ) -> Option<$crate::outcome::Outcome> {
            $crate::command::lookup($commands, key).map(|action| self.$run(action))
        }

        fn table(&self) -> &$crate::components::table::Table {
            self.list.table()
        }

        fn table_mut(&mut self) -> &mut $crate::components::table::Table {
            self.list.table_mut()
        }

        $(
            fn apply(
                &mut self,
                loaded: $crate::request::Loaded,
            ) -> Result<$crate::outcome::Outcome, $crate::request::Loaded> {
                let $crate::request::Loaded::$variant(records) = loaded else { return Err(loaded) };
                self.list.$store(records);
                Ok($crate::outcome::Outcome::default())
            }
        )?
    };
}

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

//! The console's state and its transitions: keys → requests, results → state. It routes
//! each key to the context that owns it (login form, open popup, or the current screen
//! with the list and global keys around it) and applies what that context returns.
//! Nothing here awaits, so the interface never freezes on the network.

use std::any::{Any, TypeId};

use chrono::{DateTime, FixedOffset};
use crossterm_keys::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::api::ApiError;
use crate::command::{Command, Hint, Keys, hints, lookup};
use crate::components::help::Group;
use crate::components::picker::Picker;
use crate::components::table::Moved;
use crate::components::totp::{self, TotpPrompt};
use crate::login::LoginForm;
use crate::outcome::Outcome;
use crate::popup::{Popup, Reply};
use crate::request::{Loaded, Request};
use crate::screens::{self, Screen};

/// Re-exported so tests can build key events without naming the backend crate.
pub mod crossterm_keys {
    pub use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
}

/// A password on its way to the server: compares and clones like a string, but never
/// shows up in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Masked(String);

impl std::fmt::Debug for Masked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

impl std::ops::Deref for Masked {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Masked {
    fn from(value: &str) -> Self {
        Self(value.to_string())
    }
}

impl From<String> for Masked {
    fn from(value: String) -> Self {
        Self(value)
    }
}

#[derive(Debug, Clone)]
pub enum Action {
    Key(KeyEvent),
    Loaded(Loaded),
    Failed(ApiError),
    /// Once a second: follow the audit log, retry after a lost connection, refresh tokens.
    Tick,
    /// The terminal was resized: only redraw.
    Redraw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    Info,
    Error,
}

/// Keys understood on every screen, outside popups.
#[derive(Debug, Clone, Copy)]
enum Global {
    Help,
    NextScreen,
    PrevScreen,
    GoTo,
    Reload,
    Totp,
    Quit,
}

/// One key per screen number; the table offers as many as there are screens.
static SCREEN_NUMBERS: [KeyCode; 9] = [
    KeyCode::Char('1'),
    KeyCode::Char('2'),
    KeyCode::Char('3'),
    KeyCode::Char('4'),
    KeyCode::Char('5'),
    KeyCode::Char('6'),
    KeyCode::Char('7'),
    KeyCode::Char('8'),
    KeyCode::Char('9'),
];

/// Checked before any other table, in every context.
const ALWAYS: &[Command<()>] = &[Command { keys: Keys::Ctrl('c'), label: "quit", action: () }];

pub struct App {
    pub server: String,
    pub logged_in: bool,
    pub login: LoginForm,
    screens: Vec<Box<dyn Screen>>,
    current: usize,
    pub popup: Option<Popup>,
    pub status: Option<(StatusKind, String)>,
    pub quit: bool,
    /// Set after a lost connection: the load to retry on the next ticks.
    pub retry: Option<Request>,
    /// The time relative dates are drawn against; the main loop sets it before each draw.
    pub now: DateTime<FixedOffset>,
    ticks: u64,
}

impl App {
    pub fn new(server: &str, now: DateTime<FixedOffset>) -> Self {
        Self {
            server: server.to_string(),
            logged_in: false,
            login: LoginForm::default(),
            screens: screens::all(),
            current: 0,
            popup: None,
            status: None,
            quit: false,
            retry: None,
            now,
            ticks: 0,
        }
    }

    /// The tab names, in order.
    pub fn titles(&self) -> Vec<&'static str> {
        self.screens.iter().map(|s| s.title()).collect()
    }

    /// The index of the screen shown.
    pub fn current_index(&self) -> usize {
        self.current
    }

    pub fn current(&self) -> &dyn Screen {
        self.screens[self.current].as_ref()
    }

    /// A screen by its type, to read its state.
    pub fn screen<S: Screen>(&self) -> Option<&S> {
        self.screens.iter().find_map(|s| (s.as_ref() as &dyn Any).downcast_ref::<S>())
    }

    fn index_of(&self, screen: TypeId) -> Option<usize> {
        self.screens.iter().position(|s| (s.as_ref() as &dyn Any).type_id() == screen)
    }

    /// Shows the screen at `index` and asks for its data.
    pub fn select(&mut self, index: usize) -> Vec<Request> {
        self.current = index.min(self.screens.len().saturating_sub(1));
        vec![self.reload()]
    }

    /// Shows the screen of type `S` and asks for its data.
    pub fn show<S: Screen>(&mut self) -> Vec<Request> {
        self.index_of(TypeId::of::<S>()).map(|i| self.select(i)).unwrap_or_default()
    }

    fn reload(&self) -> Request {
        Request::Load(self.current().load())
    }

    fn info(&mut self, text: impl Into<String>) {
        self.status = Some((StatusKind::Info, text.into()));
    }

    fn error(&mut self, text: impl Into<String>) {
        self.status = Some((StatusKind::Error, text.into()));
    }

    fn global_commands(&self) -> Vec<Command<Global>> {
        let numbers = &SCREEN_NUMBERS[..self.screens.len().min(SCREEN_NUMBERS.len())];
        vec![
            Command::new(&[KeyCode::Char('?')], "help", Global::Help),
            Command::new(&[KeyCode::Tab], "next screen", Global::NextScreen),
            Command::new(&[KeyCode::BackTab], "prev screen", Global::PrevScreen),
            Command { keys: Keys::Codes(numbers), label: "go to screen", action: Global::GoTo },
            Command::new(&[KeyCode::Char('r'), KeyCode::F(5)], "reload", Global::Reload),
            Command::new(&[KeyCode::Char('T')], "set up my TOTP", Global::Totp),
            Command::new(&[KeyCode::Char('q'), KeyCode::Esc], "quit", Global::Quit),
        ]
    }

    /// Every command of the context that gets the next key, in the bar's order (the most
    /// important first: a narrow terminal cuts the bar on the right).
    pub fn commands(&self) -> Vec<Hint> {
        if !self.logged_in {
            return LoginForm::commands();
        }
        if let Some(popup) = &self.popup {
            return popup.commands();
        }
        let globals = hints(&self.global_commands());
        // Help first, then the screen's own keys, then the rest.
        let (help, rest) = globals.split_at(1);
        [help, &self.current().commands(), rest, &self.current().table().commands()].concat()
    }

    /// The bar's hints as drawn: `(keys, label)`.
    pub fn key_hints(&self) -> Vec<(String, &'static str)> {
        self.commands().iter().map(Hint::text).collect()
    }

    /// What the `?` help lists: the screen's keys, the list's, and the global ones.
    pub fn help(&self) -> Vec<Group> {
        vec![
            (format!("{} screen", self.current().title()), self.current().commands()),
            ("Lists".into(), self.current().table().commands()),
            ("Everywhere".into(), [hints(&self.global_commands()), hints(ALWAYS)].concat()),
        ]
    }

    /// Applies one action; returns the requests it starts.
    pub fn apply(&mut self, action: Action) -> Vec<Request> {
        match action {
            Action::Key(key) => self.on_key(key),
            Action::Loaded(loaded) => self.on_loaded(loaded),
            Action::Failed(err) => self.on_error(err),
            Action::Tick => self.on_tick(),
            Action::Redraw => Vec::new(),
        }
    }

    /// Applies what a handler asked for; returns its requests.
    fn absorb(&mut self, outcome: Outcome) -> Vec<Request> {
        let Outcome { mut requests, popup, status, open, detail, quit } = outcome;
        if let Some(status) = status {
            self.status = Some(status);
        }
        if popup.is_some() {
            self.popup = popup;
        }
        if let Some(detail) = detail
            && matches!(&self.popup, Some(Popup::Detail(open)) if open.id == detail.id)
        {
            self.popup = Some(Popup::Detail(detail));
        }
        if let Some((screen, arg)) = open
            && let Some(index) = self.index_of(screen)
        {
            self.screens[index].open_with(arg);
            requests.extend(self.select(index));
        }
        self.quit |= quit;
        requests
    }

    fn on_tick(&mut self) -> Vec<Request> {
        self.ticks += 1;
        if !self.logged_in {
            return Vec::new();
        }
        let mut requests = Vec::new();
        if self.ticks.is_multiple_of(3)
            && let Some(request) = self.retry.clone()
        {
            requests.push(request);
        }
        if self.ticks.is_multiple_of(600) {
            requests.push(Request::Refresh);
        }
        if self.current().follows() && self.popup.is_none() && self.ticks.is_multiple_of(5) {
            requests.push(self.reload());
        }
        requests
    }

    fn on_error(&mut self, err: ApiError) -> Vec<Request> {
        match err {
            ApiError::SessionExpired => {
                self.logged_in = false;
                self.popup = None;
                self.login = LoginForm { username: std::mem::take(&mut self.login.username), ..LoginForm::default() };
                self.error("Session expired — please log in again.");
            }
            ApiError::MfaRequired => {
                self.login.busy = false;
                self.login.need_totp = true;
                self.login.field = 2;
                self.info("This account has TOTP: enter the current code.");
            }
            ApiError::Connection(e) => {
                self.login.busy = false;
                if self.logged_in {
                    self.retry = Some(self.reload());
                }
                self.error(format!("Connection lost ({e}); retrying…"));
            }
            other => {
                self.login.busy = false;
                self.error(other.to_string());
            }
        }
        Vec::new()
    }

    fn on_loaded(&mut self, loaded: Loaded) -> Vec<Request> {
        if matches!(self.status, Some((StatusKind::Error, ref m)) if m.starts_with("Connection lost")) {
            self.status = None;
        }
        self.retry = None;
        match loaded {
            Loaded::LoggedIn => {
                self.logged_in = true;
                self.login.password.clear();
                self.login.totp.clear();
                self.login.busy = false;
                self.info(format!("Logged in to {}", self.server));
                vec![self.reload()]
            }
            Loaded::KeepPicker { title, user_id, kind, options } => {
                let (labels, ids): (Vec<String>, Vec<String>) = options.into_iter().unzip();
                let picker = Picker { title, options: labels.into_iter().map(|l| (l, true)).collect(), cursor: 0 };
                self.popup = Some(Popup::KeepPicker { user_id, kind, ids, picker });
                Vec::new()
            }
            Loaded::RolePicker { user_id, username, options } => {
                let picker = Picker { title: format!("Roles of {username}"), options, cursor: 0 };
                self.popup = Some(Popup::RolePicker { user_id, picker });
                Vec::new()
            }
            Loaded::Done(message) => {
                self.info(message);
                vec![self.reload()]
            }
            Loaded::ShowOnce { title, lines } => {
                self.popup = Some(Popup::ShowOnce { title, lines });
                vec![self.reload()]
            }
            Loaded::TotpSetup(setup) => {
                self.popup = Some(Popup::Totp { setup });
                Vec::new()
            }
            mut data => {
                // Each screen takes its own data and hands the rest on.
                for index in 0..self.screens.len() {
                    match self.screens[index].apply(data) {
                        Ok(outcome) => return self.absorb(outcome),
                        Err(other) => data = other,
                    }
                }
                Vec::new()
            }
        }
    }

    fn on_key(&mut self, key: KeyEvent) -> Vec<Request> {
        if key.kind != KeyEventKind::Press {
            return Vec::new();
        }
        if lookup(ALWAYS, &key).is_some() {
            self.quit = true;
            return Vec::new();
        }
        if !self.logged_in {
            let outcome = self.login.on_key(&key);
            return self.absorb(outcome);
        }
        if let Some(popup) = self.popup.take() {
            return match popup.on_key(&key) {
                Reply::Stay(popup) => {
                    self.popup = Some(popup);
                    Vec::new()
                }
                Reply::Close(outcome) => self.absorb(outcome),
                Reply::Submit { prompt, value } => {
                    let prompt: Box<dyn Any> = prompt;
                    let outcome = match prompt.downcast::<TotpPrompt>() {
                        Ok(totp) => totp::submit(*totp, value),
                        Err(prompt) => self.screens[self.current].submit(prompt, value),
                    };
                    self.absorb(outcome)
                }
            };
        }
        self.main_key(&key)
    }

    fn main_key(&mut self, key: &KeyEvent) -> Vec<Request> {
        if let Some(global) = lookup(&self.global_commands(), key) {
            return self.global(global, key);
        }
        let screen = &mut self.screens[self.current];
        match screen.table_mut().on_key(key) {
            Some(Moved::Page) => return vec![self.reload()],
            Some(Moved::Row) => return Vec::new(),
            None => {}
        }
        match screen.on_key(key) {
            Some(outcome) => self.absorb(outcome),
            None => Vec::new(),
        }
    }

    fn global(&mut self, global: Global, key: &KeyEvent) -> Vec<Request> {
        let count = self.screens.len();
        match global {
            Global::Help => self.popup = Some(Popup::Help),
            Global::NextScreen => return self.select((self.current + 1) % count),
            Global::PrevScreen => return self.select((self.current + count - 1) % count),
            Global::GoTo => {
                if let KeyCode::Char(c) = key.code
                    && let Some(n) = c.to_digit(10)
                {
                    return self.select(n as usize - 1);
                }
            }
            Global::Reload => return vec![self.reload()],
            Global::Totp => return self.absorb(totp::start()),
            Global::Quit => self.quit = true,
        }
        Vec::new()
    }
}

/// A key press, for tests and the event reader.
pub fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

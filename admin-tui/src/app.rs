//! The console's state and its transitions. Key handling is synchronous and returns the
//! network [`Request`]s to run; the main loop spawns them and feeds their results back
//! as [`Action`]s. Nothing here awaits, so the interface never freezes on the network.

use crossterm_keys::{KeyCode, KeyEvent, KeyModifiers};

use crate::api::{ApiError, AuditEvent, Client, Page, Role, Session, SigningKey, TotpSetup, User};

/// Re-exported so tests can build key events without naming the backend crate.
pub mod crossterm_keys {
    pub use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
}

pub const PAGE_SIZE: u64 = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Users,
    Roles,
    Sessions,
    Clients,
    Keys,
    Audit,
}

impl Screen {
    pub const ALL: [Screen; 6] =
        [Screen::Users, Screen::Roles, Screen::Sessions, Screen::Clients, Screen::Keys, Screen::Audit];

    pub fn title(self) -> &'static str {
        match self {
            Screen::Users => "Users",
            Screen::Roles => "Roles",
            Screen::Sessions => "Sessions",
            Screen::Clients => "Clients",
            Screen::Keys => "Keys",
            Screen::Audit => "Audit",
        }
    }

    /// This screen's own keys; the help popup and the bottom bar are built from them.
    pub fn keys(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Screen::Users => &[
                ("/", "search"),
                ("c", "create"),
                ("e", "edit email"),
                ("o", "set roles"),
                ("s", "disable/enable"),
                ("u", "unlock"),
                ("p", "reset password"),
                ("t", "reset TOTP"),
                ("d", "delete"),
                ("v", "view sessions"),
                ("X", "revoke all sessions"),
            ],
            Screen::Roles => &[("c", "create"), ("e", "edit description"), ("p", "edit permissions"), ("d", "delete")],
            Screen::Sessions => &[("f", "filter by user id"), ("d", "revoke"), ("X", "revoke all of user")],
            Screen::Clients => &[("c", "create"), ("s", "rotate secret"), ("d", "delete")],
            Screen::Keys => &[("R", "rotate")],
            Screen::Audit => &[("f", "filter by action"), ("F", "follow on/off")],
        }
    }
}

/// Keys every screen understands.
pub const GLOBAL_KEYS: &[(&str, &str)] = &[
    ("Tab/1-6", "switch screen"),
    ("j/k ↑/↓", "move"),
    ("n/N", "next/prev page"),
    ("r", "reload"),
    ("T", "set up my TOTP"),
    ("?", "help"),
    ("q/Esc", "back/quit"),
];

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

/// A network call for the main loop to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Login { username: String, password: Masked, totp: Option<String> },
    Refresh,
    Load(Screen),
    CreateUser { username: String, email: Option<String>, password: Option<Masked> },
    SetEmail { user_id: String, email: Option<String> },
    SetStatus { user_id: String, status: String },
    SetRoles { user_id: String, roles: Vec<String> },
    LoadRolesForPicker { user_id: String, username: String, current: Vec<String> },
    SetPassword { user_id: String, password: Masked },
    Unlock { user_id: String },
    ResetTotp { user_id: String },
    DeleteUser { user_id: String },
    CreateRole { name: String },
    SetRoleDescription { name: String, description: String },
    SetRolePermissions { name: String, permissions: Vec<String> },
    DeleteRole { name: String },
    RevokeSession { id: String },
    RevokeUserSessions { user_id: String },
    CreateClient { client_id: String, grants: Vec<String> },
    RotateClientSecret { client_id: String },
    DeleteClient { client_id: String },
    RotateKeys,
    TotpSetup { password: Masked },
    TotpConfirm { code: String },
}

/// Results of network calls.
#[derive(Debug, Clone)]
pub enum Loaded {
    LoggedIn,
    Users(Page<User>),
    Roles(Vec<Role>),
    Sessions(Page<Session>),
    Clients(Page<Client>),
    Keys(Vec<SigningKey>),
    Audit(Page<AuditEvent>),
    RolePicker {
        user_id: String,
        username: String,
        options: Vec<(String, bool)>,
    },
    /// A change succeeded: say so and reload the screen.
    Done(String),
    /// Something to show once (generated password, client secret, recovery codes).
    ShowOnce {
        title: String,
        lines: Vec<String>,
    },
    TotpSetup(TotpSetup),
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    SearchUsers,
    CreateUser,
    CreateUserEmail { username: String },
    CreateUserPassword { username: String, email: Option<String> },
    SetEmail { user_id: String },
    SetPassword { user_id: String },
    CreateRole,
    RoleDescription { name: String },
    RolePermissions { name: String },
    FilterSessions,
    FilterAudit,
    CreateClient,
    TotpPassword,
    TotpCode,
}

#[derive(Debug, Clone)]
pub enum Popup {
    Confirm { message: String, request: Request },
    Input { prompt: Prompt, title: String, value: String, secret: bool },
    ShowOnce { title: String, lines: Vec<String> },
    RolePicker { user_id: String, username: String, options: Vec<(String, bool)>, cursor: usize },
    Totp { setup: TotpSetup },
    Help,
}

/// No `Debug`: it holds the password being typed.
#[derive(Clone, Default)]
pub struct LoginForm {
    pub username: String,
    pub password: String,
    pub totp: String,
    pub need_totp: bool,
    /// 0 username, 1 password, 2 TOTP.
    pub field: usize,
    pub busy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    Info,
    Error,
}

#[derive(Debug, Default)]
pub struct Lists {
    pub users: Option<Page<User>>,
    pub roles: Vec<Role>,
    pub sessions: Option<Page<Session>>,
    pub clients: Option<Page<Client>>,
    pub keys: Vec<SigningKey>,
    pub audit: Option<Page<AuditEvent>>,
}

pub struct App {
    pub server: String,
    pub logged_in: bool,
    pub login: LoginForm,
    pub screen: Screen,
    pub lists: Lists,
    pub selected: [usize; 6],
    pub page: [u64; 6],
    pub user_query: String,
    pub session_user_filter: Option<String>,
    pub audit_action_filter: String,
    pub follow_audit: bool,
    pub popup: Option<Popup>,
    pub status: Option<(StatusKind, String)>,
    pub quit: bool,
    /// Set after a lost connection: the load to retry on the next ticks.
    pub retry: Option<Request>,
    ticks: u64,
}

fn screen_index(screen: Screen) -> usize {
    Screen::ALL.iter().position(|s| *s == screen).unwrap_or(0)
}

impl App {
    pub fn new(server: &str) -> Self {
        Self {
            server: server.to_string(),
            logged_in: false,
            login: LoginForm::default(),
            screen: Screen::Users,
            lists: Lists::default(),
            selected: [0; 6],
            page: [1; 6],
            user_query: String::new(),
            session_user_filter: None,
            audit_action_filter: String::new(),
            follow_audit: true,
            popup: None,
            status: None,
            quit: false,
            retry: None,
            ticks: 0,
        }
    }

    pub fn page_of(&self, screen: Screen) -> u64 {
        self.page[screen_index(screen)]
    }

    pub fn selected_of(&self, screen: Screen) -> usize {
        self.selected[screen_index(screen)]
    }

    fn info(&mut self, text: impl Into<String>) {
        self.status = Some((StatusKind::Info, text.into()));
    }

    fn error(&mut self, text: impl Into<String>) {
        self.status = Some((StatusKind::Error, text.into()));
    }

    /// Rows on the current screen.
    pub fn row_count(&self) -> usize {
        match self.screen {
            Screen::Users => self.lists.users.as_ref().map_or(0, |p| p.items.len()),
            Screen::Roles => self.lists.roles.len(),
            Screen::Sessions => self.lists.sessions.as_ref().map_or(0, |p| p.items.len()),
            Screen::Clients => self.lists.clients.as_ref().map_or(0, |p| p.items.len()),
            Screen::Keys => self.lists.keys.len(),
            Screen::Audit => self.lists.audit.as_ref().map_or(0, |p| p.items.len()),
        }
    }

    fn total_pages(&self) -> u64 {
        let total = match self.screen {
            Screen::Users => self.lists.users.as_ref().map(|p| p.total),
            Screen::Sessions => self.lists.sessions.as_ref().map(|p| p.total),
            Screen::Clients => self.lists.clients.as_ref().map(|p| p.total),
            Screen::Audit => self.lists.audit.as_ref().map(|p| p.total),
            Screen::Roles | Screen::Keys => None,
        };
        total.map_or(1, |t| t.div_ceil(PAGE_SIZE).max(1))
    }

    fn selected_user(&self) -> Option<&User> {
        self.lists.users.as_ref()?.items.get(self.selected_of(Screen::Users))
    }

    fn selected_role(&self) -> Option<&Role> {
        self.lists.roles.get(self.selected_of(Screen::Roles))
    }

    fn selected_session(&self) -> Option<&Session> {
        self.lists.sessions.as_ref()?.items.get(self.selected_of(Screen::Sessions))
    }

    fn selected_client(&self) -> Option<&Client> {
        self.lists.clients.as_ref()?.items.get(self.selected_of(Screen::Clients))
    }

    fn input(&mut self, prompt: Prompt, title: &str, value: &str, secret: bool) {
        self.popup = Some(Popup::Input { prompt, title: title.into(), value: value.into(), secret });
    }

    fn confirm(&mut self, message: String, request: Request) {
        self.popup = Some(Popup::Confirm { message, request });
    }

    pub fn switch_to(&mut self, screen: Screen) -> Vec<Request> {
        self.screen = screen;
        vec![Request::Load(screen)]
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
        if self.screen == Screen::Audit && self.follow_audit && self.popup.is_none() && self.ticks.is_multiple_of(5) {
            requests.push(Request::Load(Screen::Audit));
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
                    self.retry = Some(Request::Load(self.screen));
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
                return vec![Request::Load(self.screen)];
            }
            Loaded::Users(page) => self.lists.users = Some(page),
            Loaded::Roles(roles) => self.lists.roles = roles,
            Loaded::Sessions(page) => self.lists.sessions = Some(page),
            Loaded::Clients(page) => self.lists.clients = Some(page),
            Loaded::Keys(keys) => self.lists.keys = keys,
            Loaded::Audit(page) => self.lists.audit = Some(page),
            Loaded::RolePicker { user_id, username, options } => {
                self.popup = Some(Popup::RolePicker { user_id, username, options, cursor: 0 });
            }
            Loaded::Done(message) => {
                self.info(message);
                return vec![Request::Load(self.screen)];
            }
            Loaded::ShowOnce { title, lines } => {
                self.popup = Some(Popup::ShowOnce { title, lines });
                return vec![Request::Load(self.screen)];
            }
            Loaded::TotpSetup(setup) => self.popup = Some(Popup::Totp { setup }),
        }
        let rows = self.row_count();
        let index = screen_index(self.screen);
        if self.selected[index] >= rows {
            self.selected[index] = rows.saturating_sub(1);
        }
        Vec::new()
    }

    fn on_key(&mut self, key: KeyEvent) -> Vec<Request> {
        if key.kind != crossterm_keys::KeyEventKind::Press {
            return Vec::new();
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return Vec::new();
        }
        if !self.logged_in {
            return self.login_key(key);
        }
        if self.popup.is_some() {
            return self.popup_key(key);
        }
        self.main_key(key)
    }

    fn login_key(&mut self, key: KeyEvent) -> Vec<Request> {
        let form = &mut self.login;
        let fields = if form.need_totp { 3 } else { 2 };
        match key.code {
            KeyCode::Esc => self.quit = true,
            KeyCode::Tab | KeyCode::Down => form.field = (form.field + 1) % fields,
            KeyCode::BackTab | KeyCode::Up => form.field = (form.field + fields - 1) % fields,
            KeyCode::Backspace => {
                field_mut(form).pop();
            }
            KeyCode::Enter => {
                if form.field + 1 < fields && field_mut(form).is_empty() {
                    form.field += 1;
                    return Vec::new();
                }
                if form.username.is_empty() || form.password.is_empty() || form.busy {
                    return Vec::new();
                }
                form.busy = true;
                let totp = form.need_totp.then(|| form.totp.clone());
                let request =
                    Request::Login { username: form.username.clone(), password: form.password.clone().into(), totp };
                self.info("Logging in…");
                return vec![request];
            }
            KeyCode::Char(c) => field_mut(form).push(c),
            _ => {}
        }
        Vec::new()
    }

    fn popup_key(&mut self, key: KeyEvent) -> Vec<Request> {
        let Some(popup) = self.popup.take() else { return Vec::new() };
        match popup {
            Popup::Confirm { message, request } => match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => return vec![request],
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc | KeyCode::Char('q') => self.info("Cancelled."),
                _ => self.popup = Some(Popup::Confirm { message, request }),
            },
            Popup::Input { prompt, title, mut value, secret } => match key.code {
                KeyCode::Esc => self.info("Cancelled."),
                KeyCode::Enter => return self.submit(prompt, value),
                KeyCode::Backspace => {
                    value.pop();
                    self.popup = Some(Popup::Input { prompt, title, value, secret });
                }
                KeyCode::Char(c) => {
                    value.push(c);
                    self.popup = Some(Popup::Input { prompt, title, value, secret });
                }
                _ => self.popup = Some(Popup::Input { prompt, title, value, secret }),
            },
            Popup::RolePicker { user_id, username, mut options, mut cursor } => match key.code {
                KeyCode::Esc | KeyCode::Char('q') => self.info("Cancelled."),
                KeyCode::Enter => {
                    let roles = options.iter().filter(|(_, on)| *on).map(|(r, _)| r.clone()).collect();
                    return vec![Request::SetRoles { user_id, roles }];
                }
                KeyCode::Char(' ') => {
                    if let Some(option) = options.get_mut(cursor) {
                        option.1 = !option.1;
                    }
                    self.popup = Some(Popup::RolePicker { user_id, username, options, cursor });
                }
                KeyCode::Down | KeyCode::Char('j') => {
                    cursor = (cursor + 1).min(options.len().saturating_sub(1));
                    self.popup = Some(Popup::RolePicker { user_id, username, options, cursor });
                }
                KeyCode::Up | KeyCode::Char('k') => {
                    cursor = cursor.saturating_sub(1);
                    self.popup = Some(Popup::RolePicker { user_id, username, options, cursor });
                }
                _ => self.popup = Some(Popup::RolePicker { user_id, username, options, cursor }),
            },
            Popup::Totp { setup } => match key.code {
                KeyCode::Esc | KeyCode::Char('q') => self.info("TOTP setup cancelled (not enabled)."),
                KeyCode::Enter | KeyCode::Char('c') => {
                    self.input(Prompt::TotpCode, "Current code from your authenticator app", "", false);
                }
                _ => self.popup = Some(Popup::Totp { setup }),
            },
            Popup::ShowOnce { .. } | Popup::Help => {}
        }
        Vec::new()
    }

    fn submit(&mut self, prompt: Prompt, value: String) -> Vec<Request> {
        let trimmed = value.trim().to_string();
        let words = || trimmed.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        match prompt {
            Prompt::SearchUsers => {
                self.user_query = trimmed.clone();
                self.page[screen_index(Screen::Users)] = 1;
                vec![Request::Load(Screen::Users)]
            }
            Prompt::CreateUser if !trimmed.is_empty() => {
                self.input(Prompt::CreateUserEmail { username: trimmed }, "Email (optional)", "", false);
                Vec::new()
            }
            Prompt::CreateUserEmail { username } => {
                let email = (!trimmed.is_empty()).then_some(trimmed);
                self.input(
                    Prompt::CreateUserPassword { username, email },
                    "Password (empty: generate a one-time password)",
                    "",
                    true,
                );
                Vec::new()
            }
            Prompt::CreateUserPassword { username, email } => {
                vec![Request::CreateUser { username, email, password: (!value.is_empty()).then(|| value.into()) }]
            }
            Prompt::SetEmail { user_id } => {
                vec![Request::SetEmail { user_id, email: (!trimmed.is_empty()).then_some(trimmed) }]
            }
            Prompt::SetPassword { user_id } if !value.is_empty() => {
                vec![Request::SetPassword { user_id, password: value.into() }]
            }
            Prompt::CreateRole if !trimmed.is_empty() => vec![Request::CreateRole { name: trimmed }],
            Prompt::RoleDescription { name } => vec![Request::SetRoleDescription { name, description: trimmed }],
            Prompt::RolePermissions { name } => vec![Request::SetRolePermissions { name, permissions: words() }],
            Prompt::FilterSessions => {
                self.session_user_filter = (!trimmed.is_empty()).then_some(trimmed);
                self.page[screen_index(Screen::Sessions)] = 1;
                vec![Request::Load(Screen::Sessions)]
            }
            Prompt::FilterAudit => {
                self.audit_action_filter = trimmed;
                self.page[screen_index(Screen::Audit)] = 1;
                vec![Request::Load(Screen::Audit)]
            }
            Prompt::CreateClient => {
                let mut parts = words();
                if parts.len() < 2 {
                    self.error("Type a client id and at least one grant type.");
                    return Vec::new();
                }
                let client_id = parts.remove(0);
                vec![Request::CreateClient { client_id, grants: parts }]
            }
            Prompt::TotpPassword if !value.is_empty() => vec![Request::TotpSetup { password: value.into() }],
            Prompt::TotpCode if !trimmed.is_empty() => vec![Request::TotpConfirm { code: trimmed }],
            _ => {
                self.info("Nothing entered; cancelled.");
                Vec::new()
            }
        }
    }

    fn main_key(&mut self, key: KeyEvent) -> Vec<Request> {
        let index = screen_index(self.screen);
        let rows = self.row_count();
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => {
                self.quit = true;
                return Vec::new();
            }
            KeyCode::Char('?') => self.popup = Some(Popup::Help),
            KeyCode::Tab => return self.switch_to(Screen::ALL[(index + 1) % Screen::ALL.len()]),
            KeyCode::BackTab => {
                return self.switch_to(Screen::ALL[(index + Screen::ALL.len() - 1) % Screen::ALL.len()]);
            }
            KeyCode::Char(c @ '1'..='6') => return self.switch_to(Screen::ALL[(c as usize) - ('1' as usize)]),
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected[index] = (self.selected[index] + 1).min(rows.saturating_sub(1))
            }
            KeyCode::Up | KeyCode::Char('k') => self.selected[index] = self.selected[index].saturating_sub(1),
            KeyCode::Home | KeyCode::Char('g') => self.selected[index] = 0,
            KeyCode::End | KeyCode::Char('G') => self.selected[index] = rows.saturating_sub(1),
            KeyCode::Char('n') | KeyCode::PageDown => {
                if self.page[index] < self.total_pages() {
                    self.page[index] += 1;
                    self.selected[index] = 0;
                    return vec![Request::Load(self.screen)];
                }
            }
            KeyCode::Char('N') | KeyCode::PageUp => {
                if self.page[index] > 1 {
                    self.page[index] -= 1;
                    self.selected[index] = 0;
                    return vec![Request::Load(self.screen)];
                }
            }
            KeyCode::Char('r') | KeyCode::F(5) => return vec![Request::Load(self.screen)],
            KeyCode::Char('T') => self.input(Prompt::TotpPassword, "Set up TOTP for your account — password", "", true),
            _ => return self.screen_key(key),
        }
        Vec::new()
    }

    fn screen_key(&mut self, key: KeyEvent) -> Vec<Request> {
        let KeyCode::Char(c) = key.code else { return Vec::new() };
        match self.screen {
            Screen::Users => self.users_key(c),
            Screen::Roles => self.roles_key(c),
            Screen::Sessions => self.sessions_key(c),
            Screen::Clients => self.clients_key(c),
            Screen::Keys => {
                if c == 'R' {
                    self.confirm(
                        "Rotate signing keys? A new key is published now and signs after the JWKS cache lifetime."
                            .into(),
                        Request::RotateKeys,
                    );
                }
                Vec::new()
            }
            Screen::Audit => {
                match c {
                    'f' => self.input(
                        Prompt::FilterAudit,
                        "Filter by action (empty: all)",
                        &self.audit_action_filter.clone(),
                        false,
                    ),
                    'F' => {
                        self.follow_audit = !self.follow_audit;
                        self.info(if self.follow_audit { "Following new events." } else { "Not following." });
                    }
                    _ => {}
                }
                Vec::new()
            }
        }
    }

    fn users_key(&mut self, c: char) -> Vec<Request> {
        if c == '/' {
            let query = self.user_query.clone();
            self.input(Prompt::SearchUsers, "Search users (username or email)", &query, false);
            return Vec::new();
        }
        if c == 'c' {
            self.input(Prompt::CreateUser, "New user — username", "", false);
            return Vec::new();
        }
        let Some(user) = self.selected_user().cloned() else { return Vec::new() };
        let (id, name) = (user.id.clone(), user.username.clone());
        match c {
            'e' => self.input(
                Prompt::SetEmail { user_id: id },
                &format!("Email of {name} (empty: remove)"),
                user.email.as_deref().unwrap_or(""),
                false,
            ),
            'o' => {
                return vec![Request::LoadRolesForPicker { user_id: id, username: name, current: user.roles.clone() }];
            }
            's' => {
                let (verb, status) =
                    if user.status == "active" { ("Disable", "disabled") } else { ("Enable", "active") };
                let extra = if status == "disabled" { " Their sessions end at once." } else { "" };
                self.confirm(
                    format!("{verb} user {name}?{extra}"),
                    Request::SetStatus { user_id: id, status: status.into() },
                );
            }
            'u' => return vec![Request::Unlock { user_id: id }],
            'p' => self.input(
                Prompt::SetPassword { user_id: id },
                &format!("New password for {name} (their sessions end)"),
                "",
                true,
            ),
            't' => self.confirm(
                format!("Reset TOTP of {name}? They log in with the password alone until they enrol again."),
                Request::ResetTotp { user_id: id },
            ),
            'd' => self.confirm(
                format!("Delete user {name} and all their sessions? This cannot be undone."),
                Request::DeleteUser { user_id: id },
            ),
            'v' => {
                self.session_user_filter = Some(id);
                self.page[screen_index(Screen::Sessions)] = 1;
                return self.switch_to(Screen::Sessions);
            }
            'X' => {
                self.confirm(format!("Revoke every session of {name}?"), Request::RevokeUserSessions { user_id: id })
            }
            _ => {}
        }
        Vec::new()
    }

    fn roles_key(&mut self, c: char) -> Vec<Request> {
        if c == 'c' {
            self.input(Prompt::CreateRole, "New role — name (a-z 0-9 _ . -)", "", false);
            return Vec::new();
        }
        let Some(role) = self.selected_role().cloned() else { return Vec::new() };
        match c {
            'e' => self.input(
                Prompt::RoleDescription { name: role.name.clone() },
                &format!("Description of {}", role.name),
                &role.description,
                false,
            ),
            'p' => self.input(
                Prompt::RolePermissions { name: role.name.clone() },
                &format!("Permissions of {} (space-separated resource:action)", role.name),
                &role.permissions.join(" "),
                false,
            ),
            'd' => self.confirm(
                format!("Delete role {}? It is removed from every user and client.", role.name),
                Request::DeleteRole { name: role.name },
            ),
            _ => {}
        }
        Vec::new()
    }

    fn sessions_key(&mut self, c: char) -> Vec<Request> {
        if c == 'f' {
            let current = self.session_user_filter.clone().unwrap_or_default();
            self.input(Prompt::FilterSessions, "Filter by user id (empty: all)", &current, false);
            return Vec::new();
        }
        let Some(session) = self.selected_session().cloned() else { return Vec::new() };
        match c {
            'd' => self.confirm(
                format!(
                    "Revoke session of {} from {}?",
                    session.username,
                    session.ip.as_deref().unwrap_or("unknown IP")
                ),
                Request::RevokeSession { id: session.id },
            ),
            'X' => self.confirm(
                format!("Revoke every session of {}?", session.username),
                Request::RevokeUserSessions { user_id: session.user_id },
            ),
            _ => {}
        }
        Vec::new()
    }

    fn clients_key(&mut self, c: char) -> Vec<Request> {
        if c == 'c' {
            self.input(
                Prompt::CreateClient,
                "New client: <client_id> <grant>… (client_credentials ⇒ confidential)",
                "",
                false,
            );
            return Vec::new();
        }
        let Some(client) = self.selected_client().cloned() else { return Vec::new() };
        match c {
            's' => self.confirm(
                format!("Rotate the secret of {}? The old one stops working at once.", client.client_id),
                Request::RotateClientSecret { client_id: client.client_id },
            ),
            'd' => self.confirm(
                format!("Delete client {} and its sessions?", client.client_id),
                Request::DeleteClient { client_id: client.client_id },
            ),
            _ => {}
        }
        Vec::new()
    }

    /// The keys shown in the bottom bar: the screen's, then the global ones.
    pub fn key_hints(&self) -> Vec<(&'static str, &'static str)> {
        if !self.logged_in {
            return vec![("Tab", "next field"), ("Enter", "log in"), ("Esc", "quit")];
        }
        match &self.popup {
            Some(Popup::Confirm { .. }) => vec![("y", "confirm"), ("n/Esc", "cancel")],
            Some(Popup::Input { .. }) => vec![("Enter", "submit"), ("Esc", "cancel")],
            Some(Popup::RolePicker { .. }) => vec![("Space", "toggle"), ("Enter", "save"), ("Esc", "cancel")],
            Some(Popup::Totp { .. }) => vec![("Enter", "enter code"), ("Esc", "cancel")],
            Some(Popup::ShowOnce { .. } | Popup::Help) => vec![("any key", "close")],
            // Help first: a narrow terminal cuts the bar on the right.
            None => std::iter::once(("?", "help"))
                .chain(self.screen.keys().iter().copied())
                .chain(GLOBAL_KEYS.iter().copied().filter(|(k, _)| *k != "?"))
                .collect(),
        }
    }
}

fn field_mut(form: &mut LoginForm) -> &mut String {
    match form.field {
        0 => &mut form.username,
        1 => &mut form.password,
        _ => &mut form.totp,
    }
}

/// A key press, for tests and the event reader.
pub fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

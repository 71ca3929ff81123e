//! The login form shown until the console holds a session: username, password and,
//! when the server asks for it, a TOTP code.

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Position, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use crate::command::{Command, Hint, Keys, hints, lookup};
use crate::components::input::FOCUS;
use crate::outcome::Outcome;
use crate::request::Request;
use crate::ui::{Theme, centered};

#[derive(Debug, Clone, Copy)]
enum Field {
    Next,
    Previous,
    Submit,
    Quit,
    Erase,
    Type,
}

const COMMANDS: &[Command<Field>] = &[
    Command::new(&[KeyCode::Enter], "log in", Field::Submit),
    Command::new(&[KeyCode::Tab, KeyCode::Down], "next", Field::Next),
    Command::new(&[KeyCode::BackTab, KeyCode::Up], "previous", Field::Previous),
    Command::new(&[KeyCode::Esc], "quit", Field::Quit),
    Command::new(&[KeyCode::Backspace], "erase", Field::Erase),
    Command { keys: Keys::Text, label: "type", action: Field::Type },
];

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

impl LoginForm {
    pub fn commands() -> Vec<Hint> {
        hints(COMMANDS)
    }

    fn fields(&self) -> usize {
        if self.need_totp { 3 } else { 2 }
    }

    fn value_mut(&mut self) -> &mut String {
        match self.field {
            0 => &mut self.username,
            1 => &mut self.password,
            _ => &mut self.totp,
        }
    }

    pub fn on_key(&mut self, key: &KeyEvent) -> Outcome {
        let fields = self.fields();
        match lookup(COMMANDS, key) {
            Some(Field::Quit) => return Outcome { quit: true, ..Outcome::default() },
            Some(Field::Next) => self.field = (self.field + 1) % fields,
            Some(Field::Previous) => self.field = (self.field + fields - 1) % fields,
            Some(Field::Erase) => {
                self.value_mut().pop();
            }
            Some(Field::Type) => {
                if let KeyCode::Char(c) = key.code {
                    self.value_mut().push(c);
                }
            }
            Some(Field::Submit) => return self.submit(),
            None => {}
        }
        Outcome::default()
    }

    fn submit(&mut self) -> Outcome {
        // Enter on an empty field that is not the last one moves on, as Tab does.
        if self.field + 1 < self.fields() && self.value_mut().is_empty() {
            self.field += 1;
            return Outcome::default();
        }
        // Say why nothing is sent, and put the cursor where the missing value goes.
        if self.busy {
            return Outcome::info("Still logging in…");
        }
        if self.username.is_empty() {
            self.field = 0;
            return Outcome::error("Type a username first; nothing was sent.");
        }
        if self.password.is_empty() {
            self.field = 1;
            return Outcome::error("Type the password first; nothing was sent.");
        }
        self.busy = true;
        let totp = self.need_totp.then(|| self.totp.clone());
        let request = Request::Login { username: self.username.clone(), password: self.password.clone().into(), totp };
        Outcome { requests: vec![request], ..Outcome::info("Logging in…") }
    }

    pub fn draw(&self, frame: &mut Frame, area: Rect, theme: Theme) {
        let width = area.width.clamp(20, 60);
        let height = if self.need_totp { 9 } else { 7 };
        let rect = centered(area, width, height);
        let field = |label: &str, value: String, index: usize| {
            let focused = self.field == index;
            let style = if focused { theme.highlight() } else { Style::default() };
            // `›` marks the focused field without colour (NO_COLOR, screen readers).
            let mark = if focused { FOCUS } else { ' ' };
            Line::from(vec![Span::raw(format!("{mark}{label:>9}: ")), Span::styled(format!("{value:<32}"), style)])
        };
        let mut lines = vec![
            Line::from(""),
            field("Username", self.username.clone(), 0),
            field("Password", "•".repeat(self.password.chars().count()), 1),
        ];
        if self.need_totp {
            lines.push(field("TOTP code", self.totp.clone(), 2));
        }
        lines.push(Line::from(""));
        lines.push(Line::from(if self.busy { "  Logging in…" } else { "  Enter to log in" }));
        frame
            .render_widget(Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" Log in ")), rect);
        // The terminal's cursor sits after the focused value: visible without colour.
        let typed = match self.field {
            0 => self.username.chars().count(),
            1 => self.password.chars().count(),
            _ => self.totp.chars().count(),
        };
        // Border, mark, label, ": ", then the text typed so far.
        let x = rect.x + 1 + 1 + 9 + 2 + typed as u16;
        let y = rect.y + 2 + self.field as u16;
        if x < rect.right().saturating_sub(1) && y < rect.bottom().saturating_sub(1) {
            frame.set_cursor_position(Position { x, y });
        }
    }
}

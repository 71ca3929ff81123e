//! A one-line text prompt in a popup. Whoever opens it passes a prompt value of its own
//! type ([`Prompt`]); on Enter the popup layer hands that value back with the text, so a
//! screen's prompts stay private to the screen's file.

use std::any::Any;

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Position;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use crate::command::{Command, Hint, Keys, hints, lookup};
use crate::outcome::Outcome;
use crate::popup::{Popup, Reply};
use crate::ui::centered;

/// What a prompt is for, as the screen that opened it defines it.
pub trait Prompt: Any + std::fmt::Debug {}

impl<T: Any + std::fmt::Debug> Prompt for T {}

#[derive(Debug, Clone, Copy)]
enum Edit {
    Submit,
    Cancel,
    Erase,
    Type,
}

const COMMANDS: &[Command<Edit>] = &[
    Command::new(&[KeyCode::Enter], "submit", Edit::Submit),
    Command::new(&[KeyCode::Esc], "cancel", Edit::Cancel),
    Command::new(&[KeyCode::Backspace], "erase", Edit::Erase),
    Command { keys: Keys::Text, label: "type", action: Edit::Type },
];

pub struct Input {
    pub title: String,
    pub value: String,
    /// Drawn as dots (passwords).
    pub secret: bool,
    pub prompt: Box<dyn Prompt>,
}

/// Not derived: a secret being typed must not reach a log or a panic message.
impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = if self.secret { "<secret>" } else { self.value.as_str() };
        f.debug_struct("Input")
            .field("title", &self.title)
            .field("value", &value)
            .field("prompt", &self.prompt)
            .finish()
    }
}

impl Input {
    pub fn new(title: impl Into<String>, value: &str, prompt: impl Prompt) -> Self {
        Self { title: title.into(), value: value.into(), secret: false, prompt: Box::new(prompt) }
    }

    pub fn secret(title: impl Into<String>, prompt: impl Prompt) -> Self {
        Self { secret: true, ..Self::new(title, "", prompt) }
    }

    pub fn commands() -> Vec<Hint> {
        hints(COMMANDS)
    }

    pub fn on_key(mut self, key: &KeyEvent) -> Reply {
        match lookup(COMMANDS, key) {
            Some(Edit::Submit) => return Reply::Submit { prompt: self.prompt, value: self.value },
            Some(Edit::Cancel) => return Reply::Close(Outcome::info("Cancelled.")),
            Some(Edit::Erase) => {
                self.value.pop();
            }
            Some(Edit::Type) => {
                if let KeyCode::Char(c) = key.code {
                    self.value.push(c);
                }
            }
            None => {}
        }
        Reply::Stay(Popup::Input(self))
    }

    pub fn draw(&self, frame: &mut Frame) {
        let rect = centered(frame.area(), 70, 3);
        let shown = if self.secret { "•".repeat(self.value.chars().count()) } else { self.value.clone() };
        let line = format!("{} {shown}", FOCUS);
        let cursor_x = rect.x + 1 + line.chars().count() as u16;
        frame.render_widget(Clear, rect);
        let block = Block::default().borders(Borders::ALL).title(format!(" {} ", self.title));
        frame.render_widget(Paragraph::new(Line::from(line)).block(block), rect);
        // The terminal's own cursor: visible without colour, and where screen readers look.
        frame.set_cursor_position(Position { x: cursor_x.min(rect.right().saturating_sub(2)), y: rect.y + 1 });
    }
}

/// Marks the field that takes the typing, so focus survives `NO_COLOR`.
pub const FOCUS: char = '›';

//! The confirm popup every destructive request goes through (gitui's `ConfirmAction`):
//! nothing is sent until the operator says yes. The keys drawn in the popup are its
//! command table.

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use crate::command::{Command, Hint, hint_line, hints, lookup};
use crate::outcome::Outcome;
use crate::popup::{Popup, Reply};
use crate::request::Request;
use crate::ui::centered;

#[derive(Debug, Clone, Copy)]
enum Answer {
    Yes,
    No,
}

const COMMANDS: &[Command<Answer>] = &[
    Command::new(&[KeyCode::Char('y'), KeyCode::Char('Y'), KeyCode::Enter], "confirm", Answer::Yes),
    Command::new(&[KeyCode::Char('n'), KeyCode::Char('N'), KeyCode::Esc, KeyCode::Char('q')], "cancel", Answer::No),
];

pub fn commands() -> Vec<Hint> {
    hints(COMMANDS)
}

pub fn on_key(message: String, request: Request, key: &KeyEvent) -> Reply {
    match lookup(COMMANDS, key) {
        Some(Answer::Yes) => Reply::Close(Outcome::request(request)),
        Some(Answer::No) => Reply::Close(Outcome::info("Cancelled.")),
        None => Reply::Stay(Popup::Confirm { message, request }),
    }
}

pub fn draw(frame: &mut Frame, message: &str) {
    let rect = centered(frame.area(), 60, 7);
    frame.render_widget(Clear, rect);
    let lines = vec![Line::from(message.to_string()), Line::from(""), Line::from(hint_line(&commands()))];
    let block = Block::default().borders(Borders::ALL).title(" Confirm ");
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }).block(block), rect);
}

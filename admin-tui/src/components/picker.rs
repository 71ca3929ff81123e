//! A checklist popup: move, toggle, save. The console uses it for a user's roles.

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use crate::command::{Command, Hint, hints, lookup};
use crate::ui::{Theme, centered};

#[derive(Debug, Clone, Copy)]
enum Pick {
    Toggle,
    Down,
    Up,
    Save,
    Cancel,
}

const COMMANDS: &[Command<Pick>] = &[
    Command::new(&[KeyCode::Char(' ')], "toggle", Pick::Toggle),
    Command::new(&[KeyCode::Enter], "save", Pick::Save),
    Command::new(&[KeyCode::Esc, KeyCode::Char('q')], "cancel", Pick::Cancel),
    Command::new(&[KeyCode::Char('j'), KeyCode::Down], "down", Pick::Down),
    Command::new(&[KeyCode::Char('k'), KeyCode::Up], "up", Pick::Up),
];

/// What a key did to the checklist.
pub enum Picked {
    /// Still open (moved, toggled, or an unknown key).
    Open,
    Save(Vec<String>),
    Cancel,
}

#[derive(Debug, Clone)]
pub struct Picker {
    pub title: String,
    /// Each option and whether it is ticked.
    pub options: Vec<(String, bool)>,
    pub cursor: usize,
}

impl Picker {
    pub fn commands() -> Vec<Hint> {
        hints(COMMANDS)
    }

    pub fn on_key(&mut self, key: &KeyEvent) -> Picked {
        match lookup(COMMANDS, key) {
            Some(Pick::Toggle) => {
                if let Some(option) = self.options.get_mut(self.cursor) {
                    option.1 = !option.1;
                }
            }
            Some(Pick::Down) => self.cursor = (self.cursor + 1).min(self.options.len().saturating_sub(1)),
            Some(Pick::Up) => self.cursor = self.cursor.saturating_sub(1),
            Some(Pick::Save) => {
                return Picked::Save(self.options.iter().filter(|(_, on)| *on).map(|(o, _)| o.clone()).collect());
            }
            Some(Pick::Cancel) => return Picked::Cancel,
            None => {}
        }
        Picked::Open
    }

    pub fn draw(&self, frame: &mut Frame, theme: Theme) {
        let lines: Vec<Line> = self
            .options
            .iter()
            .enumerate()
            .map(|(i, (option, on))| {
                // The `›` marks the cursor without colour, as in the forms.
                let mark = if i == self.cursor { super::input::FOCUS } else { ' ' };
                let text = format!("{mark}[{}] {option}", if *on { "x" } else { " " });
                if i == self.cursor { Line::styled(text, theme.highlight()) } else { Line::from(text) }
            })
            .collect();
        let rect = centered(frame.area(), 40, lines.len() as u16 + 2);
        frame.render_widget(Clear, rect);
        let block = Block::default().borders(Borders::ALL).title(format!(" {} ", self.title));
        frame.render_widget(Paragraph::new(lines).block(block), rect);
    }
}

//! The detail view behind a row (Enter): every field of the record, full timestamps,
//! long values wrapped rather than cut. Closed with its own commands, which it draws on
//! its border.

use chrono::{DateTime, FixedOffset};
use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use crate::command::{Command, Hint, hint_line, hints, lookup};
use crate::time;
use crate::ui::centered;

const COMMANDS: &[Command<()>] = &[Command::new(&[KeyCode::Esc, KeyCode::Char('q')], "close", ())];

/// Width of the label column.
const LABEL: usize = 14;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    /// An RFC 3339 timestamp, drawn in full with its relative form.
    Time(String),
    /// One entry a line (permissions, sessions, pretty-printed JSON).
    Lines(Vec<String>),
}

impl Value {
    /// `Text`, or `-` when absent.
    pub fn maybe(text: Option<&str>) -> Self {
        Value::Text(text.unwrap_or("-").to_string())
    }

    /// `Time`, or `-` when absent.
    pub fn maybe_time(text: Option<&str>) -> Self {
        text.map_or_else(|| Value::Text("-".into()), |t| Value::Time(t.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    /// Which record this is (`user:<id>`), so a late update finds the right view.
    pub id: String,
    pub title: String,
    pub rows: Vec<(&'static str, Value)>,
}

impl Detail {
    pub fn commands() -> Vec<Hint> {
        hints(COMMANDS)
    }

    /// `true` when the key closes the view.
    pub fn closes(key: &KeyEvent) -> bool {
        lookup(COMMANDS, key).is_some()
    }

    fn lines(&self, now: DateTime<FixedOffset>) -> Vec<Line<'static>> {
        let bold = Style::default().add_modifier(Modifier::BOLD);
        let mut lines = Vec::new();
        for (label, value) in &self.rows {
            let values = match value {
                Value::Text(text) => vec![text.clone()],
                Value::Time(at) => vec![time::full(at, now)],
                Value::Lines(items) if items.is_empty() => vec!["-".to_string()],
                Value::Lines(items) => items.clone(),
            };
            for (i, text) in values.into_iter().enumerate() {
                let label = if i == 0 { format!("{label:<LABEL$}") } else { " ".repeat(LABEL) };
                lines.push(Line::from(vec![Span::styled(label, bold), Span::raw(text)]));
            }
        }
        lines
    }

    pub fn draw(&self, frame: &mut Frame, now: DateTime<FixedOffset>) {
        let lines = self.lines(now);
        let area = frame.area();
        let width = area.width.min(76);
        // Long values wrap: count the rows they take at this width.
        let inner = usize::from(width.saturating_sub(2)).max(1);
        let height: usize = lines.iter().map(|l| l.width().div_ceil(inner).max(1)).sum();
        let rect = centered(area, width, (height as u16).saturating_add(2));
        frame.render_widget(Clear, rect);
        let block = Block::default()
            .borders(Borders::ALL)
            .title(format!(" {} ", self.title))
            .title_bottom(format!(" {} ", hint_line(&Self::commands())));
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }).block(block), rect);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_wrap_inside_the_screen() {
        let detail = Detail {
            id: "audit:1".into(),
            title: "Audit event 1".into(),
            rows: vec![("Details", Value::Lines(vec!["x".repeat(300)])), ("When", Value::Time("bad".into()))],
        };
        let now = DateTime::parse_from_rfc3339("2026-12-01T06:55:00+00:00").unwrap();
        let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(80, 24)).unwrap();
        terminal.draw(|frame| detail.draw(frame, now)).unwrap();
        let screen = terminal.backend().to_string();
        assert!(screen.contains("Esc/q close"), "{screen}");
        assert_eq!(screen.matches('x').count(), 300, "nothing cut:\n{screen}");
    }
}

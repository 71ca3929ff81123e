//! The `?` help: every command of the current context in groups, two columns so the
//! longest screen still fits 80×24. It draws the same tables the keys dispatch on.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use crate::command::Hint;
use crate::ui::centered;

/// A heading and its commands.
pub type Group = (String, Vec<Hint>);

fn lines(groups: &[Group]) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    for (title, hints) in groups {
        lines.push(Line::styled(title.clone(), Style::default().add_modifier(Modifier::BOLD)));
        lines.extend(hints.iter().map(|h| Line::from(format!("  {:<10} {}", h.keys.label(), h.label))));
    }
    lines
}

/// The first group on the left (the screen's own keys), the rest on the right.
pub fn draw(frame: &mut Frame, groups: &[Group]) {
    let (left, right) = groups.split_at(groups.len().min(1));
    let (left, right) = (lines(left), lines(right));
    let height = left.len().max(right.len()) as u16 + 2;
    let rect = centered(frame.area(), 78, height);
    frame.render_widget(Clear, rect);
    let block = Block::default().borders(Borders::ALL).title(" Help ");
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    let [l, r] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(inner);
    frame.render_widget(Paragraph::new(left), l);
    frame.render_widget(Paragraph::new(right), r);
}

//! Drawing: the frame's layout (tabs, the screen's table, status line, key bar) and the
//! open popup over it. Pure functions of the [`App`] state — the time relative dates are
//! drawn against is `app.now` — so snapshot tests render exactly what an operator sees.
//! Works from 80×24 up; colours drop out when `NO_COLOR` is set.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Tabs};

use crate::app::{App, StatusKind};
use crate::components::table;
use crate::popup;

/// Styles that respect `NO_COLOR` (https://no-color.org).
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    pub fn from_env() -> Self {
        Self { color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) }
    }

    pub fn fg(self, color: Color) -> Style {
        if self.color { Style::default().fg(color) } else { Style::default() }
    }

    pub fn highlight(self) -> Style {
        if self.color {
            Style::default().bg(Color::Blue).fg(Color::White).add_modifier(Modifier::BOLD)
        } else {
            Style::default().add_modifier(Modifier::REVERSED)
        }
    }

    pub fn error(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }
}

pub fn draw(frame: &mut Frame, app: &App, theme: Theme) {
    let [header, body, status, keys] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(3), Constraint::Length(1), Constraint::Length(1)])
            .areas(frame.area());
    if app.logged_in {
        let titles = app.titles().into_iter().enumerate().map(|(i, title)| format!("{} {title}", i + 1));
        let tabs = Tabs::new(titles).select(app.current_index()).highlight_style(theme.highlight()).divider("|");
        frame.render_widget(tabs, header);
        let screen = app.current();
        table::draw(frame, body, screen.view(app.now), screen.table(), theme);
    } else {
        frame.render_widget(
            Paragraph::new(format!(" latchkey-admin — {}", app.server)).style(theme.fg(Color::Cyan)),
            header,
        );
        app.login.draw(frame, body, theme);
    }
    draw_status(frame, status, app, theme);
    draw_keys(frame, keys, app, theme);
    if let Some(open) = &app.popup {
        popup::draw(frame, open, app, theme);
    }
}

fn draw_status(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let Some((kind, text)) = &app.status else { return };
    let style = match kind {
        StatusKind::Info => theme.fg(Color::Green),
        StatusKind::Error => theme.error(),
    };
    frame.render_widget(Paragraph::new(format!(" {text}")).style(style), area);
}

/// The key bar: as many whole hints as fit, in the context's order (the most important
/// first), then `? more` when some did not fit — never a hint cut mid-word.
fn draw_keys(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let hints = app.key_hints();
    let fitted = fit_hints(&hints, usize::from(area.width));
    let mut spans = Vec::new();
    for (key, what) in fitted.shown {
        spans.push(Span::styled(format!(" {key}"), theme.fg(Color::Yellow).add_modifier(Modifier::BOLD)));
        spans.push(Span::raw(format!(" {what} ")));
    }
    if fitted.more {
        spans.push(Span::styled(" ?", theme.fg(Color::Yellow).add_modifier(Modifier::BOLD)));
        spans.push(Span::raw(" more"));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

pub struct FittedHints<'a> {
    pub shown: Vec<&'a (String, &'static str)>,
    /// Some hints were left out (the `?` help lists them all).
    pub more: bool,
}

/// Which hints fit in `width` columns, keeping room for ` ? more` when not all do.
pub fn fit_hints<'a>(hints: &'a [(String, &'static str)], width: usize) -> FittedHints<'a> {
    let cost = |(key, what): &(String, &str)| key.chars().count() + what.chars().count() + 3;
    let total: usize = hints.iter().map(cost).sum();
    if total <= width {
        return FittedHints { shown: hints.iter().collect(), more: false };
    }
    let budget = width.saturating_sub(" ? more".len());
    let mut used = 0;
    let mut shown = Vec::new();
    for hint in hints {
        // `?` itself is what the tail offers; no need to show it twice.
        if hint.0 == "?" {
            continue;
        }
        if used + cost(hint) > budget {
            break;
        }
        used += cost(hint);
        shown.push(hint);
    }
    FittedHints { shown, more: true }
}

/// A `width`×`height` rectangle in the middle of `area`, shrunk to fit it.
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height }
}

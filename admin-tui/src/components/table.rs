//! The list component every screen draws: which row is selected, which page is shown,
//! the keys that move through them, and the table widget itself.

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table as TableWidget, TableState};

use crate::command::{Command, Hint, hints, lookup};
use crate::request::PAGE_SIZE;
use crate::ui::Theme;

#[derive(Debug, Clone, Copy)]
enum Nav {
    Down,
    Up,
    First,
    Last,
    NextPage,
    PrevPage,
}

const ROWS: &[Command<Nav>] = &[
    Command::new(&[KeyCode::Char('j'), KeyCode::Down], "down", Nav::Down),
    Command::new(&[KeyCode::Char('k'), KeyCode::Up], "up", Nav::Up),
    Command::new(&[KeyCode::Char('g'), KeyCode::Home], "first row", Nav::First),
    Command::new(&[KeyCode::Char('G'), KeyCode::End], "last row", Nav::Last),
];

/// Only for lists the server pages (roles and keys come whole).
const PAGES: &[Command<Nav>] = &[
    Command::new(&[KeyCode::Char('n'), KeyCode::PageDown], "next page", Nav::NextPage),
    Command::new(&[KeyCode::Char('N'), KeyCode::PageUp], "prev page", Nav::PrevPage),
];

/// What a key did to the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// The selection (or nothing, at an edge): only redraw.
    Row,
    /// Another page: the screen has to load it.
    Page,
}

#[derive(Debug, Clone)]
pub struct Table {
    selected: usize,
    page: u64,
    rows: usize,
    /// Rows on every page together; `None` for lists that are not paged.
    total: Option<u64>,
}

impl Default for Table {
    fn default() -> Self {
        Self { selected: 0, page: 1, rows: 0, total: None }
    }
}

impl Table {
    pub fn commands(&self) -> Vec<Hint> {
        if self.total.is_some() { [hints(ROWS), hints(PAGES)].concat() } else { hints(ROWS) }
    }

    pub fn selected(&self) -> usize {
        self.selected
    }

    /// The page to load (1-based).
    pub fn page(&self) -> u64 {
        self.page
    }

    fn pages(&self) -> u64 {
        self.total.map_or(1, |t| t.div_ceil(PAGE_SIZE).max(1))
    }

    /// A new search or filter starts again from its first page.
    pub fn first_page(&mut self) {
        self.page = 1;
        self.selected = 0;
    }

    /// New rows arrived: keep the selection on a row that exists.
    pub fn loaded(&mut self, rows: usize, total: Option<u64>) {
        self.rows = rows;
        self.total = total;
        self.selected = self.selected.min(rows.saturating_sub(1));
    }

    pub fn on_key(&mut self, key: &KeyEvent) -> Option<Moved> {
        let last = self.rows.saturating_sub(1);
        let nav = lookup(ROWS, key).or_else(|| self.total.and_then(|_| lookup(PAGES, key)))?;
        match nav {
            Nav::Down => self.selected = (self.selected + 1).min(last),
            Nav::Up => self.selected = self.selected.saturating_sub(1),
            Nav::First => self.selected = 0,
            Nav::Last => self.selected = last,
            Nav::NextPage if self.page < self.pages() => {
                self.page += 1;
                self.selected = 0;
                return Some(Moved::Page);
            }
            Nav::PrevPage if self.page > 1 => {
                self.page -= 1;
                self.selected = 0;
                return Some(Moved::Page);
            }
            Nav::NextPage | Nav::PrevPage => {}
        }
        Some(Moved::Row)
    }

    /// ` Users — 3 total, page 1/1 — search “car”`.
    pub fn title(&self, name: &str, extra: &str) -> String {
        match self.total {
            Some(total) => format!(" {name} — {total} total, page {}/{} {extra}", self.page, self.pages()),
            None => format!(" {name} {extra}"),
        }
    }
}

/// One column of a screen's table: its header and how wide it is drawn, side by side so
/// the two cannot drift apart.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub header: &'static str,
    pub width: Constraint,
}

impl Column {
    /// Exactly `width` cells wide.
    pub const fn fixed(header: &'static str, width: u16) -> Self {
        Self { header, width: Constraint::Length(width) }
    }

    /// What the fixed columns leave over, at least `min` cells.
    pub const fn rest(header: &'static str, min: u16) -> Self {
        Self { header, width: Constraint::Min(min) }
    }
}

/// What a screen shows in its table.
pub struct TableView {
    pub title: String,
    pub columns: &'static [Column],
    pub rows: Vec<Vec<String>>,
}

pub fn draw(frame: &mut Frame, area: Rect, view: TableView, table: &Table, theme: Theme) {
    let empty = view.rows.is_empty();
    let rows = view.rows.into_iter().map(|r| Row::new(r.into_iter().map(Cell::from)));
    let header = Row::new(view.columns.iter().map(|c| c.header));
    let widget = TableWidget::new(rows, view.columns.iter().map(|c| c.width))
        .header(header.style(Style::default().add_modifier(Modifier::BOLD)))
        .row_highlight_style(theme.highlight())
        .block(Block::default().borders(Borders::ALL).title(view.title));
    let mut state = TableState::default();
    if !empty {
        state.select(Some(table.selected));
    }
    frame.render_stateful_widget(widget, area, &mut state);
    if empty {
        let inner = Rect { x: area.x + 2, y: area.y + 2, width: area.width.saturating_sub(4), height: 1 };
        frame.render_widget(Paragraph::new("(nothing here — r reloads)"), inner);
    }
}

/// `text` cut to `max` characters, with `…` when it was longer.
pub fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max.saturating_sub(1)).collect::<String>())
    }
}

//! Drawing. Pure functions of the [`App`] state, so snapshot tests render exactly what
//! an operator sees. Works from 80×24 up; colours drop out when `NO_COLOR` is set.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, TableState, Tabs, Wrap};

use crate::app::{App, GLOBAL_KEYS, Popup, Screen, StatusKind};

/// Styles that respect `NO_COLOR` (https://no-color.org).
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    pub fn from_env() -> Self {
        Self { color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) }
    }

    fn fg(self, color: Color) -> Style {
        if self.color { Style::default().fg(color) } else { Style::default() }
    }

    fn highlight(self) -> Style {
        if self.color {
            Style::default().bg(Color::Blue).fg(Color::White).add_modifier(Modifier::BOLD)
        } else {
            Style::default().add_modifier(Modifier::REVERSED)
        }
    }

    fn error(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }
}

pub fn draw(frame: &mut Frame, app: &App, theme: Theme) {
    let [header, body, status, keys] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(3), Constraint::Length(1), Constraint::Length(1)])
            .areas(frame.area());
    if app.logged_in {
        draw_tabs(frame, header, app, theme);
        draw_screen(frame, body, app, theme);
    } else {
        frame.render_widget(
            Paragraph::new(format!(" latchkey-admin — {}", app.server)).style(theme.fg(Color::Cyan)),
            header,
        );
        draw_login(frame, body, app, theme);
    }
    draw_status(frame, status, app, theme);
    draw_keys(frame, keys, app, theme);
    if let Some(popup) = &app.popup {
        draw_popup(frame, popup, app, theme);
    }
}

fn draw_tabs(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let titles = Screen::ALL.iter().enumerate().map(|(i, s)| format!("{} {}", i + 1, s.title()));
    let selected = Screen::ALL.iter().position(|s| *s == app.screen).unwrap_or(0);
    frame.render_widget(Tabs::new(titles).select(selected).highlight_style(theme.highlight()).divider("|"), area);
}

fn draw_login(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let form = &app.login;
    let width = area.width.clamp(20, 60);
    let height = if form.need_totp { 9 } else { 7 };
    let rect = centered(area, width, height);
    let field = |label: &str, value: String, index: usize| {
        let style = if form.field == index { theme.highlight() } else { Style::default() };
        Line::from(vec![Span::raw(format!("{label:>10}: ")), Span::styled(format!("{value:<32}"), style)])
    };
    let mut lines = vec![
        Line::from(""),
        field("Username", form.username.clone(), 0),
        field("Password", "•".repeat(form.password.chars().count()), 1),
    ];
    if form.need_totp {
        lines.push(field("TOTP code", form.totp.clone(), 2));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(if form.busy { "  Logging in…" } else { "  Enter to log in" }));
    frame.render_widget(Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" Log in ")), rect);
}

fn page_title(title: &str, page: u64, total: Option<u64>, extra: &str) -> String {
    match total {
        Some(total) => {
            format!(" {title} — {total} total, page {page}/{} {extra}", total.div_ceil(crate::app::PAGE_SIZE).max(1))
        }
        None => format!(" {title} {extra}"),
    }
}

fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max.saturating_sub(1)).collect::<String>())
    }
}

/// `2026-11-23T12:30:03+00:00` → `2026-11-23 12:30`.
fn when(text: &str) -> String {
    text.get(..16).map(|t| t.replace('T', " ")).unwrap_or_else(|| text.to_string())
}

fn draw_screen(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let screen = app.screen;
    let page = app.page_of(screen);
    let (title, header, widths, rows): (String, Vec<&str>, Vec<Constraint>, Vec<Vec<String>>) = match screen {
        Screen::Users => {
            let list = app.lists.users.as_ref();
            let search =
                if app.user_query.is_empty() { String::new() } else { format!("— search “{}”", app.user_query) };
            (
                page_title("Users", page, list.map(|p| p.total), &search),
                vec!["Username", "Status", "Roles", "TOTP", "Email"],
                vec![
                    Constraint::Length(18),
                    Constraint::Length(9),
                    Constraint::Length(22),
                    Constraint::Length(5),
                    Constraint::Min(10),
                ],
                list.map(|p| {
                    p.items
                        .iter()
                        .map(|u| {
                            let status = if u.locked_until.is_some() { "locked".to_string() } else { u.status.clone() };
                            vec![
                                short(&u.username, 18),
                                status,
                                short(&u.roles.join(","), 22),
                                if u.totp_enabled { "on" } else { "-" }.into(),
                                u.email.clone().unwrap_or_default(),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default(),
            )
        }
        Screen::Roles => (
            page_title("Roles", page, None, ""),
            vec!["Name", "Users", "Built-in", "Permissions"],
            vec![Constraint::Length(18), Constraint::Length(6), Constraint::Length(9), Constraint::Min(20)],
            app.lists
                .roles
                .iter()
                .map(|r| {
                    let perms = if r.name == "admin" { "(all)".into() } else { r.permissions.join(" ") };
                    vec![r.name.clone(), r.user_count.to_string(), if r.builtin { "yes" } else { "" }.into(), perms]
                })
                .collect(),
        ),
        Screen::Sessions => {
            let list = app.lists.sessions.as_ref();
            let filter =
                app.session_user_filter.as_deref().map(|u| format!("— user {}", short(u, 13))).unwrap_or_default();
            (
                page_title("Sessions", page, list.map(|p| p.total), &filter),
                vec!["User", "Client", "IP", "Created", "Last used", "User agent"],
                vec![
                    Constraint::Length(12),
                    Constraint::Length(10),
                    Constraint::Length(15),
                    Constraint::Length(16),
                    Constraint::Length(16),
                    Constraint::Min(8),
                ],
                list.map(|p| {
                    p.items
                        .iter()
                        .map(|s| {
                            vec![
                                short(&s.username, 12),
                                short(&s.client_id, 10),
                                s.ip.clone().unwrap_or_default(),
                                when(&s.created_at),
                                when(&s.last_used_at),
                                s.user_agent.clone().unwrap_or_default(),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default(),
            )
        }
        Screen::Clients => {
            let list = app.lists.clients.as_ref();
            (
                page_title("Clients", page, list.map(|p| p.total), ""),
                vec!["Client id", "Type", "Grants", "Roles"],
                vec![Constraint::Length(18), Constraint::Length(13), Constraint::Length(30), Constraint::Min(8)],
                list.map(|p| {
                    p.items
                        .iter()
                        .map(|c| {
                            vec![
                                short(&c.client_id, 18),
                                c.client_type.clone(),
                                c.grant_types.join(" "),
                                c.roles.join(","),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default(),
            )
        }
        Screen::Keys => (
            page_title("Signing keys", page, None, ""),
            vec!["Kid", "State", "Bits", "Created", "Activated / due", "JWKS"],
            vec![
                Constraint::Length(14),
                Constraint::Length(8),
                Constraint::Length(5),
                Constraint::Length(16),
                Constraint::Length(16),
                Constraint::Min(4),
            ],
            app.lists
                .keys
                .iter()
                .map(|k| {
                    let activated =
                        k.activated_at.as_deref().or(k.activates_at.as_deref()).map(when).unwrap_or_default();
                    vec![
                        short(&k.kid, 14),
                        k.state.clone(),
                        k.bits.to_string(),
                        when(&k.created_at),
                        activated,
                        if k.published { "yes" } else { "no" }.into(),
                    ]
                })
                .collect(),
        ),
        Screen::Audit => {
            let list = app.lists.audit.as_ref();
            let mut extra = if app.follow_audit { "— following".to_string() } else { String::new() };
            if !app.audit_action_filter.is_empty() {
                extra.push_str(&format!(" — action {}", app.audit_action_filter));
            }
            (
                page_title("Audit", page, list.map(|p| p.total), &extra),
                vec!["When", "Action", "Outcome", "Actor", "Target"],
                vec![
                    Constraint::Length(16),
                    Constraint::Length(20),
                    Constraint::Length(9),
                    Constraint::Length(14),
                    Constraint::Min(8),
                ],
                list.map(|p| {
                    p.items
                        .iter()
                        .map(|e| {
                            vec![
                                when(&e.occurred_at),
                                short(&e.action, 20),
                                e.outcome.clone(),
                                short(&e.actor, 14),
                                e.target.clone().unwrap_or_default(),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default(),
            )
        }
    };
    let empty = rows.is_empty();
    let table = Table::new(rows.into_iter().map(|r| Row::new(r.into_iter().map(Cell::from))), widths)
        .header(Row::new(header).style(Style::default().add_modifier(Modifier::BOLD)))
        .row_highlight_style(theme.highlight())
        .block(Block::default().borders(Borders::ALL).title(title));
    let mut state = TableState::default();
    if !empty {
        state.select(Some(app.selected_of(screen)));
    }
    frame.render_stateful_widget(table, area, &mut state);
    if empty {
        let inner = Rect { x: area.x + 2, y: area.y + 2, width: area.width.saturating_sub(4), height: 1 };
        frame.render_widget(Paragraph::new("(nothing here — r reloads)"), inner);
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

/// The key bar: as many whole hints as fit, in the screen's order (the most important
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
    pub shown: Vec<&'a (&'static str, &'static str)>,
    /// Some hints were left out (the `?` help lists them all).
    pub more: bool,
}

/// Which hints fit in `width` columns, keeping room for ` ? more` when not all do.
pub fn fit_hints<'a>(hints: &'a [(&'static str, &'static str)], width: usize) -> FittedHints<'a> {
    let cost = |(key, what): &(&str, &str)| key.chars().count() + what.chars().count() + 3;
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

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height }
}

/// The QR code on the left, the secret, URI and instructions beside it, so everything
/// fits in 80×24.
fn draw_totp(frame: &mut Frame, setup: &crate::api::TotpSetup, _theme: Theme) {
    let qr: Vec<Line> = crate::qr::half_blocks(&setup.otpauth_uri).into_iter().map(Line::from).collect();
    let qr_width = qr.iter().map(|l| l.width() as u16).max().unwrap_or(40);
    let rect = centered(frame.area(), frame.area().width, qr.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    let block = Block::default().borders(Borders::ALL).title(" Set up TOTP ");
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    let [left, right] = Layout::horizontal([Constraint::Length(qr_width + 1), Constraint::Min(10)]).areas(inner);
    frame.render_widget(Paragraph::new(qr), left);
    let text = vec![
        Line::from("Scan the code with an authenticator app, or type the secret:"),
        Line::from(""),
        Line::from(setup.secret.clone()),
        Line::from(""),
        Line::from("otpauth URI:"),
        Line::from(setup.otpauth_uri.clone()),
        Line::from(""),
        Line::from("Enter: type the current code. Esc: cancel."),
    ];
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }), right);
}

fn draw_popup(frame: &mut Frame, popup: &Popup, app: &App, theme: Theme) {
    let area = frame.area();
    let (title, lines, width, height): (String, Vec<Line>, u16, u16) = match popup {
        Popup::Confirm { message, .. } => (
            " Confirm ".into(),
            vec![Line::from(message.clone()), Line::from(""), Line::from("y = yes    n = no")],
            60,
            7,
        ),
        Popup::Input { title, value, secret, .. } => {
            let shown = if *secret { "•".repeat(value.chars().count()) } else { value.clone() };
            (format!(" {title} "), vec![Line::from(format!("> {shown}▏"))], 70, 3)
        }
        Popup::ShowOnce { title, lines } => {
            let mut out: Vec<Line> = lines.iter().map(|l| Line::from(l.clone())).collect();
            out.push(Line::from(""));
            out.push(Line::from("Shown once: copy it now (select with the mouse). Any key closes."));
            (format!(" {title} "), out, 72, lines.len() as u16 + 4)
        }
        Popup::RolePicker { username, options, cursor, .. } => {
            let lines = options
                .iter()
                .enumerate()
                .map(|(i, (role, on))| {
                    let text = format!("[{}] {role}", if *on { "x" } else { " " });
                    if i == *cursor { Line::styled(text, theme.highlight()) } else { Line::from(text) }
                })
                .collect::<Vec<_>>();
            let height = lines.len() as u16 + 2;
            (format!(" Roles of {username} "), lines, 40, height)
        }
        Popup::Totp { setup } => {
            draw_totp(frame, setup, theme);
            return;
        }
        Popup::Help => {
            let mut lines = vec![Line::styled(
                format!("{} screen", app.screen.title()),
                Style::default().add_modifier(Modifier::BOLD),
            )];
            lines.extend(app.screen.keys().iter().map(|(k, w)| Line::from(format!("  {k:<10} {w}"))));
            lines.push(Line::styled("Everywhere", Style::default().add_modifier(Modifier::BOLD)));
            lines.extend(GLOBAL_KEYS.iter().map(|(k, w)| Line::from(format!("  {k:<10} {w}"))));
            let height = lines.len() as u16 + 2;
            (" Help ".into(), lines, 50, height)
        }
    };
    let rect = centered(area, width, height);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(Block::default().borders(Borders::ALL).title(title)),
        rect,
    );
}

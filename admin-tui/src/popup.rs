//! The popup layer over the screens (gitui's `popups/`). At most one popup is open and,
//! while it is, it gets every key; each kind answers with its own command table.

use ratatui::Frame;
use ratatui::crossterm::event::KeyEvent;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use crate::api::TotpSetup;
use crate::app::App;
use crate::command::{Command, Hint, Keys, hints};
use crate::components::detail::Detail;
use crate::components::input::{Input, Prompt};
use crate::components::picker::{Picked, Picker};
use crate::components::{confirm, help, totp};
use crate::outcome::Outcome;
use crate::request::{KeepKind, Request};
use crate::ui::{Theme, centered};

#[derive(Debug)]
pub enum Popup {
    Confirm {
        message: String,
        request: Request,
    },
    Input(Input),
    /// A secret shown once (generated password, client secret, recovery codes).
    ShowOnce {
        title: String,
        lines: Vec<String>,
    },
    RolePicker {
        user_id: String,
        picker: Picker,
    },
    /// A checklist whose unticked entries are taken away (`ids` in the options' order).
    KeepPicker {
        user_id: String,
        kind: KeepKind,
        ids: Vec<String>,
        picker: Picker,
    },
    Totp {
        setup: TotpSetup,
    },
    Detail(Detail),
    Help,
}

/// What a key did to the open popup.
pub enum Reply {
    Stay(Popup),
    Close(Outcome),
    /// A prompt was answered: the app hands it to whoever opened it.
    Submit {
        prompt: Box<dyn Prompt>,
        value: String,
    },
}

/// Popups that only need reading: any key closes them.
const CLOSE_ON_ANY_KEY: &[Command<()>] = &[Command { keys: Keys::Any, label: "close", action: () }];

impl Popup {
    pub fn commands(&self) -> Vec<Hint> {
        match self {
            Popup::Confirm { .. } => confirm::commands(),
            Popup::Input(_) => Input::commands(),
            Popup::RolePicker { .. } | Popup::KeepPicker { .. } => Picker::commands(),
            Popup::Totp { .. } => totp::commands(),
            Popup::Detail(_) => Detail::commands(),
            Popup::ShowOnce { .. } | Popup::Help => hints(CLOSE_ON_ANY_KEY),
        }
    }

    pub fn on_key(self, key: &KeyEvent) -> Reply {
        match self {
            Popup::Confirm { message, request } => confirm::on_key(message, request, key),
            Popup::Input(input) => input.on_key(key),
            Popup::RolePicker { user_id, mut picker } => match picker.on_key(key) {
                Picked::Open => Reply::Stay(Popup::RolePicker { user_id, picker }),
                Picked::Save(roles) => Reply::Close(Outcome::request(Request::SetRoles { user_id, roles })),
                Picked::Cancel => Reply::Close(Outcome::info("Cancelled.")),
            },
            Popup::KeepPicker { user_id, kind, ids, mut picker } => match picker.on_key(key) {
                Picked::Open => Reply::Stay(Popup::KeepPicker { user_id, kind, ids, picker }),
                Picked::Save(_) => {
                    let gone: Vec<String> =
                        picker.options.iter().zip(ids).filter(|((_, kept), _)| !kept).map(|(_, id)| id).collect();
                    if gone.is_empty() {
                        Reply::Close(Outcome::info("Nothing unticked: nothing changed."))
                    } else {
                        Reply::Close(Outcome::request(kind.take_away(user_id, gone)))
                    }
                }
                Picked::Cancel => Reply::Close(Outcome::info("Cancelled.")),
            },
            Popup::Totp { setup } => totp::on_key(setup, key),
            Popup::Detail(_) if Detail::closes(key) => Reply::Close(Outcome::default()),
            Popup::Detail(detail) => Reply::Stay(Popup::Detail(detail)),
            Popup::ShowOnce { .. } | Popup::Help => Reply::Close(Outcome::default()),
        }
    }
}

pub fn draw(frame: &mut Frame, popup: &Popup, app: &App, theme: Theme) {
    match popup {
        Popup::Confirm { message, .. } => confirm::draw(frame, message),
        Popup::Input(input) => input.draw(frame),
        Popup::RolePicker { picker, .. } | Popup::KeepPicker { picker, .. } => picker.draw(frame, theme),
        Popup::Totp { setup } => totp::draw(frame, setup),
        Popup::Detail(detail) => detail.draw(frame, app.now),
        Popup::Help => help::draw(frame, &app.help()),
        Popup::ShowOnce { title, lines } => {
            let mut out: Vec<Line> = lines.iter().map(|l| Line::from(l.clone())).collect();
            out.push(Line::from(""));
            out.push(Line::from("Shown once: copy it now (select with the mouse). Any key closes."));
            let rect = centered(frame.area(), 72, lines.len() as u16 + 4);
            frame.render_widget(Clear, rect);
            let block = Block::default().borders(Borders::ALL).title(format!(" {title} "));
            frame.render_widget(Paragraph::new(out).wrap(Wrap { trim: false }).block(block), rect);
        }
    }
}

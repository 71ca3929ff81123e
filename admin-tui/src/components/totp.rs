//! Enrolling the operator's own TOTP: the password prompt, the QR code popup and the
//! code prompt that confirms it. The QR code sits on the left and the secret, the URI
//! and the instructions beside it, so everything fits in 80×24.

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use crate::api::TotpSetup;
use crate::command::{Command, Hint, hint_line, hints, lookup};
use crate::components::input::Input;
use crate::outcome::{NOTHING_ENTERED, Outcome};
use crate::popup::{Popup, Reply};
use crate::request::Request;
use crate::ui::centered;

/// The two prompts of enrolment; the app answers them, whatever screen is open.
#[derive(Debug)]
pub enum TotpPrompt {
    Password,
    Code,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    EnterCode,
    Cancel,
}

const COMMANDS: &[Command<Step>] = &[
    Command::new(&[KeyCode::Enter, KeyCode::Char('c')], "enter code", Step::EnterCode),
    Command::new(&[KeyCode::Esc, KeyCode::Char('q')], "cancel", Step::Cancel),
];

pub fn commands() -> Vec<Hint> {
    hints(COMMANDS)
}

/// The prompt that starts enrolment.
pub fn start() -> Outcome {
    Outcome::popup(Popup::Input(Input::secret("Set up TOTP for your account — password", TotpPrompt::Password)))
}

pub fn submit(prompt: TotpPrompt, value: String) -> Outcome {
    match prompt {
        TotpPrompt::Password if !value.is_empty() => Outcome::request(Request::TotpSetup { password: value.into() }),
        TotpPrompt::Code if !value.trim().is_empty() => {
            Outcome::request(Request::TotpConfirm { code: value.trim().to_string() })
        }
        _ => Outcome::info(NOTHING_ENTERED),
    }
}

pub fn on_key(setup: TotpSetup, key: &KeyEvent) -> Reply {
    match lookup(COMMANDS, key) {
        Some(Step::EnterCode) => Reply::Close(Outcome::popup(Popup::Input(Input::new(
            "Current code from your authenticator app",
            "",
            TotpPrompt::Code,
        )))),
        Some(Step::Cancel) => Reply::Close(Outcome::info("TOTP setup cancelled (not enabled).")),
        None => Reply::Stay(Popup::Totp { setup }),
    }
}

pub fn draw(frame: &mut Frame, setup: &TotpSetup) {
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
        Line::from(hint_line(&commands())),
    ];
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }), right);
}

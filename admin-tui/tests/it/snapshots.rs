//! Every screen at 80×24, as an operator sees it (no colour in the buffer snapshot).

use latchkey_admin::api::{ApiError, TotpSetup};
use latchkey_admin::app::crossterm_keys::KeyCode;
use latchkey_admin::app::{Action, App, Screen, key};
use latchkey_admin::ui::{self, Theme};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use crate::fixtures::loaded_app;

fn render(app: &App) -> String {
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|frame| ui::draw(frame, app, Theme { color: false })).unwrap();
    terminal.backend().to_string()
}

#[test]
fn login_screen() {
    let mut app = App::new("http://127.0.0.1:8080");
    for c in "root".chars() {
        app.apply(Action::Key(key(KeyCode::Char(c))));
    }
    insta::assert_snapshot!(render(&app));
}

#[test]
fn each_screen_with_fixture_data() {
    let mut app = loaded_app();
    for screen in Screen::ALL {
        app.screen = screen;
        insta::assert_snapshot!(format!("screen_{}", screen.title().to_lowercase()), render(&app));
    }
}

#[test]
fn confirm_popup() {
    let mut app = loaded_app();
    app.apply(Action::Key(key(KeyCode::Char('d'))));
    insta::assert_snapshot!(render(&app));
}

#[test]
fn error_status_line() {
    let mut app = loaded_app();
    app.apply(Action::Failed(ApiError::Server {
        status: 409,
        code: "last_admin".into(),
        message: "the last active admin cannot be removed, disabled or lose the admin role".into(),
    }));
    insta::assert_snapshot!(render(&app));
}

#[test]
fn help_popup() {
    let mut app = loaded_app();
    app.apply(Action::Key(key(KeyCode::Char('?'))));
    insta::assert_snapshot!(render(&app));
}

#[test]
fn totp_qr_code_fits() {
    let mut app = loaded_app();
    app.apply(Action::Loaded(latchkey_admin::app::Loaded::TotpSetup(TotpSetup {
        secret: "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ".into(),
        otpauth_uri: "otpauth://totp/Latchkey:root?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Latchkey".into(),
        qr_svg: String::new(),
    })));
    insta::assert_snapshot!(render(&app));
}

/// The key bar as drawn at 80 columns: whole hints only, and `? more` when some did not
/// fit (the `?` help lists them all) — never a hint cut mid-word.
#[test]
fn the_drawn_key_bar_is_whole_hints_at_80_columns() {
    use latchkey_admin::app::Screen;
    for screen in [Screen::Users, Screen::Roles, Screen::Sessions, Screen::Clients, Screen::Keys, Screen::Audit] {
        let mut app = crate::fixtures::loaded_app();
        app.screen = screen;
        let drawn = render(&app);
        let bar = drawn.lines().last().unwrap().trim_matches('"').trim_end().to_string();
        let hints = app.key_hints();
        let all_fit = hints.iter().all(|(key, what)| bar.contains(&format!(" {key} {what}")));
        assert!(all_fit || bar.ends_with("? more"), "{screen:?}: {bar:?}");
        for (key, what) in &hints {
            let first_word = what.split(' ').next().unwrap();
            if bar.contains(&format!(" {key} {first_word}")) {
                assert!(bar.contains(&format!(" {key} {what}")), "{screen:?}: `{key} {what}` is cut in {bar:?}");
            }
        }
    }
}

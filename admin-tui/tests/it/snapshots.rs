//! Every screen at 80×24, as an operator sees it (no colour in the buffer snapshot).

use latchkey_admin::api::{ApiError, ErrorCode, TotpSetup};
use latchkey_admin::app::crossterm_keys::KeyCode;
use latchkey_admin::app::{Action, App, key};
use latchkey_admin::request::Loaded;
use latchkey_admin::screens::audit::Audit;
use latchkey_admin::screens::clients::Clients;
use latchkey_admin::ui::{self, Theme};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::Position;

use crate::fixtures::{self, loaded_app};

fn render(app: &App) -> String {
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|frame| ui::draw(frame, app, Theme { color: false })).unwrap();
    terminal.backend().to_string()
}

#[test]
fn login_screen() {
    let mut app = App::new("http://127.0.0.1:8080", fixtures::now());
    for c in "root".chars() {
        app.apply(Action::Key(key(KeyCode::Char(c))));
    }
    insta::assert_snapshot!(render(&app));
}

#[test]
fn each_screen_with_fixture_data() {
    let mut app = loaded_app();
    for (index, title) in app.titles().into_iter().enumerate() {
        app.select(index);
        insta::assert_snapshot!(format!("screen_{}", title.to_lowercase()), render(&app));
    }
}

#[test]
fn error_status_line() {
    let mut app = loaded_app();
    app.apply(Action::Failed(ApiError::Server {
        status: 409,
        code: Some(ErrorCode::LastAdmin),
        message: "the last active admin cannot be removed, disabled or lose the admin role".into(),
    }));
    insta::assert_snapshot!(render(&app));
}

#[test]
fn totp_qr_code_fits() {
    let mut app = loaded_app();
    app.apply(Action::Loaded(Loaded::TotpSetup(TotpSetup {
        secret: "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ".into(),
        otpauth_uri: "otpauth://totp/Latchkey:root?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Latchkey".into(),
        qr_svg: String::new(),
    })));
    insta::assert_snapshot!(render(&app));
}

/// Enter on alice: her record at once, her sessions once they are loaded.
#[test]
fn detail_user() {
    let mut app = loaded_app();
    app.apply(Action::Key(key(KeyCode::Enter)));
    assert!(render(&app).contains("loading…"));
    let sessions = fixtures::sessions();
    let user_id = sessions.items[0].user_id.clone();
    let passkeys = vec![latchkey_admin::api::Passkey {
        id: "0190a6b1-0000-7000-8000-00000000000a".into(),
        name: "Work laptop".into(),
        created_at: "2026-11-20T09:00:00Z".into(),
        last_used_at: Some("2026-12-01T08:30:00Z".into()),
        backup_eligible: true,
        backup_state: true,
        sign_count: 0,
    }];
    app.apply(Action::Loaded(Loaded::UserSessions { user_id, sessions, passkeys }));
    insta::assert_snapshot!(render(&app));
}

#[test]
fn detail_client() {
    let mut app = loaded_app();
    app.show::<Clients>();
    app.apply(Action::Key(key(KeyCode::Enter)));
    insta::assert_snapshot!(render(&app));
}

/// The named event: names with their ids, the full time, the details JSON.
#[test]
fn detail_audit() {
    let mut app = loaded_app();
    app.show::<Audit>();
    app.apply(Action::Key(key(KeyCode::Char('j'))));
    app.apply(Action::Key(key(KeyCode::Enter)));
    insta::assert_snapshot!(render(&app));
}

/// The focused field is marked with `›` and has the terminal's cursor, so it can be found
/// without colour (NO_COLOR, screen readers) — in the login form and in prompts.
#[test]
fn the_focused_field_is_marked_without_colour() {
    let mut app = App::new("http://127.0.0.1:8080", fixtures::now());
    for c in "root".chars() {
        app.apply(Action::Key(key(KeyCode::Char(c))));
    }
    app.apply(Action::Key(key(KeyCode::Tab)));
    app.apply(Action::Key(key(KeyCode::Char('p'))));
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|frame| ui::draw(frame, &app, Theme { color: false })).unwrap();
    let screen = terminal.backend().to_string();
    assert!(screen.contains("› Password: •"), "{screen}");
    assert!(screen.contains("  Username: root"), "{screen}");
    let line = screen.lines().position(|l| l.contains("Password:")).unwrap() as u16;
    let column = screen.lines().nth(line.into()).unwrap().trim_start_matches('"').chars().position(|c| c == '•');
    let cursor = terminal.get_cursor_position().unwrap();
    assert_eq!(cursor, Position { x: column.unwrap() as u16 + 1, y: line }, "just after the typed dot");

    let mut app = loaded_app();
    app.apply(Action::Key(key(KeyCode::Char('/'))));
    app.apply(Action::Key(key(KeyCode::Char('a'))));
    let screen = render(&app);
    assert!(screen.contains("│› a "), "{screen}");
}

/// The key bar as drawn at 80 columns: whole hints only, and `? more` when some did not
/// fit (the `?` help lists them all) — never a hint cut mid-word.
#[test]
fn the_drawn_key_bar_is_whole_hints_at_80_columns() {
    let count = crate::fixtures::loaded_app().titles().len();
    for index in 0..count {
        let mut app = crate::fixtures::loaded_app();
        app.select(index);
        let screen = app.titles()[index];
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

/// The fixture app after one key on its first screen.
fn after_key(code: KeyCode) -> App {
    let mut app = loaded_app();
    app.apply(Action::Key(key(code)));
    app
}

#[test]
fn confirm_popup() {
    let app = after_key(KeyCode::Char('d'));
    insta::assert_snapshot!(render(&app));
}

#[test]
fn help_popup() {
    let app = after_key(KeyCode::Char('?'));
    insta::assert_snapshot!(render(&app));
}

//! The command tables are the key handlers: in every context a key the bar and the
//! help do not list does nothing, and every key they list does something.

use latchkey_admin::api::Page;
use latchkey_admin::app::crossterm_keys::{KeyCode, KeyEvent};
use latchkey_admin::app::{Action, App, key};
use latchkey_admin::request::Loaded;
use latchkey_admin::ui::{self, Theme};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::layout::Position;

use crate::fixtures::{self, loaded_app};

/// Every key a handler could react to: printable ASCII, a non-ASCII letter, and the
/// named keys.
fn every_key() -> Vec<KeyEvent> {
    let mut codes: Vec<KeyCode> = (' '..='~').chain(['é']).map(KeyCode::Char).collect();
    codes.extend([
        KeyCode::Enter,
        KeyCode::Esc,
        KeyCode::Tab,
        KeyCode::BackTab,
        KeyCode::Backspace,
        KeyCode::Delete,
        KeyCode::Insert,
        KeyCode::Up,
        KeyCode::Down,
        KeyCode::Left,
        KeyCode::Right,
        KeyCode::Home,
        KeyCode::End,
        KeyCode::PageUp,
        KeyCode::PageDown,
    ]);
    codes.extend((1..=12).map(KeyCode::F));
    codes.into_iter().map(key).collect()
}

/// The cells and the cursor: a typed space changes only where the cursor is.
fn screen(app: &App) -> (Buffer, Position) {
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|frame| ui::draw(frame, app, Theme { color: false })).unwrap();
    (terminal.backend().buffer().clone(), terminal.get_cursor_position().unwrap())
}

/// Whether the key did anything: sent a request, quit, or changed what is on screen
/// (a selection counts: it changes the cells' style).
fn reacts(context: &dyn Fn() -> App, key: KeyEvent) -> bool {
    let mut app = context();
    let before = screen(&app);
    let sent = app.apply(Action::Key(key));
    !sent.is_empty() || app.quit || screen(&app) != before
}

fn press(app: &mut App, code: KeyCode) {
    app.apply(Action::Key(key(code)));
}

/// Three rows on page 2 of 3, the middle row selected: every list key has somewhere to go.
fn middle_of_a_long_list(index: usize) -> impl Fn() -> App {
    move || {
        let mut app = loaded_app();
        fn long<T: Clone>(mut page: Page<T>) -> Page<T> {
            while page.items.len() < 3 {
                page.items.push(page.items[0].clone());
            }
            page.total = 150;
            page
        }
        let mut roles = fixtures::roles();
        roles.truncate(3);
        let keys = vec![fixtures::keys()[0].clone(); 3];
        for loaded in [
            Loaded::Users(long(fixtures::users())),
            Loaded::Roles(roles),
            Loaded::Sessions(long(fixtures::sessions())),
            Loaded::Clients(long(fixtures::clients())),
            Loaded::Keys(keys),
            Loaded::Audit(long(fixtures::audit())),
        ] {
            app.apply(Action::Loaded(loaded));
        }
        app.select(index);
        press(&mut app, KeyCode::Char('n'));
        press(&mut app, KeyCode::Char('j'));
        app.status = None;
        app
    }
}

fn check(name: &str, context: &dyn Fn() -> App) {
    let hints = context().commands();
    assert!(!hints.is_empty(), "{name}: no commands");
    let keys = every_key();
    for hint in &hints {
        assert!(keys.iter().any(|k| hint.keys.matches(k)), "{name}: `{}` is not among the keys tried", hint.label);
    }
    for key in keys {
        let hinted = hints.iter().find(|h| h.keys.matches(&key));
        let reacted = reacts(context, key);
        match hinted {
            Some(hint) => assert!(reacted, "{name}: {:?} is hinted as `{}` but does nothing", key.code, hint.label),
            None => assert!(!reacted, "{name}: {:?} does something but no hint says so", key.code),
        }
    }
}

#[test]
fn every_handled_key_is_hinted_and_every_hint_is_handled() {
    let count = loaded_app().titles().len();
    for index in 0..count {
        let title = loaded_app().titles()[index];
        check(title, &middle_of_a_long_list(index));
    }
    check("login", &|| {
        let mut app = App::new("http://127.0.0.1:8080", fixtures::now());
        press(&mut app, KeyCode::Char('r'));
        app
    });
    // Each popup open over the Users screen, in a state where all its keys can act.
    type Context = fn() -> App;
    let popups: Vec<(&str, Context)> = vec![
        ("confirm", || with_keys(&[KeyCode::Char('d')])),
        ("prompt", || with_keys(&[KeyCode::Char('/'), KeyCode::Char('a')])),
        ("detail", || with_keys(&[KeyCode::Enter])),
        ("help", || with_keys(&[KeyCode::Char('?')])),
        ("role picker", || {
            let mut app = loaded_app();
            let options = vec![("admin".into(), true), ("billing-reader".into(), false), ("user".into(), true)];
            let user_id = fixtures::users().items[0].id.clone();
            app.apply(Action::Loaded(Loaded::RolePicker { user_id, username: "alice".into(), options }));
            press(&mut app, KeyCode::Down);
            app
        }),
        ("keep picker", || {
            let mut app = loaded_app();
            let options =
                vec![("since 1".into(), "s1".into()), ("since 2".into(), "s2".into()), ("since 3".into(), "s3".into())];
            let user_id = fixtures::users().items[0].id.clone();
            let kind = latchkey_admin::request::KeepKind::BrowserSessions;
            app.apply(Action::Loaded(Loaded::KeepPicker { title: "Browser sessions".into(), user_id, kind, options }));
            press(&mut app, KeyCode::Down);
            app
        }),
        ("shown once", || {
            let mut app = loaded_app();
            app.apply(Action::Loaded(Loaded::ShowOnce { title: "Secret".into(), lines: vec!["s3cret".into()] }));
            app
        }),
        ("TOTP setup", || {
            let mut app = loaded_app();
            app.apply(Action::Loaded(Loaded::TotpSetup(latchkey_admin::api::TotpSetup {
                secret: "GEZDGNBVGY3TQOJQ".into(),
                otpauth_uri: "otpauth://totp/Latchkey:root?secret=GEZDGNBVGY3TQOJQ".into(),
                qr_svg: String::new(),
            })));
            app
        }),
    ];
    for (name, context) in popups {
        check(name, &context);
    }
}

fn with_keys(codes: &[KeyCode]) -> App {
    let mut app = loaded_app();
    for code in codes {
        press(&mut app, *code);
    }
    app
}

/// A screen's key must not shadow a list key or a global one: the first table would win
/// and the other's hint would lie.
#[test]
fn no_key_is_claimed_twice_in_one_context() {
    let app = loaded_app();
    for index in 0..app.titles().len() {
        let app = middle_of_a_long_list(index)();
        let hints = app.commands();
        for key in every_key() {
            let claims: Vec<_> = hints.iter().filter(|h| h.keys.matches(&key)).map(|h| h.label).collect();
            assert!(claims.len() <= 1, "{}: {:?} is claimed by {claims:?}", app.titles()[index], key.code);
        }
    }
}

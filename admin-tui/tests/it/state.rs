//! Key sequences → the requests they send (or do not send).

use latchkey_admin::api::ApiError;
use latchkey_admin::app::crossterm_keys::KeyCode;
use latchkey_admin::app::{Action, App, Popup, Request, Screen, key};

use crate::fixtures::loaded_app;

fn press(app: &mut App, code: KeyCode) -> Vec<Request> {
    app.apply(Action::Key(key(code)))
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        assert!(press(app, KeyCode::Char(c)).is_empty());
    }
}

#[test]
fn delete_asks_first_and_n_cancels_without_sending() {
    let mut app = loaded_app();
    assert!(press(&mut app, KeyCode::Char('d')).is_empty());
    match &app.popup {
        Some(Popup::Confirm { message, .. }) => assert!(message.contains("alice"), "names the target: {message}"),
        other => panic!("expected a confirm popup, got {other:?}"),
    }
    assert!(press(&mut app, KeyCode::Char('n')).is_empty(), "n cancels and nothing is sent");
    assert!(app.popup.is_none());
    // The second user, confirmed: exactly one delete for that user.
    press(&mut app, KeyCode::Char('j'));
    press(&mut app, KeyCode::Char('d'));
    let sent = press(&mut app, KeyCode::Char('y'));
    assert_eq!(sent, vec![Request::DeleteUser { user_id: "01a20862-0000-7000-8000-000000000002".into() }]);
}

#[test]
fn every_destructive_action_goes_through_a_confirm() {
    let alice = "01a20862-0000-7000-8000-000000000001".to_string();
    // (screen, key, a word the popup must name, the one request `y` sends)
    let cases: Vec<(Screen, char, &str, Request)> = vec![
        (Screen::Users, 's', "alice", Request::SetStatus { user_id: alice.clone(), status: "disabled".into() }),
        (Screen::Users, 't', "alice", Request::ResetTotp { user_id: alice.clone() }),
        (Screen::Users, 'd', "alice", Request::DeleteUser { user_id: alice.clone() }),
        (Screen::Users, 'X', "alice", Request::RevokeUserSessions { user_id: alice.clone() }),
        (Screen::Roles, 'd', "admin", Request::DeleteRole { name: "admin".into() }),
        (Screen::Sessions, 'd', "alice", Request::RevokeSession { id: "01a20862-1111-7000-8000-000000000001".into() }),
        (Screen::Sessions, 'X', "alice", Request::RevokeUserSessions { user_id: alice.clone() }),
        (Screen::Clients, 's', "latchkey-admin", Request::RotateClientSecret { client_id: "latchkey-admin".into() }),
        (Screen::Clients, 'd', "latchkey-admin", Request::DeleteClient { client_id: "latchkey-admin".into() }),
        (Screen::Keys, 'R', "signing keys", Request::RotateKeys),
    ];
    for (screen, c, target, expected) in cases {
        let mut app = loaded_app();
        app.screen = screen;
        assert!(press(&mut app, KeyCode::Char(c)).is_empty(), "{screen:?} {c}: nothing sent before confirming");
        match &app.popup {
            Some(Popup::Confirm { message, .. }) => {
                assert!(message.contains(target), "{screen:?} {c}: the popup names {target}: {message}")
            }
            other => panic!("{screen:?} {c}: expected a confirm popup, got {other:?}"),
        }
        assert!(press(&mut app, KeyCode::Esc).is_empty());
        assert!(!app.quit, "Esc closes the popup, not the console");
        // Again, and confirmed: exactly the one request for that target.
        press(&mut app, KeyCode::Char(c));
        assert_eq!(press(&mut app, KeyCode::Char('y')), vec![expected], "{screen:?} {c}");
        assert!(app.popup.is_none());
    }
}

#[test]
fn screens_switch_with_tab_and_numbers_and_vim_keys_move() {
    let mut app = loaded_app();
    assert_eq!(press(&mut app, KeyCode::Tab), vec![Request::Load(Screen::Roles)]);
    assert_eq!(press(&mut app, KeyCode::Char('6')), vec![Request::Load(Screen::Audit)]);
    assert_eq!(press(&mut app, KeyCode::BackTab), vec![Request::Load(Screen::Keys)]);
    press(&mut app, KeyCode::Char('1'));
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Char('j'));
    press(&mut app, KeyCode::Char('j'));
    assert_eq!(app.selected_of(Screen::Users), 2, "movement stops at the last row");
    press(&mut app, KeyCode::Char('k'));
    assert_eq!(app.selected_of(Screen::Users), 1);
}

#[test]
fn search_create_and_roles_flow() {
    let mut app = loaded_app();
    press(&mut app, KeyCode::Char('/'));
    type_text(&mut app, "car");
    assert_eq!(press(&mut app, KeyCode::Enter), vec![Request::Load(Screen::Users)]);
    assert_eq!(app.user_query, "car");

    press(&mut app, KeyCode::Char('c'));
    type_text(&mut app, "dave");
    assert!(press(&mut app, KeyCode::Enter).is_empty(), "then the email");
    type_text(&mut app, "dave@example.com");
    assert!(press(&mut app, KeyCode::Enter).is_empty(), "then the password");
    assert_eq!(
        press(&mut app, KeyCode::Enter),
        vec![Request::CreateUser { username: "dave".into(), email: Some("dave@example.com".into()), password: None }],
        "an empty password means: generate a one-time password"
    );

    let sent = press(&mut app, KeyCode::Char('o'));
    assert!(matches!(sent.as_slice(), [Request::LoadRolesForPicker { .. }]));
}

#[test]
fn login_then_totp_when_required() {
    let mut app = App::new("http://127.0.0.1:8080");
    type_text(&mut app, "root");
    press(&mut app, KeyCode::Tab);
    type_text(&mut app, "secret pw");
    let sent = press(&mut app, KeyCode::Enter);
    assert_eq!(sent, vec![Request::Login { username: "root".into(), password: "secret pw".into(), totp: None }]);
    app.apply(Action::Failed(ApiError::MfaRequired));
    assert!(app.login.need_totp);
    type_text(&mut app, "123456");
    let sent = press(&mut app, KeyCode::Enter);
    assert_eq!(
        sent,
        vec![Request::Login { username: "root".into(), password: "secret pw".into(), totp: Some("123456".into()) }]
    );
}

#[test]
fn session_expiry_returns_to_login_and_lost_connections_retry() {
    let mut app = loaded_app();
    app.apply(Action::Failed(ApiError::Connection("refused".into())));
    assert!(app.status.as_ref().unwrap().1.contains("Connection lost"));
    let mut retried = Vec::new();
    for _ in 0..3 {
        retried.extend(app.apply(Action::Tick));
    }
    assert!(retried.contains(&Request::Load(Screen::Users)), "{retried:?}");
    app.apply(Action::Failed(ApiError::SessionExpired));
    assert!(!app.logged_in);
    assert!(app.status.as_ref().unwrap().1.contains("log in again"));
}

#[test]
fn help_lists_the_screens_own_keys() {
    let mut app = loaded_app();
    press(&mut app, KeyCode::Char('?'));
    assert!(matches!(app.popup, Some(Popup::Help)));
    let hints = app.key_hints();
    assert_eq!(hints, vec![("any key", "close")]);
    press(&mut app, KeyCode::Char('x'));
    assert!(app.popup.is_none());
    let hints = app.key_hints();
    for key in Screen::Users.keys() {
        assert!(hints.contains(key), "{key:?} is in the bottom bar");
    }
}

#[test]
fn ctrl_c_quits_from_anywhere() {
    use latchkey_admin::app::crossterm_keys::{KeyEvent, KeyModifiers};
    let mut app = loaded_app();
    press(&mut app, KeyCode::Char('c'));
    app.apply(Action::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)));
    assert!(app.quit);
}

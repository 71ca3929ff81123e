//! Key sequences → the requests they send (or do not send).

use latchkey_admin::api::ApiError;
use latchkey_admin::app::crossterm_keys::KeyCode;
use latchkey_admin::app::{Action, App, StatusKind, key};
use latchkey_admin::popup::Popup;
use latchkey_admin::request::{Load, Request};
use latchkey_admin::screens::Screen;
use latchkey_admin::screens::clients::Clients;
use latchkey_admin::screens::keys::Keys;
use latchkey_admin::screens::roles::Roles;
use latchkey_admin::screens::sessions::Sessions;
use latchkey_admin::screens::users::Users;

use crate::fixtures::{self, loaded_app};

fn press(app: &mut App, code: KeyCode) -> Vec<Request> {
    app.apply(Action::Key(key(code)))
}

/// The row selected on the Users screen.
fn users_row(app: &App) -> usize {
    app.screen::<Users>().unwrap().table().selected()
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
    type Show = fn(&mut App) -> Vec<Request>;
    let cases: Vec<(Show, char, &str, Request)> = vec![
        (App::show::<Users>, 's', "alice", Request::SetStatus { user_id: alice.clone(), status: "disabled".into() }),
        (App::show::<Users>, 't', "alice", Request::ResetTotp { user_id: alice.clone() }),
        (App::show::<Users>, 'd', "alice", Request::DeleteUser { user_id: alice.clone() }),
        (App::show::<Users>, 'X', "alice", Request::RevokeUserSessions { user_id: alice.clone() }),
        (
            App::show::<Users>,
            'V',
            "alice@example.com",
            Request::SetEmailVerified { user_id: alice.clone(), verified: false },
        ),
        (App::show::<Users>, 'M', "alice", Request::SendLink { user_id: alice.clone(), reset: false }),
        (App::show::<Users>, 'R', "alice", Request::SendLink { user_id: alice.clone(), reset: true }),
        (App::show::<Roles>, 'd', "admin", Request::DeleteRole { name: "admin".into() }),
        (
            App::show::<Sessions>,
            'd',
            "alice",
            Request::RevokeSession { id: "01a20862-1111-7000-8000-000000000001".into() },
        ),
        (App::show::<Sessions>, 'X', "alice", Request::RevokeUserSessions { user_id: alice.clone() }),
        (
            App::show::<Clients>,
            's',
            "latchkey-admin",
            Request::RotateClientSecret { client_id: "latchkey-admin".into() },
        ),
        (App::show::<Clients>, 'd', "latchkey-admin", Request::DeleteClient { client_id: "latchkey-admin".into() }),
        (
            App::show::<Clients>,
            'f',
            "third-party",
            Request::SetClientFirstParty { client_id: "latchkey-admin".into(), first_party: false },
        ),
        (App::show::<Keys>, 'R', "signing keys", Request::RotateKeys),
    ];
    for (show, c, target, expected) in cases {
        let mut app = loaded_app();
        show(&mut app);
        let screen = app.current().title();
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
    assert_eq!(press(&mut app, KeyCode::Tab), vec![Request::Load(Load::Roles)]);
    assert_eq!(press(&mut app, KeyCode::Char('6')), vec![Request::Load(Load::Audit { action: None, page: 1 })]);
    assert_eq!(press(&mut app, KeyCode::BackTab), vec![Request::Load(Load::Keys)]);
    press(&mut app, KeyCode::Char('1'));
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Char('j'));
    press(&mut app, KeyCode::Char('j'));
    assert_eq!(users_row(&app), 2, "movement stops at the last row");
    press(&mut app, KeyCode::Char('k'));
    assert_eq!(users_row(&app), 1);
}

#[test]
fn search_create_and_roles_flow() {
    let mut app = loaded_app();
    press(&mut app, KeyCode::Char('/'));
    type_text(&mut app, "car");
    assert_eq!(press(&mut app, KeyCode::Enter), vec![Request::Load(Load::Users { query: "car".into(), page: 1 })]);
    assert_eq!(app.screen::<Users>().unwrap().query(), "car");

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
fn unticking_a_browser_session_or_an_allowed_app_takes_it_away() {
    use latchkey_admin::request::{KeepKind, Loaded};
    let mut app = loaded_app();
    let user_id = fixtures::users().items[0].id.clone();
    let sent = press(&mut app, KeyCode::Char('a'));
    assert!(matches!(sent.as_slice(), [Request::Consents { username, .. }] if username == "alice"), "{sent:?}");
    let options = vec![("since 1".to_string(), "s1".to_string()), ("since 2".into(), "s2".into())];
    let title = "Browser sessions of alice (untick to end)".to_string();
    let kind = KeepKind::BrowserSessions;
    app.apply(Action::Loaded(Loaded::KeepPicker { title, user_id: user_id.clone(), kind, options }));
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Char(' '));
    let sent = press(&mut app, KeyCode::Enter);
    assert_eq!(sent, vec![Request::EndBrowserSessions { user_id: user_id.clone(), ids: vec!["s2".into()] }]);

    let options = vec![("Grafana (grafana): openid".to_string(), "grafana".to_string())];
    let (title, kind) = ("Apps alice allowed (untick to revoke)".to_string(), KeepKind::Consents);
    app.apply(Action::Loaded(Loaded::KeepPicker { title: title.clone(), user_id: user_id.clone(), kind, options }));
    assert!(press(&mut app, KeyCode::Enter).is_empty(), "all kept: nothing is sent");
    let options = vec![("Grafana (grafana): openid".to_string(), "grafana".to_string())];
    app.apply(Action::Loaded(Loaded::KeepPicker { title, user_id: user_id.clone(), kind, options }));
    press(&mut app, KeyCode::Char(' '));
    let sent = press(&mut app, KeyCode::Enter);
    assert_eq!(sent, vec![Request::RevokeConsents { user_id, client_ids: vec!["grafana".into()] }]);
}

#[test]
fn unticking_a_passkey_deletes_it() {
    use latchkey_admin::request::{KeepKind, Loaded};
    let mut app = loaded_app();
    let user_id = fixtures::users().items[0].id.clone();
    let sent = press(&mut app, KeyCode::Char('K'));
    assert!(matches!(sent.as_slice(), [Request::Passkeys { username, .. }] if username == "alice"), "{sent:?}");
    let options = vec![("Phone".to_string(), "p1".to_string()), ("Laptop".into(), "p2".into())];
    let title = "Passkeys of alice (untick to delete)".to_string();
    app.apply(Action::Loaded(Loaded::KeepPicker {
        title,
        user_id: user_id.clone(),
        kind: KeepKind::Passkeys,
        options,
    }));
    press(&mut app, KeyCode::Char(' '));
    let sent = press(&mut app, KeyCode::Enter);
    assert_eq!(sent, vec![Request::DeletePasskeys { user_id, ids: vec!["p1".into()] }]);
}

#[test]
fn b_lists_the_selected_users_browser_sessions() {
    let mut app = loaded_app();
    let sent = press(&mut app, KeyCode::Char('b'));
    assert!(matches!(sent.as_slice(), [Request::BrowserSessions { username, .. }] if username == "alice"), "{sent:?}");
}

#[test]
fn clients_are_created_with_redirect_uris_and_their_uris_edited() {
    let mut app = loaded_app();
    app.show::<Clients>();
    press(&mut app, KeyCode::Char('c'));
    type_text(&mut app, "grafana authorization_code refresh_token https://grafana.example/login/generic_oauth");
    assert_eq!(
        press(&mut app, KeyCode::Enter),
        vec![Request::CreateClient {
            client_id: "grafana".into(),
            grants: vec!["authorization_code".into(), "refresh_token".into()],
            redirect_uris: vec!["https://grafana.example/login/generic_oauth".into()],
        }]
    );
    press(&mut app, KeyCode::Char('u'));
    type_text(&mut app, "https://a.example/cb http://127.0.0.1/native");
    assert_eq!(
        press(&mut app, KeyCode::Enter),
        vec![Request::SetClientRedirectUris {
            client_id: "latchkey-admin".into(),
            uris: vec!["https://a.example/cb".into(), "http://127.0.0.1/native".into()],
        }]
    );
}

#[test]
fn login_then_totp_when_required() {
    let mut app = App::new("http://127.0.0.1:8080", fixtures::now());
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
    assert!(retried.contains(&Request::Load(Load::Users { query: String::new(), page: 1 })), "{retried:?}");
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
    assert_eq!(hints, vec![("any key".to_string(), "close")]);
    press(&mut app, KeyCode::Char('x'));
    assert!(app.popup.is_none());
    let hints = app.key_hints();
    for key in app.screen::<Users>().unwrap().commands().iter().map(|h| h.text()) {
        assert!(hints.contains(&key), "{key:?} is in the bottom bar");
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

#[test]
fn enter_on_an_empty_password_says_why_nothing_was_sent() {
    let mut app = App::new("http://127.0.0.1:8080", fixtures::now());
    type_text(&mut app, "root");
    press(&mut app, KeyCode::Tab);
    assert!(press(&mut app, KeyCode::Enter).is_empty());
    let (kind, text) = app.status.clone().unwrap();
    assert_eq!(kind, StatusKind::Error);
    assert!(text.contains("password") && text.contains("nothing was sent"), "{text}");
    assert_eq!(app.login.field, 1, "the cursor stays on the password");
}

#[test]
fn requests_carry_their_page_search_and_filter() {
    let mut app = loaded_app();
    let mut users = fixtures::users();
    users.total = 120;
    app.apply(Action::Loaded(latchkey_admin::request::Loaded::Users(users)));
    press(&mut app, KeyCode::Char('/'));
    type_text(&mut app, "a");
    press(&mut app, KeyCode::Enter);
    assert_eq!(press(&mut app, KeyCode::PageDown), vec![Request::Load(Load::Users { query: "a".into(), page: 2 })]);
    assert_eq!(press(&mut app, KeyCode::Char('r')), vec![Request::Load(Load::Users { query: "a".into(), page: 2 })]);
    // v: the Sessions screen, filtered to alice, from its first page.
    let alice = "01a20862-0000-7000-8000-000000000001".to_string();
    assert_eq!(
        press(&mut app, KeyCode::Char('v')),
        vec![Request::Load(Load::Sessions { user_id: Some(alice), page: 1 })]
    );
    assert_eq!(app.current().title(), "Sessions");
}

#[test]
fn enter_opens_a_detail_that_esc_closes_and_late_answers_do_not_reopen() {
    let mut app = loaded_app();
    let alice = "01a20862-0000-7000-8000-000000000001".to_string();
    assert_eq!(press(&mut app, KeyCode::Enter), vec![Request::UserSessions { user_id: alice.clone() }]);
    assert!(matches!(&app.popup, Some(Popup::Detail(d)) if d.title == "User alice"));
    assert!(press(&mut app, KeyCode::Esc).is_empty());
    assert!(app.popup.is_none());
    assert!(!app.quit, "Esc closes the view, not the console");
    let sessions = fixtures::sessions();
    app.apply(Action::Loaded(latchkey_admin::request::Loaded::UserSessions {
        user_id: alice,
        sessions,
        passkeys: Vec::new(),
    }));
    assert!(app.popup.is_none(), "the sessions arrived after the view was closed");
}

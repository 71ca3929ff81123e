//! The main loop on a `TestBackend`: keys in, requests out (with their parameters),
//! results back in, drawn, and out on `q`.

use latchkey_admin::app::crossterm_keys::KeyCode;
use latchkey_admin::app::{Action, App, key};
use latchkey_admin::event_loop;
use latchkey_admin::request::{Load, Loaded, Request};
use latchkey_admin::ui::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokio::sync::mpsc;

use crate::fixtures;

#[tokio::test]
async fn keys_become_requests_and_results_are_drawn() {
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let mut app = App::new("http://127.0.0.1:8080", fixtures::now());
    let (tx, rx) = mpsc::unbounded_channel();
    for code in "root".chars().map(KeyCode::Char).chain([KeyCode::Tab]).chain("pw".chars().map(KeyCode::Char)) {
        tx.send(Action::Key(key(code))).unwrap();
    }
    tx.send(Action::Key(key(KeyCode::Enter))).unwrap();
    // The fake server: the test sees each request and answers it on the same channel as
    // the keys, so the order of results and keys is the test's.
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let execute = move |request: Request| {
        let _ = seen_tx.send(request);
        std::future::ready(Action::Redraw)
    };
    let server = {
        let tx = tx.clone();
        async move {
            assert_eq!(
                seen.recv().await,
                Some(Request::Login { username: "root".into(), password: "pw".into(), totp: None })
            );
            tx.send(Action::Loaded(Loaded::LoggedIn)).unwrap();
            assert_eq!(seen.recv().await, Some(Request::Load(Load::Users { query: String::new(), page: 1 })));
            tx.send(Action::Loaded(Loaded::Users(fixtures::users()))).unwrap();
            tx.send(Action::Key(key(KeyCode::Char('q')))).unwrap();
        }
    };
    let theme = Theme { color: false };
    let (result, ()) =
        tokio::join!(event_loop::run(&mut terminal, &mut app, theme, fixtures::now, (tx, rx), execute), server);
    result.unwrap();
    assert!(app.quit);
    let screen = terminal.backend().to_string();
    assert!(screen.contains("Users — 3 total") && screen.contains("alice"), "{screen}");
}

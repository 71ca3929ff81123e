//! The `latchkey-admin` binary: terminal set-up, the event loop, nothing else.

use std::io;
use std::time::Duration;

use clap::Parser;
use latchkey_admin::api::ApiClient;
use latchkey_admin::app::{Action, App, Request};
use latchkey_admin::runner::{self, View};
use latchkey_admin::ui::{self, Theme};
use ratatui::crossterm::event::{self, Event};
use tokio::sync::mpsc;

#[derive(Debug, Parser)]
#[command(name = "latchkey-admin", version, about = "Terminal admin console for Latchkey")]
struct Args {
    /// Base URL of the Latchkey server.
    #[arg(long, env = "LATCHKEY_ADMIN_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Pre-fill the login form's username.
    #[arg(long, env = "LATCHKEY_ADMIN_USER")]
    username: Option<String>,
}

fn view_of(app: &App, request: &Request) -> View {
    let screen = match request {
        Request::Load(screen) => *screen,
        _ => app.screen,
    };
    View {
        page: app.page_of(screen),
        user_query: app.user_query.clone(),
        session_user: app.session_user_filter.clone(),
        audit_action: app.audit_action_filter.clone(),
    }
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let args = Args::parse();
    let api = ApiClient::new(&args.server);
    let mut app = App::new(api.base());
    if let Some(username) = args.username {
        app.login.username = username;
        app.login.field = 1;
    }
    // ratatui::init also installs a panic hook that restores the terminal first.
    let mut terminal = ratatui::init();
    let result = run(&mut terminal, &mut app, api).await;
    ratatui::restore();
    result
}

async fn run(terminal: &mut ratatui::DefaultTerminal, app: &mut App, api: ApiClient) -> io::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Action>();
    // Terminal events come from a blocking reader thread; ticks from a timer.
    let keys = tx.clone();
    std::thread::spawn(move || {
        loop {
            match event::poll(Duration::from_millis(250)) {
                Ok(true) => match event::read() {
                    Ok(Event::Key(key)) => {
                        if keys.send(Action::Key(key)).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {
                        if keys.send(Action::Redraw).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                },
                Ok(false) => {
                    if keys.is_closed() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    let ticks = tx.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        loop {
            interval.tick().await;
            if ticks.send(Action::Tick).is_err() {
                return;
            }
        }
    });
    let theme = Theme::from_env();
    loop {
        terminal.draw(|frame| ui::draw(frame, app, theme))?;
        let Some(action) = rx.recv().await else { return Ok(()) };
        for request in app.apply(action) {
            let view = view_of(app, &request);
            let (api, tx) = (api.clone(), tx.clone());
            tokio::spawn(async move {
                let _ = tx.send(runner::run(&api, request, view).await);
            });
        }
        if app.quit {
            api.logout();
            return Ok(());
        }
    }
}

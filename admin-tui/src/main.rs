//! The `latchkey-admin` binary: terminal set-up and the sources of events (the key
//! reader thread, the one-second tick); the loop itself is [`event_loop::run`].

use std::io;
use std::time::Duration;

use clap::Parser;
use latchkey_admin::api::ApiClient;
use latchkey_admin::app::{Action, App};
use latchkey_admin::event_loop;
use latchkey_admin::request;
use latchkey_admin::ui::Theme;
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

fn now() -> chrono::DateTime<chrono::FixedOffset> {
    chrono::Local::now().fixed_offset()
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let args = Args::parse();
    let api = ApiClient::new(&args.server);
    let mut app = App::new(api.base(), now());
    if let Some(username) = args.username {
        app.login.username = username;
        app.login.field = 1;
    }
    let (tx, rx) = mpsc::unbounded_channel::<Action>();
    spawn_event_sources(&tx);
    // ratatui::init also installs a panic hook that restores the terminal first.
    let mut terminal = ratatui::init();
    let calls = api.clone();
    let execute = move |req| {
        let api = calls.clone();
        async move { request::run(&api, req).await }
    };
    let result = event_loop::run(&mut terminal, &mut app, Theme::from_env(), now, (tx, rx), execute).await;
    ratatui::restore();
    api.logout();
    result
}

/// Terminal events come from a blocking reader thread; ticks from a timer.
fn spawn_event_sources(tx: &mpsc::UnboundedSender<Action>) {
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
}

//! The main loop, generic over the terminal backend: draw, wait for the next action (a
//! key, a result, a tick), apply it, start the requests it asks for. The binary feeds it
//! crossterm events and runs requests against the API; tests feed it keys, a fake
//! executor and a `TestBackend`.

use std::future::Future;

use chrono::{DateTime, FixedOffset};
use ratatui::Terminal;
use ratatui::backend::Backend;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::app::{Action, App};
use crate::request::Request;
use crate::ui::{self, Theme};

/// Runs until the app quits. Each request runs in
/// its own task (`execute`) and its result comes back on `actions`, so key handling never
/// waits for the network. `clock` is read once per frame, never while drawing.
pub async fn run<B, E, F>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    theme: Theme,
    clock: impl Fn() -> DateTime<FixedOffset>,
    actions: (UnboundedSender<Action>, UnboundedReceiver<Action>),
    execute: E,
) -> Result<(), B::Error>
where
    B: Backend,
    E: Fn(Request) -> F,
    F: Future<Output = Action> + Send + 'static,
{
    let (tx, mut rx) = actions;
    loop {
        app.now = clock();
        terminal.draw(|frame| ui::draw(frame, app, theme))?;
        // The loop holds a sender itself, so the channel stays open until it returns.
        let Some(action) = rx.recv().await else { return Ok(()) };
        for request in app.apply(action) {
            let (call, tx) = (execute(request), tx.clone());
            tokio::spawn(async move {
                let _ = tx.send(call.await);
            });
        }
        if app.quit {
            return Ok(());
        }
    }
}

//! What a key press or a loaded result asks of the app: requests to run, a popup to
//! open, a line for the status bar, another screen to show. Screens and popups return an
//! [`Outcome`] instead of reaching into the app, so each stays in its own file.

use std::any::TypeId;

use crate::app::StatusKind;
use crate::components::detail::Detail;
use crate::popup::Popup;
use crate::request::Request;
use crate::screens::Screen;

#[derive(Debug, Default)]
pub struct Outcome {
    pub requests: Vec<Request>,
    pub popup: Option<Popup>,
    pub status: Option<(StatusKind, String)>,
    /// Switch to this screen, passing it an argument (Users → Sessions of one user).
    pub open: Option<(TypeId, String)>,
    /// New contents for a detail view, shown only if that same detail is still open: a
    /// late answer must not reopen a view the operator closed.
    pub detail: Option<Detail>,
    pub quit: bool,
}

impl Outcome {
    pub fn request(request: Request) -> Self {
        Self { requests: vec![request], ..Self::default() }
    }

    pub fn popup(popup: Popup) -> Self {
        Self { popup: Some(popup), ..Self::default() }
    }

    pub fn info(text: impl Into<String>) -> Self {
        Self { status: Some((StatusKind::Info, text.into())), ..Self::default() }
    }

    pub fn error(text: impl Into<String>) -> Self {
        Self { status: Some((StatusKind::Error, text.into())), ..Self::default() }
    }

    pub fn open<S: Screen>(arg: String) -> Self {
        Self { open: Some((TypeId::of::<S>(), arg)), ..Self::default() }
    }

    /// A confirm popup for a destructive request: nothing is sent until `y`.
    pub fn confirm(message: impl Into<String>, request: Request) -> Self {
        Self::popup(Popup::Confirm { message: message.into(), request })
    }
}

/// What an empty answer to a prompt that needs one says.
pub const NOTHING_ENTERED: &str = "Nothing entered; cancelled.";

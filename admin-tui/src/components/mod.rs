//! Reusable pieces the screens and the popup layer are built from. Each lists its own
//! commands, so the key bar and the help show exactly the keys it handles.
//!
//! - [`table`]: the list every screen draws, with selection and paging; [`list`]: the
//!   records a screen loaded, with the table over them.
//! - [`input`]: a one-line text prompt; [`confirm`]: the yes/no before destructive calls.
//! - [`picker`]: a checklist (a user's roles); [`detail`]: the full record behind a row.
//! - [`help`]: every command of the current screen; [`totp`]: the enrolment QR code.

pub mod confirm;
pub mod detail;
pub mod help;
pub mod input;
pub mod list;
pub mod picker;
pub mod table;
pub mod totp;

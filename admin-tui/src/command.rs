//! Key commands. Every context — a screen, the lists, the global keys, each popup, the
//! login form — has one table of [`Command`]s. Its key handler looks keys up in that
//! table ([`lookup`]) and the key bar and the `?` help draw the same table ([`Hint`]),
//! so a hint cannot disagree with what its key does (gitui's `commands()`).

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Which key presses trigger a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// Any of these keys. Shift is allowed: terminals report capitals and BackTab with it.
    Codes(&'static [KeyCode]),
    /// Control plus this letter.
    Ctrl(char),
    /// Any character without Control or Alt: typing into a field.
    Text,
    /// Any key at all.
    Any,
}

impl Keys {
    pub fn matches(self, key: &KeyEvent) -> bool {
        let plain = !key.modifiers.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
        match self {
            Keys::Codes(codes) => plain && codes.contains(&key.code),
            Keys::Ctrl(c) => key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char(c),
            Keys::Text => plain && matches!(key.code, KeyCode::Char(_)),
            Keys::Any => true,
        }
    }

    /// As the key bar and the help show it: `j/↓`, `1-6`, `Ctrl-C`.
    pub fn label(self) -> String {
        match self {
            Keys::Codes(codes) => digit_range(codes)
                .unwrap_or_else(|| codes.iter().map(|code| code_label(*code)).collect::<Vec<_>>().join("/")),
            Keys::Ctrl(c) => format!("Ctrl-{}", c.to_ascii_uppercase()),
            Keys::Text => "text".into(),
            Keys::Any => "any key".into(),
        }
    }
}

/// `1-6` rather than `1/2/3/4/5/6`: the screen numbers grow with the screens.
fn digit_range(codes: &[KeyCode]) -> Option<String> {
    let digits: Vec<char> = codes
        .iter()
        .map(|code| match code {
            KeyCode::Char(c) if c.is_ascii_digit() => Some(*c),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let consecutive = digits.windows(2).all(|w| u32::from(w[1]) == u32::from(w[0]) + 1);
    match (digits.first(), digits.last()) {
        (Some(first), Some(last)) if digits.len() >= 3 && consecutive => Some(format!("{first}-{last}")),
        _ => None,
    }
}

fn code_label(code: KeyCode) -> String {
    match code {
        KeyCode::Char(' ') => "Space".into(),
        KeyCode::Char(c) => c.to_string(),
        KeyCode::Up => "↑".into(),
        KeyCode::Down => "↓".into(),
        KeyCode::Left => "←".into(),
        KeyCode::Right => "→".into(),
        KeyCode::PageUp => "PgUp".into(),
        KeyCode::PageDown => "PgDn".into(),
        KeyCode::BackTab => "S-Tab".into(),
        KeyCode::Backspace => "Bksp".into(),
        KeyCode::F(n) => format!("F{n}"),
        other => format!("{other:?}"),
    }
}

/// One entry of a context's table: the keys, the words the bar and help show, and the
/// action its handler runs.
#[derive(Debug, Clone, Copy)]
pub struct Command<A> {
    pub keys: Keys,
    pub label: &'static str,
    pub action: A,
}

impl<A: Copy> Command<A> {
    /// The usual case: a fixed set of keys.
    pub const fn new(keys: &'static [KeyCode], label: &'static str, action: A) -> Self {
        Self { keys: Keys::Codes(keys), label, action }
    }

    pub fn hint(&self) -> Hint {
        Hint { keys: self.keys, label: self.label }
    }
}

/// A command without its action: what the bar and the help draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hint {
    pub keys: Keys,
    pub label: &'static str,
}

impl Hint {
    /// `(keys, label)` as drawn, e.g. `("j/↓", "down")`.
    pub fn text(&self) -> (String, &'static str) {
        (self.keys.label(), self.label)
    }
}

/// The action of the first command whose keys match.
pub fn lookup<A: Copy>(commands: &[Command<A>], key: &KeyEvent) -> Option<A> {
    commands.iter().find(|c| c.keys.matches(key)).map(|c| c.action)
}

pub fn hints<A: Copy>(commands: &[Command<A>]) -> Vec<Hint> {
    commands.iter().map(Command::hint).collect()
}

/// A table drawn on one line, for popups that show their keys inside them.
pub fn hint_line(hints: &[Hint]) -> String {
    hints.iter().map(|h| format!("{} {}", h.keys.label(), h.label)).collect::<Vec<_>>().join("   ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_as_the_keys() {
        static DIGITS: [KeyCode; 4] = [KeyCode::Char('1'), KeyCode::Char('2'), KeyCode::Char('3'), KeyCode::Char('4')];
        assert_eq!(Keys::Codes(&DIGITS).label(), "1-4");
        assert_eq!(Keys::Codes(&[KeyCode::Char('j'), KeyCode::Down]).label(), "j/↓");
        assert_eq!(Keys::Codes(&[KeyCode::Char('1'), KeyCode::Char('3')]).label(), "1/3");
        assert_eq!(Keys::Codes(&[KeyCode::Char('r'), KeyCode::F(5)]).label(), "r/F5");
        assert_eq!(Keys::Ctrl('c').label(), "Ctrl-C");
    }

    #[test]
    fn control_and_alt_are_not_plain_keys() {
        let ctrl_d = KeyEvent::new(KeyCode::Char('d'), KeyModifiers::CONTROL);
        assert!(!Keys::Codes(&[KeyCode::Char('d')]).matches(&ctrl_d));
        assert!(!Keys::Text.matches(&ctrl_d));
        assert!(Keys::Ctrl('d').matches(&ctrl_d));
        let shifted = KeyEvent::new(KeyCode::Char('X'), KeyModifiers::SHIFT);
        assert!(Keys::Codes(&[KeyCode::Char('X')]).matches(&shifted));
    }
}

//! Times as an operator reads them. Table cells get a compact form relative to a `now`
//! the caller passes in ("3m ago", "yesterday 14:02", "Nov 28 14:02"); detail views get
//! the full timestamp. Nothing here reads the clock, so snapshots are stable. Times are
//! shown in `now`'s offset: the binary passes local time, tests a fixed UTC instant.

use chrono::{DateTime, Datelike, FixedOffset};

/// At most 15 columns (`yesterday 14:02`); text that is not RFC 3339 comes back as is.
pub fn relative(text: &str, now: DateTime<FixedOffset>) -> String {
    let Ok(at) = DateTime::parse_from_rfc3339(text) else { return text.to_string() };
    let at = at.with_timezone(&now.timezone());
    let (day, today) = (at.date_naive(), now.date_naive());
    let clock = at.format("%H:%M");
    let seconds = (now - at).num_seconds();
    // Keys due to activate read forwards, on the same scale as the past.
    let past = seconds >= 0;
    let span = seconds.abs();
    let ago = |amount: String| if past { format!("{amount} ago") } else { format!("in {amount}") };
    let next_to_today = if past { today.pred_opt() } else { today.succ_opt() };
    match span {
        0..60 => return if past { "just now" } else { "in <1m" }.into(),
        60..3600 => return ago(format!("{}m", span / 60)),
        _ if day == today => return ago(format!("{}h", span / 3600)),
        _ if next_to_today == Some(day) => return format!("{} {clock}", if past { "yesterday" } else { "tomorrow" }),
        _ => {}
    }
    if at.year() == now.year() { at.format("%b %d %H:%M").to_string() } else { at.format("%Y-%m-%d").to_string() }
}

/// `2026-11-23 12:31:00 +00:00 (3m ago)`, in `now`'s offset.
pub fn full(text: &str, now: DateTime<FixedOffset>) -> String {
    match DateTime::parse_from_rfc3339(text) {
        Ok(at) => {
            let at = at.with_timezone(&now.timezone());
            format!("{} ({})", at.format("%Y-%m-%d %H:%M:%S %:z"), relative(text, now))
        }
        Err(_) => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2026-12-01T06:55:00+00:00").unwrap()
    }

    #[test]
    fn past_times_get_coarser_with_age() {
        let cases = [
            ("2026-12-01T06:54:30+00:00", "just now"),
            ("2026-12-01T06:52:00+00:00", "3m ago"),
            ("2026-12-01T04:40:00+00:00", "2h ago"),
            ("2026-11-30T14:02:00+00:00", "yesterday 14:02"),
            ("2026-11-28T14:02:00+00:00", "Nov 28 14:02"),
            ("2025-11-28T14:02:00+00:00", "2025-11-28"),
        ];
        for (at, shown) in cases {
            assert_eq!(relative(at, now()), shown, "{at}");
            assert!(shown.chars().count() <= 15);
        }
    }

    #[test]
    fn future_times_read_forwards() {
        assert_eq!(relative("2026-12-01T07:05:00+00:00", now()), "in 10m");
        assert_eq!(relative("2026-12-01T09:55:00+00:00", now()), "in 3h");
        assert_eq!(relative("2026-12-02T08:00:00+00:00", now()), "tomorrow 08:00");
        assert_eq!(relative("2026-12-24T08:00:00+00:00", now()), "Dec 24 08:00");
    }

    #[test]
    fn the_offset_of_now_is_the_one_shown() {
        let tokyo = DateTime::parse_from_rfc3339("2026-12-01T15:55:00+09:00").unwrap();
        assert_eq!(relative("2026-11-30T14:02:00+00:00", tokyo), "yesterday 23:02");
        assert_eq!(full("2026-11-30T14:02:00+00:00", tokyo), "2026-11-30 23:02:00 +09:00 (yesterday 23:02)");
        assert_eq!(relative("not a time", now()), "not a time");
    }
}

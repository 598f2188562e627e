//! Timestamps: microseconds since the Unix epoch, shown as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// A point in time with microsecond precision — the precision StackStorm shows — kept as an
/// integer so it sorts and stores cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        Timestamp(Utc::now().timestamp_micros())
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    /// Seconds from `self` to `later`, as a float (StackStorm's `elapsed_seconds`).
    pub fn seconds_until(self, later: Timestamp) -> f64 {
        (later.0 - self.0) as f64 / 1e6
    }

    /// `2024-06-04T12:00:14.123456Z`
    pub fn to_iso(self) -> String {
        match Utc.timestamp_micros(self.0) {
            chrono::LocalResult::Single(t) => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            _ => "1970-01-01T00:00:00.000000Z".to_string(),
        }
    }

    /// `Tue, 01 Dec 2026 21:47:34 UTC`: how `st2` shows times in its tables.
    pub fn to_display(self) -> String {
        match Utc.timestamp_micros(self.0) {
            chrono::LocalResult::Single(t) => t.format("%a, %d %b %Y %H:%M:%S UTC").to_string(),
            _ => "Thu, 01 Jan 1970 00:00:00 UTC".to_string(),
        }
    }

    /// Parses the formats StackStorm accepts in query strings:
    /// `YYYY-MM-DD[T ]hh:mm:ss[.ffffff](Z|+00|+0000|+00:00)`.
    pub fn parse_query(s: &str) -> Option<Timestamp> {
        let s = s.trim();
        let body = ["Z", "+00:00", "+0000", "+00"].iter().find_map(|suffix| s.strip_suffix(suffix))?;
        let body = body.replacen(' ', "T", 1);
        let naive = NaiveDateTime::parse_from_str(&body, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
        Some(Timestamp(DateTime::<Utc>::from_naive_utc_and_offset(naive, Utc).timestamp_micros()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_six_digits_and_z() {
        assert_eq!(Timestamp(1_717_502_414_123_456).to_iso(), "2024-06-04T12:00:14.123456Z");
        assert_eq!(Timestamp(1_717_502_414_000_000).to_iso(), "2024-06-04T12:00:14.000000Z");
    }

    #[test]
    fn parses_query_forms() {
        let want = Some(Timestamp(1_717_502_414_000_000));
        assert_eq!(Timestamp::parse_query("2024-06-04T12:00:14Z"), want);
        assert_eq!(Timestamp::parse_query("2024-06-04 12:00:14+00:00"), want);
        assert_eq!(Timestamp::parse_query("2024-06-04T12:00:14.000Z"), want);
        assert_eq!(Timestamp::parse_query("2024-06-04T12:00:14+0000"), want);
        assert_eq!(Timestamp::parse_query("2024-06-04T12:00:14"), None);
        assert_eq!(Timestamp::parse_query("yesterday"), None);
    }
}

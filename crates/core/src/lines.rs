//! Display lines: how an execution's records, of every stream and host, become numbered lines.
//!
//! One rule, used in two places: the log writer numbers each record by the line its first byte
//! lands on (stored with the record, so a reader can find line N without reading what comes
//! before it), and every line reader splits records by the same rule. A line ends at `\n`, or
//! where the stream or host changes while a line is unfinished (the next record cannot continue
//! another stream's line).

use crate::StreamKind;

/// The position of the next byte in the line numbering. Readers start one at a record's stored
/// line ([`LineCursor::at`]); the writer keeps one for the whole execution.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineCursor {
    /// The line the next byte lands on.
    next: u64,
    /// The stream and host of the unfinished line `next`, if it has begun.
    open: Option<(StreamKind, Option<String>)>,
}

impl LineCursor {
    /// A cursor at the start of line `line`.
    pub fn at(line: u64) -> LineCursor {
        LineCursor { next: line, open: None }
    }

    /// The line a record of `stream` and `host` begins on: an unfinished line of another
    /// stream or host is closed first.
    pub fn begin(&mut self, stream: StreamKind, host: Option<&str>) -> u64 {
        if let Some((open_stream, open_host)) = &self.open
            && (*open_stream != stream || open_host.as_deref() != host)
        {
            self.next += 1;
            self.open = None;
        }
        self.next
    }

    /// Moves past `data`, written by `stream` and `host` (after [`LineCursor::begin`]).
    pub fn consume(&mut self, stream: StreamKind, host: Option<&str>, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.next += memchr::memchr_iter(b'\n', data).count() as u64;
        self.open = (!data.ends_with(b"\n")).then(|| (stream, host.map(str::to_string)));
    }

    /// How many lines there are so far, the unfinished one included.
    pub fn lines(&self) -> u64 {
        self.next + u64::from(self.open.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(records: &[(StreamKind, Option<&str>, &str)]) -> (Vec<u64>, u64) {
        let mut cursor = LineCursor::default();
        let starts = records
            .iter()
            .map(|(stream, host, data)| {
                let line = cursor.begin(*stream, *host);
                cursor.consume(*stream, *host, data.as_bytes());
                line
            })
            .collect();
        (starts, cursor.lines())
    }

    #[test]
    fn lines_end_at_newlines_and_continue_across_records_of_one_stream() {
        use StreamKind::Stdout;
        let (starts, total) = number(&[(Stdout, None, "a\nb"), (Stdout, None, "c\n"), (Stdout, None, "d\ne\n")]);
        assert_eq!(starts, [0, 1, 2]);
        assert_eq!(total, 4);
    }

    #[test]
    fn a_change_of_stream_or_host_ends_an_unfinished_line() {
        use StreamKind::{Stderr, Stdout};
        let (starts, total) = number(&[
            (Stdout, None, "half"),
            (Stderr, None, "err\n"),
            (Stdout, Some("h1"), "x"),
            (Stdout, Some("h2"), "y"),
            (Stdout, Some("h2"), "z\n"),
        ]);
        assert_eq!(starts, [0, 1, 2, 3, 3]);
        assert_eq!(total, 4);
    }

    #[test]
    fn an_unfinished_last_line_counts_and_empty_data_changes_nothing() {
        let mut cursor = LineCursor::default();
        cursor.begin(StreamKind::Stdout, None);
        cursor.consume(StreamKind::Stdout, None, b"");
        assert_eq!(cursor.lines(), 0);
        cursor.consume(StreamKind::Stdout, None, b"one\ntwo");
        assert_eq!(cursor.lines(), 2);
        assert_eq!(LineCursor::at(7).lines(), 7);
    }
}

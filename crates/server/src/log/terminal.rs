//! Terminal escapes, in one place: a display line's bytes as a terminal would show them —
//! plain text plus styled runs — for the line reader, the search (which matches the text the
//! user sees, escapes ignored) and so for the web console, which never parses an escape itself.
//!
//! A line is one row of a terminal: `\r` returns to its start and what follows overwrites
//! (a progress bar shows its last state), `ESC[K` erases, SGR sets colours (16, 256 and
//! truecolor) and attributes, OSC 8 opens links (http and https only). Every line starts with
//! the default style, so any page of a log renders the same whatever was read before it.

use serde_json::{Map, Value, json};
use vte::{Params, Parser, Perform};

/// A colour: an index of the 256-colour palette, or truecolor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    Indexed(u8),
    Rgb(u8, u8, u8),
}

impl Color {
    fn json(self) -> Value {
        match self {
            Color::Indexed(i) => json!(i),
            Color::Rgb(r, g, b) => json!(format!("#{r:02x}{g:02x}{b:02x}")),
        }
    }
}

/// What a run of text looks like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Style {
    pub fg: Option<Color>,
    pub bg: Option<Color>,
    pub bold: bool,
    pub dim: bool,
    pub italic: bool,
    pub underline: bool,
    pub inverse: bool,
    /// The target of an OSC 8 hyperlink (http or https).
    pub link: Option<String>,
}

impl Style {
    /// The style as the web console reads it: only what differs from the default.
    pub fn json(&self) -> Value {
        let mut m = Map::new();
        if let Some(c) = self.fg {
            m.insert("fg".into(), c.json());
        }
        if let Some(c) = self.bg {
            m.insert("bg".into(), c.json());
        }
        for (key, on) in
            [("bold", self.bold), ("dim", self.dim), ("italic", self.italic), ("underline", self.underline), ("inverse", self.inverse)]
        {
            if on {
                m.insert(key.into(), Value::Bool(true));
            }
        }
        if let Some(link) = &self.link {
            m.insert("link".into(), Value::String(link.clone()));
        }
        Value::Object(m)
    }
}

/// A rendered line: its text and, when any of it is styled, the runs that cover it in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    /// `(length in UTF-16 code units, style)`: JavaScript slices `text` by these lengths.
    pub runs: Vec<(usize, Style)>,
}

/// Whether `bytes` can be shown as they are (no escape, no carriage return, no backspace).
pub fn is_plain(bytes: &[u8]) -> bool {
    memchr::memchr3(0x1b, b'\r', 0x08, bytes).is_none()
}

/// Renders one display line (without its `\n`).
pub fn render(bytes: &[u8]) -> Rendered {
    if is_plain(bytes) {
        return Rendered { text: String::from_utf8_lossy(bytes).into_owned(), runs: Vec::new() };
    }
    let mut row = Row::default();
    Parser::new().advance(&mut row, bytes);
    row.finish()
}

/// One terminal row being written.
#[derive(Default)]
struct Row {
    cells: Vec<(char, usize)>,
    styles: Vec<Style>,
    current: Style,
    cursor: usize,
}

impl Row {
    fn style_index(&mut self) -> usize {
        match self.styles.iter().position(|s| *s == self.current) {
            Some(i) => i,
            None => {
                self.styles.push(self.current.clone());
                self.styles.len() - 1
            }
        }
    }

    fn put(&mut self, c: char) {
        let style = self.style_index();
        while self.cells.len() < self.cursor {
            self.cells.push((' ', 0));
        }
        if self.cursor < self.cells.len() {
            self.cells[self.cursor] = (c, style);
        } else {
            self.cells.push((c, style));
        }
        self.cursor += 1;
    }

    fn finish(self) -> Rendered {
        let mut text = String::with_capacity(self.cells.len());
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (c, style) in &self.cells {
            text.push(*c);
            match runs.last_mut() {
                Some((len, s)) if s == style => *len += c.len_utf16(),
                _ => runs.push((c.len_utf16(), *style)),
            }
        }
        let styled = runs.iter().any(|(_, s)| self.styles.get(*s).is_some_and(|s| *s != Style::default()));
        let runs = if styled {
            runs.into_iter().map(|(len, s)| (len, self.styles.get(s).cloned().unwrap_or_default())).collect()
        } else {
            Vec::new()
        };
        Rendered { text, runs }
    }

    fn sgr(&mut self, params: &Params) {
        let mut values: Vec<u16> = Vec::new();
        let mut groups = Vec::new();
        for group in params.iter() {
            groups.push(group.to_vec());
            values.extend_from_slice(group);
        }
        if groups.is_empty() {
            self.current = Style { link: self.current.link.take(), ..Style::default() };
            return;
        }
        let mut i = 0;
        while i < groups.len() {
            let group = &groups[i];
            let code = group[0];
            // Extended colours: `38;5;n`, `38;2;r;g;b`, or the same with colons in one group.
            if matches!(code, 38 | 48 | 58) {
                let (colour, used) = if group.len() > 1 { (extended(&group[1..]), 1) } else { extended_from(&groups[i + 1..]) };
                match code {
                    38 => self.current.fg = colour.or(self.current.fg),
                    48 => self.current.bg = colour.or(self.current.bg),
                    _ => {}
                }
                i += used;
                continue;
            }
            self.simple_sgr(code);
            i += 1;
        }
    }

    fn simple_sgr(&mut self, code: u16) {
        let s = &mut self.current;
        match code {
            0 => *s = Style { link: s.link.take(), ..Style::default() },
            1 => s.bold = true,
            2 => s.dim = true,
            3 => s.italic = true,
            4 => s.underline = true,
            7 => s.inverse = true,
            21 | 22 => (s.bold, s.dim) = (false, false),
            23 => s.italic = false,
            24 => s.underline = false,
            27 => s.inverse = false,
            30..=37 => s.fg = Some(Color::Indexed((code - 30) as u8)),
            39 => s.fg = None,
            40..=47 => s.bg = Some(Color::Indexed((code - 40) as u8)),
            49 => s.bg = None,
            90..=97 => s.fg = Some(Color::Indexed((code - 90 + 8) as u8)),
            100..=107 => s.bg = Some(Color::Indexed((code - 100 + 8) as u8)),
            _ => {}
        }
    }
}

/// A colour from the sub-parameters after 38/48 (`5;n` or `2;r;g;b`).
fn extended(sub: &[u16]) -> Option<Color> {
    let byte = |v: u16| u8::try_from(v).ok();
    match sub {
        [5, n, ..] => byte(*n).map(Color::Indexed),
        // `38:2::r:g:b` carries a colour-space id before the components.
        [2, _, r, g, b, ..] if sub.len() >= 5 => Some(Color::Rgb(byte(*r)?, byte(*g)?, byte(*b)?)),
        [2, r, g, b] => Some(Color::Rgb(byte(*r)?, byte(*g)?, byte(*b)?)),
        _ => None,
    }
}

/// A colour from the parameters after 38/48 given with semicolons; returns how many groups
/// (38 itself included) it used.
fn extended_from(rest: &[Vec<u16>]) -> (Option<Color>, usize) {
    let first = |i: usize| rest.get(i).map(|g| g[0]);
    match first(0) {
        Some(5) => (first(1).and_then(|n| u8::try_from(n).ok()).map(Color::Indexed), 3),
        Some(2) => {
            let c = (first(1), first(2), first(3));
            let colour = match c {
                (Some(r), Some(g), Some(b)) => (|| Some(Color::Rgb(u8::try_from(r).ok()?, u8::try_from(g).ok()?, u8::try_from(b).ok()?)))(),
                _ => None,
            };
            (colour, 5)
        }
        _ => (None, 1),
    }
}

impl Perform for Row {
    fn print(&mut self, c: char) {
        self.put(c);
    }

    fn execute(&mut self, byte: u8) {
        match byte {
            b'\r' => self.cursor = 0,
            0x08 => self.cursor = self.cursor.saturating_sub(1),
            b'\t' => self.put('\t'),
            _ => {}
        }
    }

    fn csi_dispatch(&mut self, params: &Params, intermediates: &[u8], ignore: bool, action: char) {
        if ignore || !intermediates.is_empty() {
            return;
        }
        let n = params.iter().next().map_or(0, |g| g[0]) as usize;
        match action {
            'm' => self.sgr(params),
            'K' => match n {
                0 => self.cells.truncate(self.cursor),
                1 => self.cells.iter_mut().take(self.cursor + 1).for_each(|c| *c = (' ', 0)),
                _ => self.cells.clear(),
            },
            'C' => self.cursor += n.max(1),
            'D' => self.cursor = self.cursor.saturating_sub(n.max(1)),
            'G' => self.cursor = n.max(1) - 1,
            _ => {}
        }
    }

    fn osc_dispatch(&mut self, params: &[&[u8]], _bell_terminated: bool) {
        if let [b"8", _, uri, ..] = params {
            let uri = String::from_utf8_lossy(uri);
            self.current.link = (uri.starts_with("https://") || uri.starts_with("http://")).then(|| uri.into_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn styles(r: &Rendered) -> Vec<(usize, Value)> {
        r.runs.iter().map(|(len, s)| (*len, s.json())).collect()
    }

    #[test]
    fn plain_lines_pass_through_and_invalid_utf8_is_replaced() {
        assert_eq!(render(b"hello\tworld"), Rendered { text: "hello\tworld".into(), runs: vec![] });
        assert_eq!(render(b"a\xffb").text, "a\u{fffd}b");
    }

    #[test]
    fn carriage_returns_keep_the_last_state_of_a_progress_bar() {
        assert_eq!(render(b"10%\r20%\r100%").text, "100%");
        assert_eq!(render(b"downloading 10%\rdone\x1b[K").text, "done");
        assert_eq!(render(b"abc\r").text, "abc");
        assert_eq!(render(b"abcdef\rXY").text, "XYcdef");
    }

    #[test]
    fn sgr_colours_and_attributes_become_runs() {
        let r = render(b"\x1b[1;31mred\x1b[0m plain \x1b[38;5;208mo\x1b[38;2;1;2;3mt\x1b[48:2::9:8:7mb");
        assert_eq!(r.text, "red plain otb");
        assert_eq!(
            styles(&r),
            [
                (3, json!({"fg": 1, "bold": true})),
                (7, json!({})),
                (1, json!({"fg": 208})),
                (1, json!({"fg": "#010203"})),
                (1, json!({"fg": "#010203", "bg": "#090807"}))
            ]
        );
        let r = render(b"\x1b[92;44;4;3;7;2mx\x1b[22;23;24;27;39;49my");
        assert_eq!(
            styles(&r),
            [(1, json!({"fg": 10, "bg": 4, "dim": true, "italic": true, "underline": true, "inverse": true})), (1, json!({}))]
        );
    }

    #[test]
    fn osc8_links_only_for_http_and_https() {
        let r = render(b"\x1b]8;;https://example.com/a\x1b\\site\x1b]8;;\x1b\\ \x1b]8;;javascript:alert(1)\x07bad\x1b]8;;\x07");
        assert_eq!(r.text, "site bad");
        assert_eq!(styles(&r), [(4, json!({"link": "https://example.com/a"})), (4, json!({}))]);
    }

    #[test]
    fn run_lengths_count_utf16_units() {
        let r = render("\x1b[31m😀é\x1b[0mx".as_bytes());
        assert_eq!(r.runs.iter().map(|(len, _)| *len).collect::<Vec<_>>(), [3, 1]);
    }

    #[test]
    fn cursor_moves_and_erase_modes() {
        assert_eq!(render(b"abcdef\x1b[3D\x1b[K").text, "abc");
        assert_eq!(render(b"abcdef\x1b[3D\x1b[1K").text, "    ef");
        assert_eq!(render(b"abc\x1b[2Kx").text, "   x");
        assert_eq!(render(b"a\x1b[3Cb").text, "a   b");
        assert_eq!(render(b"abc\x1b[2Gx").text, "axc");
        assert_eq!(render(b"ab\x08c").text, "ac");
    }
}

//! Secret masking inside output: secret values are replaced by `********` before a record is
//! stored or sent, including a value that arrives split across reads.

use aho_corasick::{AhoCorasick, MatchKind};

/// What a masked value is replaced with.
pub const MASK: &[u8] = b"********";

/// Values shorter than this are not masked by default: masking a one- or two-character value
/// would shred ordinary output (every `a`, every `10`) while protecting nothing.
pub const DEFAULT_MIN_LENGTH: usize = 4;

/// A streaming masker for one stream of one execution. Bytes that could be the beginning of a
/// secret are held back until the next bytes show whether they are; everything else passes at
/// once.
pub struct Masker {
    matcher: Option<AhoCorasick>,
    secrets: Vec<Vec<u8>>,
    longest: usize,
    held: Vec<u8>,
}

impl Masker {
    /// A masker for `secrets`; values shorter than `min_length` (and duplicates) are ignored.
    pub fn new<I, S>(secrets: I, min_length: usize) -> Masker
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let mut values: Vec<Vec<u8>> = secrets.into_iter().map(|s| s.as_ref().to_vec()).filter(|s| s.len() >= min_length.max(1)).collect();
        values.sort();
        values.dedup();
        let matcher = (!values.is_empty())
            .then(|| AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&values).expect("literal patterns always build"));
        let longest = values.iter().map(Vec::len).max().unwrap_or(0);
        Masker { matcher, secrets: values, longest, held: Vec::new() }
    }

    /// True when there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// Masks `data` (continuing from earlier calls) and returns what can be released now.
    pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
        let Some(matcher) = &self.matcher else { return data.to_vec() };
        let mut input = std::mem::take(&mut self.held);
        input.extend_from_slice(data);
        let mut out = Vec::with_capacity(input.len());
        let mut last = 0;
        for m in matcher.find_iter(&input) {
            out.extend_from_slice(&input[last..m.start()]);
            out.extend_from_slice(MASK);
            last = m.end();
        }
        // Hold back the longest tail that is a proper prefix of some secret.
        let tail = &input[last..];
        let hold = (1..self.longest.min(tail.len() + 1))
            .rev()
            .find(|&n| self.secrets.iter().any(|s| s.len() > n && s.starts_with(&tail[tail.len() - n..])))
            .unwrap_or(0);
        out.extend_from_slice(&tail[..tail.len() - hold]);
        self.held = tail[tail.len() - hold..].to_vec();
        out
    }

    /// Releases what is held back (the stream ended, so it cannot become a secret).
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }

    /// Bytes currently held back.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

/// Whether an environment variable's name suggests its value is a secret.
pub fn secret_env_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["PASSWORD", "PASSWD", "SECRET", "TOKEN", "API_KEY", "APIKEY", "PRIVATE_KEY", "CREDENTIAL", "PASSPHRASE"]
        .iter()
        .any(|w| upper.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(m: &mut Masker, pieces: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in pieces {
            out.extend(m.push(p));
        }
        out.extend(m.finish());
        out
    }

    #[test]
    fn masks_whole_and_split_values() {
        let mut m = Masker::new(["hunter2", "s3cr3t-token"], 4);
        assert_eq!(run(&mut m, &[b"pw=hunter2 ok"]), b"pw=******** ok");
        let bytes: Vec<&[u8]> = b"x hunter2 y".chunks(1).collect();
        assert_eq!(run(&mut m, &bytes), b"x ******** y");
        assert_eq!(run(&mut m, &[b"s3cr3t-", b"tok", b"en!"]), b"********!");
        assert_eq!(run(&mut m, &[b"hunt", b"er"]), b"hunter", "a prefix that never completes is released at the end");
    }

    #[test]
    fn only_possible_prefixes_are_held() {
        let mut m = Masker::new(["hunter2"], 4);
        assert_eq!(m.push(b"line one\n"), b"line one\n");
        assert_eq!(m.push(b"abc hu"), b"abc ");
        assert_eq!(m.held(), 2);
        assert_eq!(m.push(b"g"), b"hug");
    }

    #[test]
    fn short_values_are_not_masked() {
        let mut m = Masker::new(["ab", "abcd"], 4);
        assert_eq!(run(&mut m, &[b"ab abcd"]), b"ab ********");
        assert!(Masker::new(["x"], 4).is_empty());
    }

    #[test]
    fn secret_names() {
        assert!(secret_env_name("DB_PASSWORD") && secret_env_name("github_token") && !secret_env_name("PATH"));
    }
}

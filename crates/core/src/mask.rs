//! Secret masking inside output: secret values are replaced by `********` before a record is
//! stored or sent, including a value that arrives split across reads.
//!
//! The output is exactly what masking the whole stream at once would give: leftmost-longest
//! matches, non-overlapping, each replaced by [`MASK`]. To stream that, a push releases
//! everything up to the earliest position from which the bytes so far could still grow into a
//! secret (the longest suffix, after the last settled match, that is a proper prefix of some
//! secret), and holds the rest back until the next push or [`Masker::finish`].

use std::collections::HashSet;

use aho_corasick::{AhoCorasick, Input, MatchKind};
use bytes::Bytes;

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
    prefixes: Prefixes,
    held: Vec<u8>,
}

/// What one push releases.
enum Release {
    /// The first `n` bytes of the pushed data, unchanged: nothing was held from before and
    /// nothing matched.
    Prefix(usize),
    /// New bytes.
    Masked(Vec<u8>),
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
        Masker { matcher, prefixes: Prefixes::new(values), held: Vec::new() }
    }

    /// True when there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// Masks `data` (continuing from earlier calls) and returns what can be released now.
    pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
        match self.step(data) {
            Release::Prefix(n) => data[..n].to_vec(),
            Release::Masked(out) => out,
        }
    }

    /// [`Masker::push`] for `Bytes`: when nothing was held from before and nothing matched, the
    /// result is `data` itself (or its first part, when a possible secret prefix at its end is
    /// held back), without copying.
    pub fn push_bytes(&mut self, data: Bytes) -> Bytes {
        match self.step(&data) {
            Release::Prefix(n) => {
                let mut data = data;
                data.truncate(n);
                data
            }
            Release::Masked(out) => out.into(),
        }
    }

    /// Releases what is held back (the stream ended, so it cannot grow into a secret any more;
    /// a complete secret inside it is still masked).
    pub fn finish(&mut self) -> Vec<u8> {
        let held = std::mem::take(&mut self.held);
        match &self.matcher {
            Some(matcher) if !held.is_empty() => {
                let mut out = Vec::with_capacity(held.len());
                let mut last = 0;
                for m in matcher.find_iter(&held) {
                    out.extend_from_slice(&held[last..m.start()]);
                    out.extend_from_slice(MASK);
                    last = m.end();
                }
                out.extend_from_slice(&held[last..]);
                out
            }
            _ => held,
        }
    }

    /// Bytes currently held back.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The shared core of `push` and `push_bytes`.
    fn step(&mut self, data: &[u8]) -> Release {
        let Some(matcher) = &self.matcher else { return Release::Prefix(data.len()) };
        let joined;
        let from_held = !self.held.is_empty();
        let input: &[u8] = if from_held {
            let mut held = std::mem::take(&mut self.held);
            held.extend_from_slice(data);
            joined = held;
            &joined
        } else {
            data
        };
        let len = input.len();
        // A match that starts before this is settled whatever comes next: no secret is long
        // enough to begin before it and still be unfinished at the end of `input`.
        let settled_below = len.saturating_sub(self.prefixes.longest.saturating_sub(1));
        let mut out: Option<Vec<u8>> = None;
        let mut from = 0;
        let hold_at = loop {
            let Some(m) = matcher.find(Input::new(input).span(from..len)) else { break self.prefixes.hold_start(input, from) };
            if m.start() >= settled_below {
                // Near the end: if an unfinished secret could begin at or before this match, the
                // match is not settled (a longer or earlier one may win), so hold it back too.
                let hold = self.prefixes.hold_start(input, from);
                if m.start() >= hold {
                    break hold;
                }
            }
            let out = out.get_or_insert_with(|| Vec::with_capacity(len));
            out.extend_from_slice(&input[from..m.start()]);
            out.extend_from_slice(MASK);
            from = m.end();
        };
        self.held = input[hold_at..].to_vec();
        match out {
            None if !from_held => Release::Prefix(hold_at),
            None => Release::Masked(input[..hold_at].to_vec()),
            Some(mut out) => {
                out.extend_from_slice(&input[from..hold_at]);
                Release::Masked(out)
            }
        }
    }
}

/// The secrets, indexed for "is this a proper prefix of some secret?".
struct Prefixes {
    /// Sorted and deduplicated, so that the secrets starting with any given bytes are
    /// contiguous.
    secrets: Vec<Vec<u8>>,
    longest: usize,
    /// [`key`] of every proper prefix of every secret. A hit can be a hash collision and is
    /// confirmed against `secrets`; a miss is certain.
    keys: HashSet<u64>,
}

/// Base of the polynomial hash: `hash(b0 b1 … bk-1) = Σ bi·P^(k-1-i)` (wrapping), which can be
/// extended by one byte at either end in O(1).
const P: u64 = 0xa076_1d64_78bd_642f;

fn key(hash: u64, len: usize) -> u64 {
    hash ^ (len as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl Prefixes {
    fn new(secrets: Vec<Vec<u8>>) -> Prefixes {
        let mut keys = HashSet::new();
        for s in &secrets {
            let mut hash = 0u64;
            for (i, &b) in s[..s.len() - 1].iter().enumerate() {
                hash = hash.wrapping_mul(P).wrapping_add(u64::from(b));
                keys.insert(key(hash, i + 1));
            }
        }
        let longest = secrets.iter().map(Vec::len).max().unwrap_or(0);
        Prefixes { secrets, longest, keys }
    }

    /// Whether some secret is longer than `t` and starts with it.
    fn is_proper_prefix(&self, t: &[u8]) -> bool {
        let mut i = self.secrets.partition_point(|s| s.as_slice() < t);
        if self.secrets.get(i).is_some_and(|s| s == t) {
            i += 1;
        }
        self.secrets.get(i).is_some_and(|s| s.starts_with(t))
    }

    /// Where the tail to hold back of `input[from..]` starts: at its longest suffix that is a
    /// proper prefix of some secret, or at `input.len()` when there is none. O(longest), plus
    /// one confirmation.
    fn hold_start(&self, input: &[u8], from: usize) -> usize {
        let len = input.len();
        let lowest = from.max(len.saturating_sub(self.longest.saturating_sub(1)));
        let (mut hash, mut pow, mut earliest) = (0u64, 1u64, len);
        for s in (lowest..len).rev() {
            hash = hash.wrapping_add(u64::from(input[s]).wrapping_mul(pow));
            pow = pow.wrapping_mul(P);
            if self.keys.contains(&key(hash, len - s)) {
                earliest = s;
            }
        }
        if earliest == len || self.is_proper_prefix(&input[earliest..]) {
            return earliest;
        }
        // A hash collision (practically never): check the shorter suffixes directly.
        (earliest + 1..len).find(|&s| self.is_proper_prefix(&input[s..])).unwrap_or(len)
    }
}

/// The forms in which a secret reaches output without being printed as itself, as actions leak
/// them in practice: inside base64 (`echo $TOKEN | base64`, basic-auth headers; standard and
/// URL-safe alphabets, at each of the three byte alignments it can have inside a longer encoded
/// text), JSON-escaped (`serde_json` and Python's `json.dumps`, which escapes non-ASCII as
/// `\uXXXX`), and percent-encoded (RFC 3986 strict, with `+` for space as in forms, and with `/`
/// kept as Python's `quote` does). Forms equal to the secret itself are left out. Masking them
/// all keeps [`Masker`]'s guarantees: each form is just one more value to mask.
pub fn encoded_forms(secret: &str) -> Vec<String> {
    let mut forms = base64_fragments(secret.as_bytes());
    let json = serde_json::to_string(secret).expect("a string always serialises");
    let json = &json[1..json.len() - 1];
    forms.push(json.to_string());
    forms.push(ascii_json(json));
    for (space_as_plus, keep_slash) in [(false, false), (true, false), (false, true)] {
        forms.push(percent_encoded(secret.as_bytes(), space_as_plus, keep_slash));
    }
    forms.retain(|f| f != secret && !f.is_empty());
    forms.sort();
    forms.dedup();
    forms
}

/// The base64 characters that depend on the secret's bytes alone, for each alignment of its
/// first byte in a 3-byte group: whatever surrounds the secret, its encoding contains one of
/// them.
fn base64_fragments(secret: &[u8]) -> Vec<String> {
    use base64::Engine;
    let mut fragments = Vec::new();
    for align in 0..3 {
        let mut shifted = vec![0u8; align];
        shifted.extend_from_slice(secret);
        let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&shifted);
        // Character j encodes bits 6j..6j+6; the secret's bits are 8·align..8·(align + len).
        let (first, end) = ((8 * align).div_ceil(6), 8 * (align + secret.len()) / 6);
        if end > first {
            let standard = encoded[first..end].to_string();
            let url_safe = standard.replace('+', "-").replace('/', "_");
            fragments.extend([standard, url_safe]);
        }
    }
    fragments
}

/// `json` (already escaped by `serde_json`) with every non-ASCII character as `\uXXXX` (UTF-16,
/// lower-case hex), as Python's `json.dumps` writes it.
fn ascii_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut [0; 2]) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// Percent-encoding: every byte but RFC 3986's unreserved ones (and `/`, with `keep_slash`) as
/// `%XX`; a space as `+` with `space_as_plus`.
fn percent_encoded(secret: &[u8], space_as_plus: bool, keep_slash: bool) -> String {
    let mut out = String::with_capacity(secret.len() * 3);
    for &b in secret {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(char::from(b)),
            b'/' if keep_slash => out.push('/'),
            b' ' if space_as_plus => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
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
    fn a_secret_split_across_two_and_three_chunks() {
        let mut m = Masker::new(["s3cr3t-token-42"], 4);
        assert_eq!(m.push(b"pw=s3cr3t-"), b"pw=");
        assert_eq!(m.held(), 7);
        assert_eq!(m.push(b"token-42 ok"), b"******** ok");
        assert_eq!(m.held(), 0);

        assert_eq!(m.push(b"pw=s3c"), b"pw=");
        assert_eq!(m.push(b"r3t-tok"), b"");
        assert_eq!(m.held(), 10);
        assert_eq!(m.push(b"en-42\n"), b"********\n");
        assert_eq!(m.finish(), b"");
    }

    #[test]
    fn overlapping_secrets_mask_the_longest() {
        // One secret is a prefix of another: a chunk ending right after the shorter one must not
        // settle on it while the longer one may still follow.
        let mut m = Masker::new(["abcd", "abcdefgh"], 4);
        assert_eq!(m.push(b"xabcdef"), b"x");
        assert_eq!(m.push(b"gh y"), b"******** y");
        assert_eq!(run(&mut m, &[b"xabcd", b"efz"]), b"x********efz");
        assert_eq!(run(&mut m, &[b"xabcdef"]), b"x********ef", "a complete secret still held at the end is masked");
        // A shorter secret inside a longer one that may be on its way.
        let mut m = Masker::new(["abcdefgh", "bcde"], 4);
        assert_eq!(run(&mut m, &[b"abcd", b"efgh"]), b"********");
        assert_eq!(run(&mut m, &[b"abcd", b"exx"]), b"a********xx");
    }

    #[test]
    fn a_held_prefix_that_is_not_a_secret_is_released() {
        let mut m = Masker::new(["hunter2"], 4);
        assert_eq!(m.push(b"pass hunt"), b"pass ");
        assert_eq!(m.held(), 4);
        assert_eq!(m.push(b"ing season"), b"hunting season");
        assert_eq!(m.held(), 0);
        assert_eq!(run(&mut m, &[b"hunte", b"hunter2"]), b"hunte********", "a failed prefix followed by the secret");
    }

    #[test]
    fn push_bytes_does_not_copy_when_nothing_matches() {
        let mut m = Masker::new(["hunter2"], 4);
        let data = Bytes::from(b"nothing to see here\n".to_vec());
        let out = m.push_bytes(data.clone());
        assert_eq!(out, data);
        assert_eq!(out.as_ptr(), data.as_ptr());

        // A possible prefix at the end is held back; what is released is still the input's memory.
        let data = Bytes::from(b"still nothing, hun".to_vec());
        let out = m.push_bytes(data.clone());
        assert_eq!(out, &b"still nothing, "[..]);
        assert_eq!(out.as_ptr(), data.as_ptr());
        assert_eq!(m.push_bytes(Bytes::from_static(b"ter2!")), &b"********!"[..]);

        let mut none = Masker::new(Vec::<String>::new(), 4);
        let data = Bytes::from(b"hunter2".to_vec());
        assert_eq!(none.push_bytes(data.clone()).as_ptr(), data.as_ptr());
    }

    /// Masks `input` all at once: at each position the longest secret starting there, if any.
    fn reference(secrets: &[&[u8]], min_length: usize, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < input.len() {
            let longest = secrets.iter().filter(|s| s.len() >= min_length && input[i..].starts_with(s)).map(|s| s.len()).max();
            match longest {
                Some(n) => {
                    out.extend_from_slice(MASK);
                    i += n;
                }
                None => {
                    out.push(input[i]);
                    i += 1;
                }
            }
        }
        out
    }

    struct XorShift(u64);

    impl XorShift {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// Feeds `input` cut at `cuts` through `push` and `push_bytes` side by side.
    fn streamed(secrets: &[&[u8]], min_length: usize, input: &[u8], cuts: &[usize]) -> Vec<u8> {
        let longest = secrets.iter().map(|s| s.len()).max().unwrap_or(0);
        let (mut a, mut b) = (Masker::new(secrets, min_length), Masker::new(secrets, min_length));
        let mut out = Vec::new();
        let mut start = 0;
        for &end in cuts.iter().chain([&input.len()]) {
            let piece = &input[start..end];
            let released = a.push(piece);
            assert_eq!(b.push_bytes(Bytes::copy_from_slice(piece)), released, "push and push_bytes agree");
            assert!(a.held() < longest.max(1), "never holds a whole secret's length");
            out.extend(released);
            start = end;
        }
        let rest = a.finish();
        assert_eq!(b.finish(), rest);
        out.extend(rest);
        out
    }

    #[test]
    fn streaming_equals_masking_the_whole_input_at_once() {
        let secrets: &[&[u8]] = &[b"abcd", b"abcdefgh", b"bcdx", b"cdab", b"xyzw", b"xyzwxyzw", b"aaaa", b"aaaaab", b"ab", b"dxyz"];
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let mut inputs: Vec<Vec<u8>> = vec![
            b"abcdefgh".to_vec(),
            b"abcdefgxabcdxyzwxyzwxyz".to_vec(),
            b"aaaaaaaabaaaab aaaa".to_vec(),
            b"zabcdabcdxyzwxyzwabcdefgh!".to_vec(),
            b"no secrets here at all".to_vec(),
        ];
        // Pieces of secrets glued together, so that matches overlap, nest and get cut short.
        for _ in 0..15 {
            let mut input = Vec::new();
            while input.len() < 28 {
                let s = secrets[rng.below(secrets.len())];
                match rng.below(4) {
                    0 => input.push(b"abcdxyz-"[rng.below(8)]),
                    1 => input.extend_from_slice(&s[..1 + rng.below(s.len())]),
                    _ => input.extend_from_slice(s),
                }
            }
            inputs.push(input);
        }
        for min_length in [1, 4, 5] {
            for input in &inputs {
                let expected = reference(secrets, min_length, input);
                let n = input.len();
                let mut chunkings: Vec<Vec<usize>> = vec![vec![]];
                for size in 1..=n {
                    chunkings.push((1..n.div_ceil(size)).map(|i| i * size).collect());
                }
                for i in 0..=n {
                    for j in i..=n {
                        chunkings.push(vec![i, j]);
                    }
                }
                for _ in 0..60 {
                    let mut cuts = Vec::new();
                    let mut at = 0;
                    while at < n {
                        at = (at + rng.below(7)).min(n); // empty pieces too
                        cuts.push(at);
                    }
                    chunkings.push(cuts);
                }
                for cuts in &chunkings {
                    let got = streamed(secrets, min_length, input, cuts);
                    assert_eq!(
                        String::from_utf8_lossy(&got),
                        String::from_utf8_lossy(&expected),
                        "input {:?}, cuts {cuts:?}, min_length {min_length}",
                        String::from_utf8_lossy(input)
                    );
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Any secret set over a four-letter alphabet (so that secrets overlap, nest and share
        /// prefixes), any input over it, any cut into writes (empty and one-byte writes included):
        /// the output is the whole-input reference, no secret survives in it, and what is held
        /// back is always shorter than the longest secret.
        #[test]
        fn any_split_of_any_input_masks_like_the_whole_input(
            secrets in proptest::collection::vec(proptest::collection::vec(b'a'..=b'd', 1..7), 1..6),
            input in proptest::collection::vec(b'a'..=b'e', 0..80),
            steps in proptest::collection::vec(0usize..9, 0..40),
            min_length in 1usize..4,
        ) {
            let secrets: Vec<&[u8]> = secrets.iter().map(|s| s.as_slice()).collect();
            let mut cuts = Vec::new();
            let mut at = 0;
            for step in steps {
                at = (at + step).min(input.len());
                cuts.push(at);
            }
            let got = streamed(&secrets, min_length, &input, &cuts);
            proptest::prop_assert_eq!(&got, &reference(&secrets, min_length, &input));
            for s in secrets.iter().filter(|s| s.len() >= min_length) {
                proptest::prop_assert!(!got.windows(s.len()).any(|w| w == *s), "secret {:?} in the output", s);
            }
        }
    }

    /// Masks `text` with `secret` and all its encoded forms, in one write.
    fn masked_with_forms(secret: &str, text: &[u8]) -> Vec<u8> {
        let mut values = encoded_forms(secret);
        values.push(secret.to_string());
        run(&mut Masker::new(&values, 1), &[text])
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        /// Wherever a secret sits inside base64-encoded text, standard or URL-safe, the
        /// characters that encode only the secret's bits (all but the partial ones at either
        /// end) do not survive masking.
        #[test]
        fn a_secret_inside_base64_is_masked_at_any_alignment(
            secret in "\\PC{2,30}",
            before in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..7),
            after in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..7),
            url_safe in proptest::prelude::any::<bool>(),
        ) {
            use base64::Engine;
            let engine = if url_safe { base64::engine::general_purpose::URL_SAFE } else { base64::engine::general_purpose::STANDARD };
            let whole = engine.encode([before.as_slice(), secret.as_bytes(), &after].concat()).into_bytes();
            let masked = masked_with_forms(&secret, &whole);
            let (first, end) = ((8 * before.len()).div_ceil(6), 8 * (before.len() + secret.len()) / 6);
            let run = &whole[first..end];
            proptest::prop_assert!(masked.windows(MASK.len()).any(|w| w == MASK), "nothing masked in {:?}", String::from_utf8_lossy(&masked));
            proptest::prop_assert!(!masked.windows(run.len()).any(|w| w == run), "{:?} survives in {:?}", String::from_utf8_lossy(run), String::from_utf8_lossy(&masked));
        }
    }

    #[test]
    fn json_and_url_escaped_secrets_are_masked() {
        let secret = "p\u{e4}\"s s/w\\rd\n";
        let cases = [
            // serde_json, and Python's json.dumps (non-ASCII as \uXXXX)
            serde_json::json!({"pw": secret}).to_string(),
            r#"{"pw": "p\u00e4\"s s/w\\rd\n"}"#.to_string(),
            // percent-encoded: strict, form (+ for space), and Python's quote (keeps /)
            "https://h/?pw=p%C3%A4%22s%20s%2Fw%5Crd%0A".to_string(),
            "pw=p%C3%A4%22s+s%2Fw%5Crd%0A&x=1".to_string(),
            "/login/p%C3%A4%22s%20s/w%5Crd%0A".to_string(),
        ];
        for text in cases {
            let masked = String::from_utf8(masked_with_forms(secret, text.as_bytes())).unwrap();
            assert!(
                masked.contains("********") && !masked.contains("s%2Fw") && !masked.contains("s s/w") && !masked.contains("s+s"),
                "{text} → {masked}"
            );
        }
        // A secret that no escaping changes has only its base64 forms, one per alignment at
        // least (the URL-safe ones are the same when no `+` or `/` appears).
        let forms = encoded_forms("Tr0ub4dor");
        assert!(
            (3..=6).contains(&forms.len()) && forms.iter().all(|f| f.chars().all(|c| c.is_ascii_alphanumeric() || "+/-_".contains(c))),
            "{forms:?}"
        );
    }

    #[test]
    fn secret_names() {
        assert!(secret_env_name("DB_PASSWORD") && secret_env_name("github_token") && !secret_env_name("PATH"));
    }
}

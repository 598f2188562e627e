//! The streaming masker (`squall_core::mask::Masker`) against masking the whole input at once.
//!
//! Input: a byte giving the minimum secret length (1–4) and a byte seeding the cut into writes,
//! then secrets separated by 0xFE, a 0xFF, and the input. Properties: for this cut into writes
//! (empty and one-byte writes included), the output equals one write of the whole input; no
//! secret of at least the minimum length, and without the mask's own `*`, survives in it; what
//! is held back between writes is shorter than the longest secret.

use squall_core::mask::Masker;

pub fn body(data: &[u8]) {
    let [min_length, seed, rest @ ..] = data else { return };
    let min_length = usize::from(min_length % 4) + 1;
    let (secrets, input) = crate::split_at_byte(rest, 0xFF);
    let input = input.unwrap_or_default();
    let secrets: Vec<&[u8]> = secrets.split(|&b| b == 0xFE).filter(|s| !s.is_empty()).take(8).collect();
    let longest = secrets.iter().map(|s| s.len()).max().unwrap_or(0);

    let mut whole = Masker::new(&secrets, min_length);
    let mut reference = whole.push(input);
    reference.extend(whole.finish());

    let mut streaming = Masker::new(&secrets, min_length);
    let mut got = Vec::new();
    let mut state = u32::from(*seed) | 0x100;
    let mut at = 0;
    while at < input.len() {
        // xorshift: writes of 0–8 bytes.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let end = (at + (state % 9) as usize).min(input.len());
        got.extend(streaming.push(&input[at..end]));
        assert!(streaming.held() < longest.max(1), "{} bytes held back, longest secret {longest}", streaming.held());
        at = end;
    }
    got.extend(streaming.finish());
    assert_eq!(got, reference, "streamed output differs from the whole-input masking");
    for s in secrets.iter().filter(|s| s.len() >= min_length && !s.contains(&b'*')) {
        assert!(!got.windows(s.len()).any(|w| w == *s), "secret {s:?} in the output");
    }
}

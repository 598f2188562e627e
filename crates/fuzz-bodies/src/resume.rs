//! The output streams' resume point: the `Last-Event-ID` header and `?after=`
//! (`squall_server::query::resume`).
//!
//! Input: a flags byte (bit 0: a header is sent, bit 1: `after` is given), then the header's
//! bytes, a NUL, and `after`'s value. Properties: no panic; a refusal is a 400; whatever
//! resumes after `seq`, formatted as the id of an SSE event and sent back, resumes after the
//! same `seq`.

use std::collections::HashMap;

use axum::http::{HeaderValue, StatusCode};
use squall_server::query::{self, Params, Resume};

pub fn body(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else { return };
    let (header, after) = crate::split_at_byte(rest, 0);
    let header = (flags & 1 == 1).then(|| HeaderValue::from_bytes(header).ok()).flatten();
    let after = (flags & 2 == 2).then(|| String::from_utf8_lossy(after.unwrap_or_default()).into_owned());
    match query::resume(header.as_ref(), &params(after)) {
        Ok(Resume::After(seq)) => formatted_resumes(seq),
        Ok(Resume::Latest) => {}
        Err(e) => assert_eq!(e.status, StatusCode::BAD_REQUEST, "a resume point was refused with {}: {}", e.status, e.faultstring),
    }
    if let Some(bytes) = rest.get(..8) {
        formatted_resumes(u64::from_le_bytes(bytes.try_into().expect("eight bytes")));
    }
}

/// `seq` sent back as `Last-Event-ID` (any `seq`) and as `?after=` (those a query integer
/// holds) resumes after `seq`.
fn formatted_resumes(seq: u64) {
    let id = HeaderValue::from_str(&seq.to_string()).expect("digits are a header value");
    let resumed = query::resume(Some(&id), &params(None)).map_err(|e| e.faultstring);
    assert_eq!(resumed, Ok(Resume::After(seq)), "Last-Event-ID: {seq}");
    if i64::try_from(seq).is_ok() {
        let resumed = query::resume(None, &params(Some(seq.to_string()))).map_err(|e| e.faultstring);
        assert_eq!(resumed, Ok(Resume::After(seq)), "?after={seq}");
    }
}

fn params(after: Option<String>) -> Params {
    Params(HashMap::from_iter(after.map(|a| ("after".to_string(), a))))
}

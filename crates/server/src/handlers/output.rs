//! `GET /executions/{id}/output`: the stored output as plain text. It never blocks: it returns
//! what is stored when the request arrives, paged from the store so memory stays bounded
//! whatever the log's size.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use squall_core::StreamKind;
use squall_core::output::{RecordFilter, StreamFilter};
use squall_store::Store;

use super::executions::find_for;
use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiResult;
use crate::query::Params;

/// Records read from the store per page (each at most 1 MiB; a page also stops at
/// `squall_store::PAGE_BYTES`).
pub const PAGE: u32 = 16;

pub async fn plain(State(state): State<Arc<AppState>>, Path(id): Path<String>, params: Params, caller: Principal) -> ApiResult<Response> {
    let e = find_for(&state, &id, &caller, "execution_view").await?;
    let filter = params.record_filter();
    let upto = state.store.last_seq(&e.id).await?;
    let body = stored_bytes(Arc::clone(&state.store), e.id, filter, 0, upto);
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], Body::from_stream(body)).into_response())
}

/// The raw bytes of records `after < seq <= upto` matching `filter`, page by page.
pub fn stored_bytes(
    store: Arc<dyn Store>,
    id: String,
    filter: RecordFilter,
    after: u64,
    upto: u64,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::unfold(Some(after), move |cursor| {
        let (store, id, filter) = (Arc::clone(&store), id.clone(), filter.clone());
        async move {
            let after = cursor?;
            if after >= upto {
                return None;
            }
            match store.read_output(&id, after, filter.streams, PAGE).await {
                Ok(page) if page.is_empty() => None,
                Ok(page) => {
                    let last = page.last().map_or(upto, |r| r.seq);
                    let mut bytes = Vec::with_capacity(page.iter().map(|r| r.data.len()).sum());
                    for r in page.iter().filter(|r| r.seq <= upto && filter.matches(r)) {
                        bytes.extend_from_slice(&r.data);
                    }
                    Some((Ok(Bytes::from(bytes)), Some(last)))
                }
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    })
    .filter(|chunk| futures::future::ready(!matches!(chunk, Ok(b) if b.is_empty())))
}

/// One byte range of a `Range: bytes=…` header (several ranges are answered in full, as RFC 9110
/// allows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `a-b` or `a-`.
    From(u64, Option<u64>),
    /// `-n`: the last n bytes.
    Last(u64),
}

impl ByteRange {
    pub fn parse(header: &str) -> Option<ByteRange> {
        let spec = header.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (a, b) = spec.split_once('-')?;
        match (a.trim(), b.trim()) {
            ("", n) => n.parse().ok().map(ByteRange::Last),
            (a, "") => a.parse().ok().map(|a| ByteRange::From(a, None)),
            (a, b) => match (a.parse().ok()?, b.parse().ok()?) {
                (a, b) if a <= b => Some(ByteRange::From(a, Some(b))),
                _ => None,
            },
        }
    }

    /// The first and last byte it covers in a stream of `total` bytes, if any.
    fn within(self, total: u64) -> Option<(u64, u64)> {
        match self {
            ByteRange::From(a, _) if a >= total => None,
            ByteRange::From(a, b) => Some((a, b.map_or(total - 1, |b| b.min(total - 1)))),
            ByteRange::Last(0) => None,
            ByteRange::Last(n) if total > 0 => Some((total.saturating_sub(n), total - 1)),
            ByteRange::Last(_) => None,
        }
    }
}

/// A finished execution's `kind` stream, bytes `range`: 206 with `Content-Range`, or 416.
pub async fn ranged(state: Arc<AppState>, id: String, kind: StreamKind, range: ByteRange) -> ApiResult<Response> {
    let store = Arc::clone(&state.store);
    let last = store.seq_at_offset(&id, kind, u64::MAX).await?;
    let total = match last {
        0 => 0,
        seq => store.read_output(&id, seq - 1, StreamFilter::Only(kind), 1).await?.first().map_or(0, |r| r.offset + r.data.len() as u64),
    };
    let Some((first, end)) = range.within(total) else {
        return Ok((StatusCode::RANGE_NOT_SATISFIABLE, [(header::CONTENT_RANGE, format!("bytes */{total}"))]).into_response());
    };
    let start = store.seq_at_offset(&id, kind, first).await?;
    let body = async_stream::stream! {
        let mut after = start.saturating_sub(1);
        loop {
            let page = match store.read_output(&id, after, StreamFilter::Only(kind), PAGE).await {
                Ok(page) if page.is_empty() => return,
                Ok(page) => page,
                Err(e) => {
                    yield Err(std::io::Error::other(e.to_string()));
                    return;
                }
            };
            after = page.last().map_or(after, |r| r.seq);
            for r in page {
                let (from, to) = (r.offset, r.offset + r.data.len() as u64);
                if from > end {
                    return;
                }
                if to > first {
                    let cut = r.data.slice((first.max(from) - from) as usize..((end + 1).min(to) - from) as usize);
                    yield Ok(cut);
                }
            }
        }
    };
    let headers = [
        (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_string()),
        (header::CONTENT_RANGE, format!("bytes {first}-{end}/{total}")),
        (header::CONTENT_LENGTH, (end - first + 1).to_string()),
        (header::ACCEPT_RANGES, "bytes".to_string()),
    ];
    Ok((StatusCode::PARTIAL_CONTENT, headers, Body::from_stream(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::ByteRange;

    #[test]
    fn byte_ranges_parse_and_clip_to_the_stream() {
        assert_eq!(ByteRange::parse("bytes=0-9"), Some(ByteRange::From(0, Some(9))));
        assert_eq!(ByteRange::parse("bytes=5-"), Some(ByteRange::From(5, None)));
        assert_eq!(ByteRange::parse("bytes=-3"), Some(ByteRange::Last(3)));
        for bad in ["bytes=9-1", "bytes=0-1,4-5", "items=0-1", "bytes=x-1", "bytes=-"] {
            assert_eq!(ByteRange::parse(bad), None, "{bad}");
        }
        assert_eq!(ByteRange::From(2, Some(100)).within(10), Some((2, 9)));
        assert_eq!(ByteRange::From(10, None).within(10), None);
        assert_eq!(ByteRange::Last(3).within(10), Some((7, 9)));
        assert_eq!(ByteRange::Last(30).within(10), Some((0, 9)));
        assert_eq!(ByteRange::Last(3).within(0), None);
    }
}

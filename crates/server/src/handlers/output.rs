//! `GET /executions/{id}/output`: the stored output as plain text. It never blocks: it returns
//! what is stored when the request arrives, paged from the store so memory stays bounded
//! whatever the log's size.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use squall_core::output::RecordFilter;
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

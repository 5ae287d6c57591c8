//! `/admin/retained` (only with `[http] admin = true`): list and delete retained
//! messages by topic filter, for MQTT subscribers, `joined.state` and the store alike.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::message::{RetainedValue, StateItem};
use crate::BridgeState;

/// Retained messages one listing returns at most.
const MAX_LISTED: usize = 10_000;

#[derive(Deserialize)]
pub struct FilterQuery {
    filter: String,
}

/// The retained messages matching `filter`, or `None` for an invalid filter.
fn matching(state: &BridgeState, filter: String) -> Option<Vec<RetainedValue>> {
    if !crate::topic::valid_filter(&filter) {
        return None;
    }
    Some(state.hub.retained.matching(&[filter], usize::MAX).0)
}

fn bad_filter() -> Response {
    (
        StatusCode::BAD_REQUEST,
        "filter is not an MQTT topic filter\n",
    )
        .into_response()
}

#[derive(Serialize)]
struct Listing<'a> {
    retained: Vec<StateItem<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
}

#[derive(Serialize)]
struct Deleted {
    deleted: usize,
}

/// `GET /admin/retained?filter=F`: the retained messages matching F (at most 10 000).
pub async fn list(State(state): State<BridgeState>, Query(query): Query<FilterQuery>) -> Response {
    let Some(items) = matching(&state, query.filter) else {
        return bad_filter();
    };
    let listing = Listing {
        retained: items
            .iter()
            .take(MAX_LISTED)
            .map(|v| v.item(None))
            .collect(),
        truncated: items.len() > MAX_LISTED,
    };
    axum::Json(listing).into_response()
}

/// `DELETE /admin/retained?filter=F`: clears every retained message matching F.
pub async fn delete(
    State(state): State<BridgeState>,
    Query(query): Query<FilterQuery>,
) -> Response {
    let Some(items) = matching(&state, query.filter) else {
        return bad_filter();
    };
    for item in &items {
        state
            .publisher
            .publish(&item.topic, bytes::Bytes::new(), 0, true);
        state.events.retained_changed(
            bytes::Bytes::copy_from_slice(item.topic.as_bytes()),
            bytes::Bytes::new(),
            0,
            None,
        );
    }
    info!(count = items.len(), "admin: deleted retained messages");
    axum::Json(Deleted {
        deleted: items.len(),
    })
    .into_response()
}

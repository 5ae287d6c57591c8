//! `/admin/retained` (only with `[http] admin = true`, for requests bearing
//! `[http] admin_token`): list and delete retained messages by topic filter, for MQTT
//! subscribers, `joined.state` and the store alike.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
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

/// `None` for a request bearing the admin token, else the 401 to answer.
fn unauthorized(state: &BridgeState, headers: &HeaderMap) -> Option<Response> {
    let token = state.hub.config().http.admin_token.as_deref()?;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    use subtle::ConstantTimeEq;
    if bool::from(presented.as_bytes().ct_eq(token.as_bytes())) {
        return None;
    }
    metrics::counter!("switchboard_bridge_refusals_total", "reason" => "admin_token").increment(1);
    let refusal = (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "the admin API needs Authorization: Bearer <[http] admin_token>\n",
    );
    Some(refusal.into_response())
}

/// The retained messages an authorised request with a valid filter asks for, or
/// the refusal to answer with.
fn admitted(
    state: &BridgeState,
    headers: &HeaderMap,
    filter: String,
) -> Result<Vec<RetainedValue>, Box<Response>> {
    if let Some(refusal) = unauthorized(state, headers) {
        return Err(Box::new(refusal));
    }
    matching(state, filter).ok_or_else(|| Box::new(bad_filter()))
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
pub async fn list(
    State(state): State<BridgeState>,
    headers: HeaderMap,
    Query(query): Query<FilterQuery>,
) -> Response {
    let items = match admitted(&state, &headers, query.filter) {
        Ok(items) => items,
        Err(refusal) => return *refusal,
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
    headers: HeaderMap,
    Query(query): Query<FilterQuery>,
) -> Response {
    let items = match admitted(&state, &headers, query.filter) {
        Ok(items) => items,
        Err(refusal) => return *refusal,
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

//! What the HTTP handlers share: the bridge's state, readiness and the metrics
//! handle. Handlers extract the part they need (axum `FromRef`).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::extract::FromRef;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::BridgeState;

#[derive(Clone)]
pub struct HttpState {
    pub metrics: PrometheusHandle,
    /// Set once every listener is serving; cleared when shutdown begins.
    pub ready: Arc<AtomicBool>,
    pub bridge: BridgeState,
}

impl FromRef<HttpState> for BridgeState {
    fn from_ref(state: &HttpState) -> BridgeState {
        state.bridge.clone()
    }
}

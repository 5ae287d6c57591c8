//! Switchboard's browser side. For now the HTTP server on `[http] listen` with
//! `/healthz`, `/readyz` and `/metrics`; the rooms protocol (`/ws`, `/sse`) lands here next.

mod http;

pub use http::{HttpServer, HttpState};

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("http listener: cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

//! The HTTP listener's accept loop. Every connection gets a deadline for its request
//! headers, and connections not yet upgraded to `/ws` (or streaming `/sse`) are
//! capped in total and per source IP, so unfinished requests cannot take every file
//! descriptor; upgraded connections count against `[bridge] max_connections`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics::counter;
use parking_lot::Mutex;
use switchboard_config::HttpConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::{debug, warn};

/// Connections not yet upgraded, in total and per source address.
struct Pending {
    total: usize,
    per_ip: usize,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// One connection's place among the pending ones, given back when dropped.
pub struct PendingSlot {
    pending: Arc<Pending>,
    ip: IpAddr,
}

impl Pending {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<PendingSlot, &'static str> {
        let mut counts = self.counts.lock();
        if counts.total >= self.total {
            return Err("max_pending");
        }
        let count = counts.by_ip.entry(ip).or_insert(0);
        if *count >= self.per_ip {
            return Err("max_pending_per_ip");
        }
        *count += 1;
        counts.total += 1;
        Ok(PendingSlot {
            pending: self.clone(),
            ip,
        })
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut counts = self.pending.counts.lock();
        counts.total -= 1;
        if let Some(count) = counts.by_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.by_ip.remove(&self.ip);
            }
        }
    }
}

/// Put in each request's extensions: a handler whose response streams for long
/// (`/sse`) gives the connection's pending slot back.
#[derive(Clone)]
pub struct PendingRelease(Arc<Mutex<Option<PendingSlot>>>);

impl PendingRelease {
    pub fn release(&self) {
        self.0.lock().take();
    }
}

/// Accepts until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    config: &HttpConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let pending = Arc::new(Pending {
        total: config.max_pending,
        per_ip: config.max_pending_per_ip.min(config.max_pending),
        counts: Mutex::default(),
    });
    let header_timeout = Duration::from_secs(config.header_timeout_secs);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors (or a transient error): let closes catch up.
                counter!("switchboard_http_accept_errors_total").increment(1);
                if switchboard_broker::repeats::allow_refusal("http accept failed") {
                    warn!("HTTP accept failed: {e}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match pending.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(reason) => {
                counter!("switchboard_http_refusals_total", "reason" => reason).increment(1);
                if switchboard_broker::repeats::allow_refusal(reason) {
                    warn!(%peer, reason, "HTTP connection refused: too many unfinished requests ([http] {reason})");
                }
                drop(tcp);
                continue;
            }
        };
        // Without TCP_NODELAY, small frames wait for the peer's delayed ACK (40 ms).
        let _ = tcp.set_nodelay(true);
        let release = PendingRelease(Arc::new(Mutex::new(Some(slot))));
        tokio::spawn(serve_connection(
            tcp,
            tls.clone(),
            peer,
            app.clone(),
            header_timeout,
            release,
            shutdown.clone(),
        ));
    }
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    tls: Option<TlsAcceptor>,
    peer: SocketAddr,
    app: Router,
    header_timeout: Duration,
    release: PendingRelease,
    shutdown: watch::Receiver<bool>,
) {
    let Some(tls) = tls else {
        return serve_http(tcp, peer, app, header_timeout, release, shutdown).await;
    };
    // The TLS handshake shares the header deadline.
    let refused = match tokio::time::timeout(header_timeout, tls.accept(tcp)).await {
        Ok(Ok(stream)) => {
            return serve_http(stream, peer, app, header_timeout, release, shutdown).await
        }
        Ok(Err(e)) => {
            debug!(%peer, "HTTPS handshake failed: {e}");
            "tls_handshake"
        }
        Err(_) => "header_timeout",
    };
    counter!("switchboard_http_refusals_total", "reason" => refused).increment(1);
}

async fn serve_http<S>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    header_timeout: Duration,
    release: PendingRelease,
    mut shutdown: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let handler_release = release.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(handler_release.clone());
        app.clone().oneshot(request)
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let stopping = tokio::select! {
        ended = connection.as_mut() => {
            if ended.as_ref().is_err_and(|e| e.is_timeout()) {
                counter!("switchboard_http_refusals_total", "reason" => "header_timeout").increment(1);
                if switchboard_broker::repeats::allow_refusal("header_timeout") {
                    debug!(%peer, "HTTP request headers not received within [http] header_timeout_secs");
                }
            }
            false
        }
        stopping = shutdown.wait_for(|stopping| *stopping) => stopping.is_ok(),
    };
    if stopping {
        connection.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(Duration::from_secs(2), connection).await;
    }
    // Upgraded (the connection's future ends at the upgrade) or closed.
    release.release();
}

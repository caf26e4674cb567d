//! The HTTP server under the API's warp filter: hyper HTTP/1.1 connections
//! with named limits, so that oversized headers, clients that trickle their
//! request (slow-loris) and piles of idle connections cost bounded resources
//! and leave the node serving everyone else. (warp's own server sets none of
//! these.) Over TLS, each connection's handshake runs in its own task,
//! bounded by the header timeout. Stops accepting on shutdown, then waits for open connections to
//! finish (the caller bounds that wait).

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use warp::reply::Response;
use warp::Filter;

/// A connection must deliver a complete request head within this long of
/// opening (or of its previous response): else it is closed. Bounds both
/// slow-loris clients and idle keep-alive connections.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line and headers) read; larger gets 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most header lines in one request; more gets 431.
pub const MAX_HEADERS: usize = 100;
/// Open connections at once; one over this is closed as soon as it is
/// accepted. The process needs `ulimit -n` above it (plus the node's own
/// files and cluster sessions).
pub const MAX_CONNECTIONS: usize = 16_384;
/// Connections the kernel queues for `accept` (capped by `net.core.somaxconn`):
/// a burst of new connections beyond it waits for SYN retries (1 s and more).
pub const LISTEN_BACKLOG: u32 = 4_096;
/// Pause after a failed accept (e.g. out of file descriptors) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The limits a node serves with (the defaults are the constants above).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Also bounds a TLS handshake: it must be done within this long of accepting.
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { header_read_timeout: HEADER_READ_TIMEOUT, max_connections: MAX_CONNECTIONS }
    }
}

/// A listener on `addr` with `LISTEN_BACKLOG`.
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Logs the first, then every power of two of, connections refused for the limit.
fn over_limit(max: usize) {
    static REFUSED: AtomicU64 = AtomicU64::new(0);
    let n = REFUSED.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        tracing::warn!(max_connections = max, refused = n, "connection refused: too many open connections");
    }
}

/// Serves `filter` on `listener` (over TLS with `tls`) until `shutdown`
/// completes, then waits for the open connections to finish.
pub async fn serve<F>(
    listener: TcpListener,
    filter: F,
    limits: Limits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            over_limit(limits.max_connections);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(warp::service(filter.clone()));
        let Some(tls) = &tls else {
            let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                // Errors here are the client's (reset, timeout, bad request head): hyper answered what it could.
                let _ = connection.await;
                drop(permit);
            });
            continue;
        };
        // The handshake runs in the connection's task, bounded like a request head.
        let (tls, http, watcher) = (tls.clone(), http.clone(), graceful.watcher());
        let handshake_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            // A failed or slow handshake is the client's (plain HTTP, an untrusted CA): nothing to answer.
            if let Ok(Ok(stream)) = tokio::time::timeout(handshake_timeout, tls.accept(stream)).await {
                let _ = watcher.watch(http.serve_connection(TokioIo::new(stream), service)).await;
            }
            drop(permit);
        });
    }
    graceful.shutdown().await;
}

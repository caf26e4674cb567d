//! Runs one node with its HTTP API until SIGINT or SIGTERM, then shuts down
//! gracefully: stop accepting, finish in-flight requests, flush the log.

use crate::config::{Auth, Settings};
use crate::http::{routes, Api};
use crate::metrics::Metrics;
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use warden_actors::Node;

/// How long in-flight requests get to finish once shutdown starts.
pub const HTTP_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping node lets its running attempts finish and record
/// their results before it leaves them to be taken over.
pub const ATTEMPT_GRACE: Duration = Duration::from_secs(5);

async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

pub async fn run_node(settings: Settings) -> anyhow::Result<()> {
    let listener = crate::http::serve::listen(settings.http_addr)
        .with_context(|| format!("cannot listen on {}", settings.http_addr))?;
    let addr = listener.local_addr()?;
    let name = settings.node.name.clone();
    let data_dir = settings.node.data_dir.clone();
    let node = Arc::new(Node::start(settings.node).await.context("node did not start")?);
    let cluster = match settings.cluster {
        Some(c) => {
            // Weak: shutdown waits until the node has no other owner.
            let node = Arc::downgrade(&node);
            let lost = move |peer: &str| {
                if let Some(node) = node.upgrade() {
                    node.peer_lost(peer);
                }
            };
            Some(Arc::new(crate::cluster::Cluster::start(&name, c, lost).await?))
        }
        None => None,
    };
    let metrics = Arc::new(Metrics::new());
    metrics.spawn_collector(&node);
    let (stop_tx, stop_rx) = watch::channel(false);
    match &settings.access.auth {
        Auth::Tokens(tokens) => tracing::info!(tokens = tokens.len(), "requests need a bearer token"),
        Auth::Open { explicit: true } => tracing::warn!(
            %addr, "auth = \"none\": anyone who can reach this address may do anything, drain and membership included"
        ),
        Auth::Open { explicit: false } => tracing::warn!(
            %addr, "no token_file: serving without authentication (allowed on loopback only); see `warden token create`"
        ),
    }
    let api = Arc::new(Api {
        node: node.clone(),
        metrics,
        shutdown: stop_rx,
        cluster: cluster.clone(),
        access: settings.access,
        mcp: Default::default(),
    });

    // Tests and `warden up` read this line to learn the bound address.
    let scheme = if settings.tls.is_some() { "https" } else { "http" };
    println!("warden node {name} listening on {scheme}://{addr} (data in {})", data_dir.display());
    let stopping = stop_tx.clone();
    let stop = async move {
        termination().await;
        tracing::info!("shutting down: no new requests");
        let _ = stopping.send(true);
    };
    let tls = settings.tls.map(|t| t.http);
    let server = crate::http::serve::serve(listener, routes(api), settings.http_limits, tls, stop);
    let mut stop_seen = stop_tx.subscribe();
    let mut served = tokio::spawn(server);
    let _ = stop_seen.wait_for(|s| *s).await;
    if tokio::time::timeout(HTTP_DRAIN_TIMEOUT, &mut served).await.is_err() {
        tracing::warn!("in-flight requests did not finish in {HTTP_DRAIN_TIMEOUT:?}; dropping them");
        served.abort();
        let _ = served.await;
    }
    let left = node.finish_attempts(ATTEMPT_GRACE).await;
    if left > 0 {
        tracing::warn!(left, "attempts still running after {ATTEMPT_GRACE:?}; the cluster takes them over");
    }
    if let Some(c) = &cluster {
        c.stop();
    }
    let node = sole_owner(node).await?;
    node.shutdown().await.context("shutdown")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Waits (bounded) until `node` has no other owner: a request or the metrics
/// task may still hold it for a moment after the server stopped.
async fn sole_owner(mut node: Arc<Node>) -> anyhow::Result<Node> {
    let deadline = tokio::time::Instant::now() + HTTP_DRAIN_TIMEOUT;
    loop {
        match Arc::try_unwrap(node) {
            Ok(node) => return Ok(node),
            Err(shared) if tokio::time::Instant::now() < deadline => {
                node = shared;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => anyhow::bail!("the node is still in use {HTTP_DRAIN_TIMEOUT:?} after the server stopped"),
        }
    }
}

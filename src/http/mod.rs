//! The HTTP API v1 (contract.md) on warp. One filter takes every request to
//! `Api::route`, a plain `match` on method and path, so every response —
//! errors included — comes from one place and echoes the correlation id.
//! Handlers only send messages to the node's actors.

mod handlers;
mod reply;

pub use reply::{ApiError, MAX_BODY_BYTES};

use crate::metrics::Metrics;
use bytes::Buf;
use futures_util::Stream;
use reply::*;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::watch;
use warden_actors::ids::CorrelationId;
use warden_actors::Node;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::path::FullPath;
use warp::reply::Response;
use warp::Filter;

/// What every handler can reach.
pub struct Api {
    pub node: Arc<Node>,
    pub metrics: Arc<Metrics>,
    /// Flips to true when the server starts shutting down; ends live streams.
    pub shutdown: watch::Receiver<bool>,
    /// The cluster transport, when the node is part of one.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// The whole API as one warp filter.
pub fn routes(api: Arc<Api>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(move |method: Method, path: FullPath, query: String, headers: HeaderMap, body| {
            let api = api.clone();
            async move { api.handle(method, path, query, headers, body).await }
        })
        .recover(|rejection: warp::Rejection| async move {
            // Reached only if warp itself rejects before `handle` (e.g. an unreadable request).
            let cid = CorrelationId::generate();
            let e = ApiError::bad_request(format!("request rejected: {rejection:?}"));
            Ok::<_, Infallible>(with_correlation(error_response(&e, &cid), &cid))
        })
        .unify()
}

impl Api {
    async fn handle<S, B>(&self, method: Method, path: FullPath, query: String, headers: HeaderMap, body: S) -> Response
    where
        S: Stream<Item = Result<B, warp::Error>> + Unpin + Send,
        B: Buf,
    {
        let cid = match headers.get(CORRELATION_HEADER).map(|v| v.to_str()) {
            None => CorrelationId::generate(),
            Some(Ok(raw)) => match CorrelationId::parse(raw) {
                Ok(cid) => cid,
                Err(e) => {
                    let cid = CorrelationId::generate();
                    return with_correlation(error_response(&e.into(), &cid), &cid);
                }
            },
            Some(Err(_)) => {
                let cid = CorrelationId::generate();
                let e = ApiError::bad_request("X-Correlation-Id must be ASCII");
                return with_correlation(error_response(&e, &cid), &cid);
            }
        };
        let result = match Query::parse(&query) {
            Ok(q) => self.route(&method, path.as_str(), &q, body, &cid).await,
            Err(e) => Err(e),
        };
        let response = result.unwrap_or_else(|e| {
            if e.status.is_server_error() {
                tracing::error!(code = e.code, message = %e.message, "request failed");
            }
            error_response(&e, &cid)
        });
        with_correlation(response, &cid)
    }

    async fn route<S, B>(&self, method: &Method, path: &str, q: &Query, body: S, cid: &CorrelationId) -> ApiResult
    where
        S: Stream<Item = Result<B, warp::Error>> + Unpin + Send,
        B: Buf,
    {
        let segments: Vec<String> = path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_decode(s, false))
            .collect::<Result<_, _>>()?;
        let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
        let body = || read_body(body);
        let h = handlers::Handlers { api: self, cid };
        // `?fresh=true` on a read: first catch up with what the leader has committed.
        if *method == Method::GET && q.bool("fresh")? == Some(true) {
            self.node.read_barrier().await?;
        }
        match (method.clone(), seg.as_slice()) {
            (Method::GET, []) => h.dashboard(),
            (Method::GET, ["metrics"]) => h.metrics().await,
            (Method::GET, ["v1", "health"]) => h.health(q).await,
            (Method::GET, ["v1", "cluster"]) => h.cluster().await,
            (Method::GET, ["v1", "cluster", "digest"]) => h.digest().await,
            (Method::DELETE, ["v1", "cluster", "members", name]) => h.remove_member(name).await,
            (Method::POST, ["v1", "cluster", "members"]) => h.add_member(&body().await?).await,
            (Method::POST, ["v1", "cluster", "nodes", name, "drain"]) => h.drain(name, true).await,
            (Method::DELETE, ["v1", "cluster", "nodes", name, "drain"]) => h.drain(name, false).await,
            (Method::POST, ["v1", "cluster", "leader"]) => h.transfer_leader(&body().await?).await,
            (Method::GET, ["v1", "capabilities"]) => h.capabilities(),
            (Method::POST, ["v1", "sessions", sid, "turns"]) => h.open_turn(sid, &body().await?).await,
            (Method::GET, ["v1", "sessions"]) => h.sessions(q).await,
            (Method::POST, ["v1", "turns", tid, "model-calls"]) => h.model_call(tid, &body().await?).await,
            (Method::PUT, ["v1", "memory", ns, key]) => h.put_memory(ns, key, &body().await?).await,
            (Method::GET, ["v1", "memory", ns, key]) => h.get_memory(ns, key).await,
            (Method::GET, ["v1", "memory", ns]) => h.recall(ns, q).await,
            (Method::POST, ["v1", "actions"]) => h.submit(&body().await?).await,
            (Method::GET, ["v1", "actions", id]) => h.get_action(id, q).await,
            (Method::POST, ["v1", "actions", id, "confirmation"]) => h.confirm(id, &body().await?).await,
            (Method::GET, ["v1", "dlq"]) => h.dlq(q),
            (Method::POST, ["v1", "dlq", id, "replay"]) => h.replay(id).await,
            (Method::GET, ["v1", "dlq", id, "provenance"]) => h.provenance(id).await,
            (Method::GET, ["v1", "breakers"]) => h.breakers().await,
            (Method::GET, ["v1", "timeline"]) => h.timeline(q).await,
            (Method::GET, ["v1", "correlations", id, "graph"]) => h.graph(id).await,
            (Method::GET, ["v1", "events", "stream"]) => h.event_stream(),
            (_, path) if handlers::is_known_path(path) => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not allowed here"),
            )),
            _ => Err(ApiError::not_found(format!("no endpoint at {path}"))),
        }
    }
}

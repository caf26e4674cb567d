//! The HTTP API v1 (contract.md) on warp. One filter takes every request to
//! `Api::route`, which resolves it against the route table (`routes.rs`,
//! every endpoint written once, 404/405 derived from it) and calls its
//! handler, so every response — errors included — comes from one place and
//! echoes the correlation id. Between the two, the route's access is checked
//! against the request's bearer token (`auth.rs`): a refused request reaches
//! no handler, so nothing is executed or recorded.
//! Handlers only send messages to the node's actors.

mod handlers;
pub mod mcp;
mod reply;
pub mod routes;
pub mod serve;

pub use reply::{ApiError, MAX_BODY_BYTES};

use crate::auth::{bearer, Principal};
use crate::config::{AccessSettings, Auth};
use crate::metrics::Metrics;
use bytes::Buf;
use futures_util::Stream;
use reply::*;
use routes::{Endpoint, Unrouted};
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
    /// Who may call what.
    pub access: AccessSettings,
    /// Upstream MCP servers' tool listings (`POST /mcp`'s `tools/list`).
    pub mcp: mcp::Upstreams,
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
        // A request with a body that is refused before the body is read
        // (routing, authorization) ends its connection: the unread body
        // would otherwise be taken for the next request on it.
        let has_body = headers.contains_key(warp::http::header::TRANSFER_ENCODING)
            || headers
                .get(warp::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim() != "0");
        let result = match Query::parse(&query) {
            Ok(q) => self.route(&method, path.as_str(), &q, &headers, body, &cid).await,
            Err(e) => Err(e),
        };
        let response = result.unwrap_or_else(|e| {
            // A refusal under the storage watermark is expected, and its cause
            // is logged once by the node when the watermark is crossed.
            if e.status.is_server_error() && e.status != StatusCode::INSUFFICIENT_STORAGE {
                tracing::error!(code = e.code, message = %e.message, "request failed");
            }
            let mut response = error_response(&e, &cid);
            if e.status == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert("www-authenticate", warp::http::HeaderValue::from_static("Bearer"));
            }
            let unread = [
                StatusCode::UNAUTHORIZED,
                StatusCode::FORBIDDEN,
                StatusCode::NOT_FOUND,
                StatusCode::METHOD_NOT_ALLOWED,
            ];
            if has_body && unread.contains(&e.status) {
                response
                    .headers_mut()
                    .insert(warp::http::header::CONNECTION, warp::http::HeaderValue::from_static("close"));
            }
            response
        });
        with_correlation(response, &cid)
    }

    /// The principal a request may act as on `access`: `Ok(None)` when no
    /// token is needed (an open route, or a node serving without tokens).
    /// 401 without a known token, 403 with one whose role is too low.
    pub fn authorize(&self, access: crate::auth::Access, headers: &HeaderMap) -> Result<Option<Principal>, ApiError> {
        let Auth::Tokens(tokens) = &self.access.auth else { return Ok(None) };
        let Some(required) = access.required(self.access.metrics_open) else { return Ok(None) };
        let unauthenticated = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", m);
        let header = headers.get(warp::http::header::AUTHORIZATION).ok_or_else(|| {
            unauthenticated("this endpoint needs a token: Authorization: Bearer <token> (see `warden token create`)")
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(bearer)
            .ok_or_else(|| unauthenticated("the Authorization header must be `Bearer <token>`"))?;
        let principal = tokens.authenticate(token).ok_or_else(|| unauthenticated("unknown token"))?;
        if principal.role < required {
            let message = format!("{} is {} and this needs {required}", principal.name, principal.role);
            return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", message));
        }
        Ok(Some(principal))
    }

    async fn route<S, B>(
        &self,
        method: &Method,
        path: &str,
        q: &Query,
        headers: &HeaderMap,
        body: S,
        cid: &CorrelationId,
    ) -> ApiResult
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
        let (route, p) = match routes::resolve(method, &seg) {
            Ok(resolved) => resolved,
            Err(Unrouted::MethodNotAllowed) => {
                let message = format!("{method} is not allowed here");
                return Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", message));
            }
            Err(Unrouted::NotFound) => return Err(ApiError::not_found(format!("no endpoint at {path}"))),
        };
        let principal = self.authorize(route.access, headers)?;
        let h = handlers::Handlers { api: self, cid, principal: principal.as_ref() };
        // `?fresh=true` on a read: first catch up with what the leader has committed.
        if *method == Method::GET && q.bool("fresh")? == Some(true) {
            self.node.read_barrier().await?;
        }
        match route.endpoint {
            Endpoint::Dashboard => h.dashboard(),
            Endpoint::Vendor => h.vendor(p[0]),
            Endpoint::Metrics => h.metrics().await,
            Endpoint::Health => h.health(q).await,
            Endpoint::Cluster => h.cluster().await,
            Endpoint::Digest => h.digest().await,
            Endpoint::RemoveMember => h.remove_member(p[0]).await,
            Endpoint::AddMember => h.add_member(&body().await?).await,
            Endpoint::Drain => h.drain(p[0], true).await,
            Endpoint::Undrain => h.drain(p[0], false).await,
            Endpoint::TransferLeader => h.transfer_leader(&body().await?).await,
            Endpoint::Capabilities => h.capabilities(),
            Endpoint::OpenTurn => h.open_turn(p[0], &body().await?).await,
            Endpoint::Sessions => h.sessions(q).await,
            Endpoint::ModelCall => h.model_call(p[0], &body().await?).await,
            Endpoint::PutMemory => h.put_memory(p[0], p[1], &body().await?).await,
            Endpoint::GetMemory => h.get_memory(p[0], p[1]).await,
            Endpoint::Recall => h.recall(p[0], q).await,
            Endpoint::Submit => h.submit(&body().await?).await,
            Endpoint::GetAction => h.get_action(p[0], q).await,
            Endpoint::Confirm => h.confirm(p[0], &body().await?).await,
            Endpoint::Dlq => h.dlq(q),
            Endpoint::Replay => h.replay(p[0]).await,
            Endpoint::Provenance => h.provenance(p[0]).await,
            Endpoint::Breakers => h.breakers().await,
            Endpoint::Slo => h.slo(q).await,
            Endpoint::Alerts => h.alerts().await,
            Endpoint::Timeline => h.timeline(q).await,
            Endpoint::Incidents => h.incidents(q).await,
            Endpoint::Graph => h.graph(p[0], q).await,
            Endpoint::EventStream => h.event_stream(),
            Endpoint::Policies => h.policies().await,
            Endpoint::PolicyDecide => h.policy_decide(&body().await?).await,
            Endpoint::PushPolicy => h.push_policy(&body().await?).await,
            Endpoint::RollbackPolicy => h.rollback_policy(&body().await?).await,
            Endpoint::PolicyAudit => h.policy_audit(q),
            Endpoint::Mcp => h.mcp(headers, &body().await?).await,
        }
    }
}

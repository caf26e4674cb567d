//! `POST /mcp`: warden as an MCP server (Streamable HTTP, JSON responses).
//! An agent's MCP client lists the catalog as tools and calls them; every
//! `tools/call` is an action submitted through the pipeline like any other,
//! so the policy decides over the tool and its arguments, tier 2 waits for a
//! confirmation through the API, and execution is exactly-once in effect.
//!
//! Sessions (protocol 2025-11-25 and older): `initialize` opens a turn in a
//! new warden session, and the turn's id is the `Mcp-Session-Id`. Every
//! later request names it; each `tools/call` is one action in that turn.
//! Nothing about a session lives in a node's memory, so any node serves it
//! and a restart forgets nothing. Protocol 2026-07-28 has no handshake and
//! no session: `modern.rs`. A request goes there when its
//! `MCP-Protocol-Version` header says 2026-07-28, as the SDKs route it.
//!
//! Errors: a request that is not JSON-RPC, or names no method warden
//! serves, gets a JSON-RPC error; a call the policy refuses, or that fails,
//! expires or is rejected, gets a `CallToolResult` with `isError: true`
//! naming why (the MCP way for a tool's own failures).

mod modern;

use super::handlers::Handlers;
use super::reply::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use warden_actors::backoff;
use warden_actors::domain::{Action, ActionState, AttemptOutcome, Capability, McpUpstream, Tier, Verdict};
use warden_actors::error::WardenError;
use warden_actors::ids::*;
use warden_actors::limits::MAX_BACKOFF_MS;
use warden_actors::mcp::{McpClient, IDEMPOTENCY_META, SESSION_HEADER, VERSION_HEADER};
use warden_actors::pipeline::SubmitRequest;
use warden_actors::sessions::OpenTurnRequest;
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::Reply as _;

/// Versions warden serves over the `initialize` handshake, newest first; a
/// client asking for another gets the newest.
pub const SERVED_VERSIONS: &[&str] = warden_actors::mcp::PROTOCOL_VERSIONS;
/// What warden tells an MCP client about itself.
const INSTRUCTIONS: &str = "Tools run through warden: a policy decides each call, some wait for a person to confirm.";
/// Longest `tools/list` waits for an upstream's own listing.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a `tools/call` waits for its action to finish, confirmation included.
pub const MAX_CALL_WAIT: Duration = Duration::from_secs(3600);

// JSON-RPC error codes.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const INTERNAL_ERROR: i64 = -32603;

/// Upstream MCP servers' tool listings, by upstream, for `tools/list`
/// schemas. Each is read once, by a client of its own that is dropped after
/// (a stdio upstream's listing process ends there).
#[derive(Default)]
pub struct Upstreams {
    tools: tokio::sync::Mutex<HashMap<McpUpstream, Vec<Value>>>,
}

impl Upstreams {
    /// The upstream's listing of `tool`; a listing that could not be read is
    /// asked for again next time.
    async fn tool(&self, upstream: &McpUpstream, tool: &str) -> Option<Value> {
        let mut cache = self.tools.lock().await;
        if !cache.contains_key(upstream) {
            let client = McpClient::new(upstream);
            match tokio::time::timeout(LIST_TIMEOUT, client.list_tools()).await {
                Ok(Ok(tools)) => {
                    cache.insert(upstream.clone(), tools);
                }
                Ok(Err(e)) => {
                    tracing::warn!(%upstream, error = ?e, "could not list an upstream MCP server's tools");
                    return None;
                }
                Err(_) => {
                    tracing::warn!(%upstream, "an upstream MCP server did not list its tools within 5 s");
                    return None;
                }
            }
        }
        cache[upstream].iter().find(|t| t.get("name").and_then(Value::as_str) == Some(tool)).cloned()
    }
}

/// A JSON-RPC error to answer, and the HTTP status the handshake versions
/// put it on (2026-07-28 derives its own from the code).
pub struct RpcError {
    status: StatusCode,
    code: i64,
    message: String,
    data: Option<Value>,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        Self { status: StatusCode::OK, code, message: message.into(), data: None }
    }

    fn on(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    fn body(&self, id: &Value) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(data) = &self.data {
            error["data"] = data.clone();
        }
        json!({"jsonrpc": "2.0", "id": id, "error": error})
    }
}

/// What a request answers: a result, or a JSON-RPC error.
type Rpc = Result<Value, RpcError>;
/// An answer, or a failure of warden's own (an HTTP error).
type ApiOutcome = Result<Rpc, ApiError>;

/// Which turn a `tools/call` is an action of.
enum CallTurn<'t> {
    /// The MCP session's turn.
    Of(&'t TurnId),
    /// A turn of its own, opened once the call is valid (2026-07-28).
    New,
}

/// A JSON-RPC reply on HTTP `status`.
fn rpc(status: StatusCode, body: &Value) -> ApiResult {
    Ok(warp::reply::with_status(warp::reply::json(body), status).into_response())
}

fn rpc_error(status: StatusCode, id: &Value, code: i64, message: impl Into<String>) -> ApiResult {
    rpc(status, &RpcError::new(code, message).body(id))
}

fn rpc_result(id: &Value, result: Value) -> ApiResult {
    rpc(StatusCode::OK, &json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

/// An answer as the handshake versions send it.
fn reply(id: &Value, answer: Rpc) -> ApiResult {
    match answer {
        Ok(result) => rpc_result(id, result),
        Err(e) => rpc(e.status, &e.body(id)),
    }
}

/// A tool result that reports a failure to the model, as MCP asks.
fn error_result(text: String, action: Option<&Action>) -> Value {
    let mut result = json!({"content": [{"type": "text", "text": text}], "isError": true});
    if let Some(a) = action {
        result["_meta"] = json!({"warden/action-id": a.id, "warden/state": a.state});
    }
    result
}

/// How long a call may take once it runs: every attempt's timeout and every backoff.
fn run_bound(cap: &Capability) -> Duration {
    let max_backoff = Duration::from_millis(MAX_BACKOFF_MS);
    let backoffs = backoff::exponential(Duration::from_millis(cap.backoff_ms), max_backoff);
    let pauses: Duration = backoffs.take(cap.max_attempts as usize).sum();
    Duration::from_millis(cap.timeout_ms).saturating_mul(cap.max_attempts) + pauses
}

impl Handlers<'_> {
    /// `POST /mcp`: one JSON-RPC message.
    pub async fn mcp(&self, headers: &HeaderMap, body: &[u8]) -> ApiResult {
        let null = Value::Null;
        let Ok(message) = serde_json::from_slice::<Value>(body) else {
            return rpc_error(StatusCode::BAD_REQUEST, &null, PARSE_ERROR, "the body is not JSON");
        };
        let Some(obj) = message.as_object() else {
            let what = if message.is_array() { "batches are not served" } else { "a message is a JSON object" };
            return rpc_error(StatusCode::BAD_REQUEST, &null, INVALID_REQUEST, what);
        };
        let id = obj.get("id").cloned().unwrap_or(Value::Null);
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return rpc_error(StatusCode::BAD_REQUEST, &id, INVALID_REQUEST, "jsonrpc must be \"2.0\"");
        }
        let Some(method) = obj.get("method").and_then(Value::as_str) else {
            // A response to a server request: warden sends none, so nothing awaits it.
            return Ok(StatusCode::ACCEPTED.into_response());
        };
        if !obj.contains_key("id") {
            // Notifications (`notifications/initialized`, cancellations) need no answer.
            return Ok(StatusCode::ACCEPTED.into_response());
        }
        if !(id.is_string() || id.is_i64() || id.is_u64()) {
            return rpc_error(StatusCode::BAD_REQUEST, &null, INVALID_REQUEST, "id must be a string or an integer");
        }
        let params = obj.get("params").cloned().unwrap_or_else(|| json!({}));
        if !params.is_object() {
            return rpc_error(StatusCode::BAD_REQUEST, &id, INVALID_PARAMS, "params must be an object");
        }
        match headers.get(VERSION_HEADER).map(|v| v.to_str().unwrap_or("")) {
            Some(modern::VERSION) => return self.mcp_modern(headers, &id, method, &params).await,
            Some(v) if !SERVED_VERSIONS.contains(&v) => return modern::reply(&id, Err(modern::unsupported(v))),
            _ => {}
        }
        if method == "initialize" {
            return self.mcp_initialize(&id, &params).await;
        }
        let Some(turn) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) else {
            return rpc_error(StatusCode::BAD_REQUEST, &id, INVALID_REQUEST, "no Mcp-Session-Id: initialize first");
        };
        let turn = match TurnId::parse(turn).map(|t| self.api.node.turn(&t).map(|found| found.map(|_| t))) {
            Ok(Ok(Some(turn))) => turn,
            Ok(Err(e)) => return Err(e.into()),
            // Unknown to this node: the client starts a new session (Streamable HTTP's 404).
            _ => return rpc_error(StatusCode::NOT_FOUND, &id, INVALID_REQUEST, "unknown MCP session"),
        };
        match method {
            "ping" => rpc_result(&id, json!({})),
            "tools/list" => rpc_result(&id, json!({"tools": self.mcp_tools().await})),
            "tools/call" => reply(&id, self.mcp_call(&id, CallTurn::Of(&turn), &params, headers).await?),
            other => rpc_error(StatusCode::OK, &id, METHOD_NOT_FOUND, format!("method {other:?} is not served")),
        }
    }

    async fn mcp_initialize(&self, id: &Value, params: &Value) -> ApiResult {
        let asked = params.get("protocolVersion").and_then(Value::as_str);
        let version = asked.filter(|v| SERVED_VERSIONS.contains(v)).unwrap_or(SERVED_VERSIONS[0]);
        let client = params.pointer("/clientInfo/name").and_then(Value::as_str).unwrap_or("unnamed");
        let req = OpenTurnRequest {
            session_id: Some(SessionId::generate()),
            correlation_id: Some(self.cid.clone()),
            trust: None,
            summary: Some(format!("MCP session of {client}")),
        };
        let turn = self.api.node.open_turn(req).await?;
        let result = json!({
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": false}},
            "serverInfo": {"name": "warden", "version": env!("CARGO_PKG_VERSION")},
            "instructions": INSTRUCTIONS,
        });
        let mut response = rpc_result(id, result)?;
        let sid = HeaderValue::from_str(turn.id.as_str()).map_err(|_| ApiError::bad_request("turn id"))?;
        response.headers_mut().insert(SESSION_HEADER, sid);
        Ok(response)
    }

    /// Every capability but the forbidden tier, with the upstream's schema
    /// for one backed by an MCP tool.
    async fn mcp_tools(&self) -> Vec<Value> {
        let mut tools = Vec::new();
        for cap in self.api.node.catalog().all() {
            if cap.tier == Tier::Forbidden {
                continue;
            }
            let upstream = match cap.executor.mcp() {
                Some((upstream, tool)) => self.api.mcp.tool(&upstream, tool).await,
                None => None,
            };
            let mut listed = json!({
                "name": cap.name,
                "description": format!("warden capability, tier {}", cap.tier as u8),
                "inputSchema": {"type": "object"},
            });
            if let Some(up) = upstream {
                for key in ["title", "description", "inputSchema", "outputSchema", "annotations"] {
                    if let Some(v) = up.get(key) {
                        listed[key] = v.clone();
                    }
                }
            }
            tools.push(listed);
        }
        tools
    }

    async fn mcp_call(&self, id: &Value, turn: CallTurn<'_>, params: &Value, headers: &HeaderMap) -> ApiOutcome {
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            return Ok(Err(RpcError::new(INVALID_PARAMS, "tools/call needs a name")));
        };
        let args = match params.get("arguments") {
            None | Some(Value::Null) => json!({}),
            Some(a @ Value::Object(_)) => a.clone(),
            Some(_) => return Ok(Err(RpcError::new(INVALID_PARAMS, "arguments must be an object"))),
        };
        let cap = match self.api.node.catalog().get(name) {
            Ok(cap) => cap,
            Err(_) => return Ok(Err(RpcError::new(INVALID_PARAMS, format!("unknown tool {name:?}")))),
        };
        let turn = match turn {
            CallTurn::Of(turn) => turn.clone(),
            CallTurn::New => self.mcp_call_turn().await?,
        };
        // The client's key if it sends one; otherwise the request's id in
        // this turn, so a request sent again in a session runs once.
        let given = params
            .pointer("/_meta")
            .and_then(|m| m.get(IDEMPOTENCY_META))
            .and_then(Value::as_str)
            .or_else(|| headers.get("idempotency-key").and_then(|v| v.to_str().ok()))
            .map(str::to_owned);
        let key = given.unwrap_or_else(|| {
            let rid = id.as_str().map_or_else(|| id.to_string(), str::to_owned);
            format!("mcp:{turn}:{rid}")
        });
        let key = match IdempotencyKey::parse(&key) {
            Ok(k) => k,
            Err(e) => return Ok(Err(RpcError::new(INVALID_PARAMS, e.to_string()))),
        };
        let req = SubmitRequest {
            turn_id: turn,
            capability: name.to_owned(),
            args,
            idempotency_key: Some(key),
            principal: self.policy_principal(),
        };
        let action = match self.api.node.submit(req).await {
            Ok(a) => a,
            Err(WardenError::UnknownTurn(_)) => {
                return Ok(Err(RpcError::new(INVALID_REQUEST, "unknown MCP session").on(StatusCode::NOT_FOUND)))
            }
            Err(e @ (WardenError::BadInput(_) | WardenError::Conflict(_))) => {
                return Ok(Err(RpcError::new(INVALID_PARAMS, e.to_string())))
            }
            Err(e) => {
                let e = ApiError::from(e);
                return Ok(Err(RpcError::new(INTERNAL_ERROR, format!("{}: {}", e.code, e.message))));
            }
        };
        if !self.may_read(&action) {
            let message = "this idempotency key belongs to another principal's action; use a key of your own";
            return Ok(Err(RpcError::new(INVALID_PARAMS, message)));
        }
        if action.decision.decision == Verdict::Deny {
            let text = format!("denied by policy: {}", action.decision.reasons.join("; "));
            return Ok(Ok(error_result(text, Some(&action))));
        }
        let action = self.mcp_wait(&action, &cap).await?;
        Ok(Ok(call_result(&action)))
    }

    /// The turn a sessionless (2026-07-28) `tools/call` is an action of: a
    /// new one, in the session of the principal's MCP calls (`mcp-<name>`;
    /// `mcp-open` on a node without tokens), with the request's correlation id.
    async fn mcp_call_turn(&self) -> Result<TurnId, ApiError> {
        let who = self.principal.map_or("open", |p| p.name.as_str());
        let session = SessionId::parse(&format!("mcp-{who}")).unwrap_or_else(|_| SessionId::generate());
        let req = OpenTurnRequest {
            session_id: Some(session),
            correlation_id: Some(self.cid.clone()),
            trust: None,
            summary: Some("MCP tools/call".into()),
        };
        Ok(self.api.node.open_turn(req).await?.id)
    }

    /// The action once it is terminal: a confirmation may take the action's
    /// confirmation window, then the run every attempt's timeout and backoff.
    async fn mcp_wait(&self, action: &Action, cap: &Capability) -> Result<Action, ApiError> {
        let now = self.api.node.clock().now_ms();
        let confirming = action.confirm_deadline_ms.map_or(0, |d| d.saturating_sub(now));
        let bound = (Duration::from_millis(confirming) + run_bound(cap) + Duration::from_secs(1)).min(MAX_CALL_WAIT);
        let mut stopping = self.api.shutdown.clone();
        let action = tokio::select! {
            waited = self.api.node.wait_action(&action.id, bound) => waited?,
            _ = stopping.wait_for(|s| *s) => self.api.node.action(&action.id)?,
        };
        Ok(action)
    }
}

/// What a finished (or still unfinished) action answers to `tools/call`:
/// the upstream's result unchanged when it ran, an error result otherwise.
fn call_result(action: &Action) -> Value {
    match action.state {
        ActionState::Succeeded => {
            let kept = action.attempts.iter().rev().find_map(|a| match &a.outcome {
                Some(AttemptOutcome::Succeeded { result }) => Some(result.clone()),
                _ => None,
            });
            match kept.flatten() {
                Some(result) => result,
                // A capability that is not an MCP tool returns no content of its own.
                None => json!({
                    "content": [{"type": "text", "text": format!("{} succeeded", action.capability)}],
                    "structuredContent": {"action_id": action.id, "state": action.state},
                }),
            }
        }
        ActionState::Rejected => {
            let by = action.confirmed_by.as_deref().unwrap_or("someone");
            error_result(format!("the confirmation was refused by {by}"), Some(action))
        }
        ActionState::Expired => error_result("no confirmation came before the deadline".into(), Some(action)),
        ActionState::Failed | ActionState::DeadLettered => {
            let error = action.last_error.as_deref().unwrap_or("unknown error");
            error_result(format!("the tool failed: {error}"), Some(action))
        }
        ActionState::Denied => {
            error_result(format!("denied by policy: {}", action.decision.reasons.join("; ")), Some(action))
        }
        state @ (ActionState::AwaitingConfirmation | ActionState::Pending | ActionState::Running) => {
            let state = serde_json::to_value(state).unwrap_or_default();
            let text = format!(
                "still {} when the wait ended; follow GET /v1/actions/{}",
                state.as_str().unwrap_or("open"),
                action.id
            );
            error_result(text, Some(action))
        }
    }
}

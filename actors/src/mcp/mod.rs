//! The Model Context Protocol, client side: warden calling a tool of an
//! upstream MCP server, over Streamable HTTP (JSON-RPC 2.0 in `POST`s to one
//! endpoint, answered as `application/json` or as a `text/event-stream`) or
//! over stdio (`stdio`: a child process, newline-delimited JSON-RPC on its
//! stdin and stdout). `McpClient` initializes one session per upstream and
//! reuses it, starting a new one when the upstream forgets it (HTTP 404) or
//! exits (stdio). The capability executor `{ kind = "mcp", url | command,
//! tool }` (`executor::McpExecutor`) is one `tools/call` per attempt through it.

mod stdio;

use crate::domain::{AttemptOutcome, McpUpstream};
use crate::limits::MAX_RESULT_BYTES;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The protocol version warden asks for; the upstream may answer another it supports.
pub const PROTOCOL_VERSION: &str = "2025-11-25";
/// The versions warden accepts from an upstream, newest first (those of the
/// `initialize` handshake with Streamable HTTP).
pub const PROTOCOL_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];
/// `_meta` key of a `tools/call` that carries the action's idempotency key upstream.
pub const IDEMPOTENCY_META: &str = "warden/idempotency-key";
/// `_meta` key carrying the action's correlation id upstream.
pub const CORRELATION_META: &str = "warden/correlation-id";
/// The session header of Streamable HTTP.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// The negotiated-version header a client sends after `initialize`.
pub const VERSION_HEADER: &str = "mcp-protocol-version";
/// Largest upstream answer read (an SSE stream may carry notifications too).
const MAX_ANSWER_BYTES: usize = 4 * MAX_RESULT_BYTES;

/// Why a call to an upstream MCP server failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpError {
    /// It may work next time: no connection, a 5xx/408/429, a cut stream.
    Transient(String),
    /// It will not: a JSON-RPC error, a 4xx, an answer that is not MCP.
    Refused(String),
}

impl McpError {
    /// The attempt outcome this failure makes.
    pub fn outcome(self) -> AttemptOutcome {
        match self {
            McpError::Transient(error) => AttemptOutcome::Retryable { error },
            McpError::Refused(error) => AttemptOutcome::Permanent { error },
        }
    }
}

struct Session {
    /// The upstream's `Mcp-Session-Id`, if it keeps sessions.
    id: Option<String>,
    protocol: String,
}

/// One upstream MCP server.
pub struct McpClient {
    upstream: McpUpstream,
    transport: Transport,
}

enum Transport {
    Http(HttpUpstream),
    Stdio(stdio::StdioUpstream),
}

impl McpClient {
    /// A client of `upstream`; a stdio upstream is started at the first request.
    pub fn new(upstream: &McpUpstream) -> Self {
        let transport = match upstream {
            McpUpstream::Http(url) => Transport::Http(HttpUpstream::new(url)),
            McpUpstream::Stdio(command) => Transport::Stdio(stdio::StdioUpstream::new(command)),
        };
        Self { upstream: upstream.clone(), transport }
    }

    pub fn upstream(&self) -> &McpUpstream {
        &self.upstream
    }

    /// The tools the upstream offers, every page of them.
    pub async fn list_tools(&self) -> Result<Vec<Value>, McpError> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let params = match &cursor {
                Some(c) => json!({ "cursor": c }),
                None => json!({}),
            };
            let page = self.request("tools/list", params, None).await?;
            let Some(list) = page.get("tools").and_then(Value::as_array) else {
                return Err(McpError::Refused(format!("tools/list from {} has no tools array", self.upstream)));
            };
            tools.extend(list.iter().cloned());
            match page.get("nextCursor").and_then(Value::as_str) {
                Some(next) if !next.is_empty() && cursor.as_deref() != Some(next) => cursor = Some(next.to_owned()),
                _ => return Ok(tools),
            }
        }
    }

    /// `tools/call`: the upstream's `CallToolResult` as it sent it.
    pub async fn call_tool(&self, tool: &str, arguments: &Value, meta: Value, key: &str) -> Result<Value, McpError> {
        let params = json!({ "name": tool, "arguments": arguments, "_meta": meta });
        self.request("tools/call", params, Some(key)).await
    }

    async fn request(&self, method: &str, params: Value, key: Option<&str>) -> Result<Value, McpError> {
        match &self.transport {
            Transport::Http(http) => http.request(method, params, key).await,
            // No headers on stdio: the key travels in `_meta` alone.
            Transport::Stdio(stdio) => stdio.request(method, params).await,
        }
    }
}

/// An upstream over Streamable HTTP.
struct HttpUpstream {
    url: String,
    http: reqwest::Client,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
    next_id: AtomicU64,
}

impl HttpUpstream {
    fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            http: reqwest::Client::new(),
            session: tokio::sync::Mutex::new(None),
            next_id: AtomicU64::new(1),
        }
    }

    /// One request in the current session; a session the upstream no longer
    /// knows (404) is replaced once and the request sent again.
    async fn request(&self, method: &str, params: Value, key: Option<&str>) -> Result<Value, McpError> {
        let session = self.session().await?;
        match self.send(&session, method, &params, key).await {
            Ok(answer) => answer,
            Err(Gone) => {
                self.forget(&session).await;
                let session = self.session().await?;
                match self.send(&session, method, &params, key).await {
                    Ok(answer) => answer,
                    Err(Gone) => Err(McpError::Transient(format!("{} forgot a new session at once", self.url))),
                }
            }
        }
    }

    async fn session(&self) -> Result<Arc<Session>, McpError> {
        let mut current = self.session.lock().await;
        if let Some(s) = &*current {
            return Ok(s.clone());
        }
        let s = Arc::new(self.initialize().await?);
        *current = Some(s.clone());
        Ok(s)
    }

    async fn forget(&self, stale: &Arc<Session>) {
        let mut current = self.session.lock().await;
        if current.as_ref().is_some_and(|s| Arc::ptr_eq(s, stale)) {
            *current = None;
        }
    }

    async fn initialize(&self) -> Result<Session, McpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let response = self.post(None, &initialize_request(id), None).await?;
        let sid = response.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let result = answer_of(response, id, &self.url).await?;
        let protocol = negotiated(&result, &self.url)?;
        let session = Session { id: sid, protocol };
        let sent = self.post(Some(&session), &initialized_notification(), None).await?;
        if !sent.status().is_success() {
            return Err(status_error(sent.status(), &self.url));
        }
        Ok(session)
    }

    async fn send(
        &self,
        session: &Session,
        method: &str,
        params: &Value,
        key: Option<&str>,
    ) -> Result<Result<Value, McpError>, Gone> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let response = match self.post(Some(session), &body, key).await {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        if response.status() == reqwest::StatusCode::NOT_FOUND && session.id.is_some() {
            return Err(Gone);
        }
        Ok(answer_of(response, id, &self.url).await)
    }

    async fn post(
        &self,
        session: Option<&Session>,
        body: &Value,
        key: Option<&str>,
    ) -> Result<reqwest::Response, McpError> {
        let mut request = self.http.post(&self.url).header("accept", "application/json, text/event-stream").json(body);
        if let Some(s) = session {
            request = request.header(VERSION_HEADER, &s.protocol);
            if let Some(id) = &s.id {
                request = request.header(SESSION_HEADER, id);
            }
        }
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.send().await.map_err(|e| McpError::Transient(format!("POST {}: {e}", self.url)))
    }
}

/// The upstream no longer knows the session.
struct Gone;

fn status_error(status: reqwest::StatusCode, url: &str) -> McpError {
    let error = format!("{url} answered {status}");
    if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
        McpError::Transient(error)
    } else {
        McpError::Refused(error)
    }
}

/// The JSON-RPC answer to request `id` in `response`, a JSON body or an event stream.
async fn answer_of(mut response: reqwest::Response, id: u64, url: &str) -> Result<Value, McpError> {
    let status = response.status();
    if !status.is_success() {
        return Err(status_error(status, url));
    }
    let stream = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_ANSWER_BYTES {
                    return Err(McpError::Refused(format!("{url} answered more than {MAX_ANSWER_BYTES} bytes")));
                }
                if stream && find_answer(&body, id).is_some() {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => return Err(McpError::Transient(format!("reading the answer of {url}: {e}"))),
        }
    }
    let message = if stream {
        find_answer(&body, id).ok_or_else(|| McpError::Transient(format!("{url}'s stream ended without the answer")))?
    } else {
        serde_json::from_slice(&body).map_err(|e| McpError::Refused(format!("{url} answered no JSON: {e}")))?
    };
    result_of(message, &url)
}

/// The `initialize` request warden opens a session with.
fn initialize_request(id: u64) -> Value {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": { "name": "warden", "version": env!("CARGO_PKG_VERSION") },
        },
    })
}

fn initialized_notification() -> Value {
    json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })
}

/// The protocol version an `initialize` result settles on, if warden speaks it.
fn negotiated(result: &Value, upstream: &dyn std::fmt::Display) -> Result<String, McpError> {
    match result.get("protocolVersion").and_then(Value::as_str) {
        Some(v) if PROTOCOL_VERSIONS.contains(&v) => Ok(v.to_owned()),
        other => Err(McpError::Refused(format!("{upstream} speaks MCP {other:?}, not one of ours"))),
    }
}

/// A JSON-RPC answer's result, or its error as a refusal.
fn result_of(message: Value, upstream: &dyn std::fmt::Display) -> Result<Value, McpError> {
    if let Some(error) = message.get("error") {
        let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
        let text = error.get("message").and_then(Value::as_str).unwrap_or("");
        return Err(McpError::Refused(format!("{upstream} refused the call: {code} {text}")));
    }
    message.get("result").cloned().ok_or_else(|| McpError::Refused(format!("{upstream} answered without a result")))
}

/// The message answering `id` among the complete events of an SSE body.
fn find_answer(body: &[u8], id: u64) -> Option<Value> {
    let text = String::from_utf8_lossy(body);
    let text = text.replace("\r\n", "\n");
    let complete = &text[..text.rfind("\n\n")? + 2];
    for event in complete.split("\n\n") {
        let data: Vec<&str> = event.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
        if data.is_empty() {
            continue;
        }
        let Ok(message) = serde_json::from_str::<Value>(&data.join("\n")) else { continue };
        if message.get("id").and_then(Value::as_u64) == Some(id)
            && (message.get("result").is_some() || message.get("error").is_some())
        {
            return Some(message);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_found_among_notifications_in_a_stream() {
        let body = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n\
                     id: 7\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"ok\":true}}\n\n";
        assert_eq!(find_answer(body, 3), Some(json!({"jsonrpc": "2.0", "id": 3, "result": {"ok": true}})));
        assert_eq!(find_answer(body, 4), None, "another request's id");
        let cut = b"data: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}";
        assert_eq!(find_answer(cut, 3), None, "an event is complete only at its blank line");
    }
}

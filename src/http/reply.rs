//! Request and response plumbing shared by every endpoint: the error JSON of
//! contract.md (built in one place), bounded body reading, JSON parsing with
//! clear 4xx errors, query strings, and the correlation id.

use bytes::Buf;
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use warden_actors::ids::CorrelationId;
use warden_actors::WardenError;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Reply as _;

/// Largest request body accepted (contract.md): larger gets 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest a request body may take to arrive once its head has: longer gets 408.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// An error as the API reports it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// More about the error, merged into the error object (a refused
    /// policy's `failures`, `hash` and `audit_seq`).
    pub details: serde_json::Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: Default::default() }
    }

    /// The same error with `key: value` in its object.
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.details.insert(key.to_owned(), value);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_input", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

/// The one place where domain errors become HTTP statuses.
impl From<WardenError> for ApiError {
    fn from(e: WardenError) -> Self {
        let status = match &e {
            WardenError::UnknownCapability(_)
            | WardenError::UnknownTurn(_)
            | WardenError::UnknownAction(_)
            | WardenError::UnknownDlqEntry(_)
            | WardenError::UnknownNode(_) => StatusCode::NOT_FOUND,
            WardenError::BadInput(_) => StatusCode::BAD_REQUEST,
            WardenError::NotAwaitingConfirmation { .. }
            | WardenError::WrongState(_)
            | WardenError::LastVoter(_)
            | WardenError::OnlyExecutor { .. }
            | WardenError::Conflict(_)
            | WardenError::StaleAttempt { .. }
            | WardenError::StalePolicy { .. } => StatusCode::CONFLICT,
            WardenError::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
            WardenError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            WardenError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            WardenError::StorageFull(_) | WardenError::StorageFailed(_) => StatusCode::INSUFFICIENT_STORAGE,
            WardenError::PolicyRejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self::new(status, e.code(), e.to_string())
    }
}

pub type ApiResult = Result<Response, ApiError>;

pub fn json_reply<T: Serialize>(status: StatusCode, body: &T) -> ApiResult {
    Ok(warp::reply::with_status(warp::reply::json(body), status).into_response())
}

pub fn error_response(e: &ApiError, cid: &CorrelationId) -> Response {
    let mut error = json!({"code": e.code, "message": e.message, "correlation_id": cid});
    if let Value::Object(fields) = &mut error {
        fields.extend(e.details.clone());
    }
    let body = json!({ "error": error });
    warp::reply::with_status(warp::reply::json(&body), e.status).into_response()
}

/// Echoes the correlation id on every response.
pub fn with_correlation(mut response: Response, cid: &CorrelationId) -> Response {
    if let Ok(v) = HeaderValue::from_str(cid.as_str()) {
        response.headers_mut().insert(CORRELATION_HEADER, v);
    }
    response
}

/// Reads the body, refusing more than `MAX_BODY_BYTES` without buffering it.
pub async fn read_body<S, B>(body: S) -> Result<Vec<u8>, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    // A client trickling its body (slow-loris on the body) gets 408, not a task held forever.
    match tokio::time::timeout(BODY_READ_TIMEOUT, read_body_unbounded_in_time(body)).await {
        Ok(read) => read,
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the body did not arrive within {BODY_READ_TIMEOUT:?}"),
        )),
    }
}

async fn read_body_unbounded_in_time<S, B>(body: S) -> Result<Vec<u8>, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let mut body = body;
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
        if out.len() + chunk.remaining() > MAX_BODY_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body exceeds {MAX_BODY_BYTES} bytes"),
            ));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(out)
}

/// Parses a JSON body: syntax errors are `malformed_json`, wrong shapes `bad_input`.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", "a JSON body is required"));
    }
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::bad_request(format!("invalid request body: {e}")),
        _ => ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("malformed JSON: {e}")),
    })
}

/// Decodes `%XX` escapes (and `+` in query strings).
pub fn percent_decode(raw: &str, plus_is_space: bool) -> Result<String, ApiError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = raw.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
                out.push(hex.ok_or_else(|| ApiError::bad_request(format!("bad percent-escape in {raw:?}")))?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::bad_request(format!("{raw:?} is not UTF-8")))
}

/// A parsed query string with typed, clearly-failing accessors.
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let mut map = HashMap::new();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(percent_decode(k, true)?, percent_decode(v, true)?);
        }
        Ok(Self(map))
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|s| !s.is_empty())
    }

    pub fn u64(&self, key: &str) -> Result<Option<u64>, ApiError> {
        self.str(key)
            .map(|v| {
                v.parse().map_err(|_| ApiError::bad_request(format!("{key} must be a non-negative integer, got {v:?}")))
            })
            .transpose()
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        self.str(key)
            .map(|v| match v {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(ApiError::bad_request(format!("{key} must be true or false, got {v:?}"))),
            })
            .transpose()
    }

    /// A time as milliseconds since the epoch or RFC 3339.
    pub fn time_ms(&self, key: &str) -> Result<Option<u64>, ApiError> {
        let Some(v) = self.str(key) else { return Ok(None) };
        if let Ok(ms) = v.parse::<u64>() {
            return Ok(Some(ms));
        }
        let t = humantime::parse_rfc3339_weak(v)
            .map_err(|_| ApiError::bad_request(format!("{key} must be ms since the epoch or RFC 3339, got {v:?}")))?;
        Ok(Some(t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)))
    }
}

/// Serializes anything to a JSON value (infallible for our types).
pub fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

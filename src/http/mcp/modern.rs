//! MCP 2026-07-28 on `POST /mcp`: no handshake and no session. Every
//! request stands alone: its `MCP-Protocol-Version` and `Mcp-Method`
//! headers (and `Mcp-Name` on `tools/call`) must agree with the body, whose
//! `params._meta` names the version and the client's capabilities. warden
//! serves `server/discover`, `tools/list` and `tools/call`; every result
//! says `resultType: "complete"`, a listing is never cached (`ttlMs` 0,
//! `cacheScope` private: it depends on the caller's token). Each call is an
//! action in a turn of its own (`CallTurn::New`). Errors go on the status
//! this version gives them: 400 for a malformed request, a header that
//! disagrees with the body or an unsupported version, 404 for a method
//! warden does not serve.

use super::*;
use base64::Engine as _;

/// The sessionless protocol version.
pub const VERSION: &str = "2026-07-28";
/// A routing header disagrees with the body.
const HEADER_MISMATCH: i64 = -32020;
/// A protocol version warden does not serve.
const UNSUPPORTED_VERSION: i64 = -32022;
const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
const META_SERVER: &str = "io.modelcontextprotocol/serverInfo";
const METHOD_HEADER: &str = "mcp-method";
const NAME_HEADER: &str = "mcp-name";

/// Every version warden serves, this one first.
fn supported() -> Vec<&'static str> {
    std::iter::once(VERSION).chain(SERVED_VERSIONS.iter().copied()).collect()
}

/// The error for a version warden does not serve, naming those it does.
pub fn unsupported(requested: &str) -> RpcError {
    let mut e = RpcError::new(UNSUPPORTED_VERSION, format!("MCP protocol version {requested:?} is not served"));
    e.data = Some(json!({"supported": supported(), "requested": requested}));
    e
}

/// The HTTP status of an error code at this version.
fn status_of(code: i64) -> StatusCode {
    match code {
        PARSE_ERROR | INVALID_REQUEST | INVALID_PARAMS | HEADER_MISMATCH | UNSUPPORTED_VERSION => {
            StatusCode::BAD_REQUEST
        }
        METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    }
}

/// An answer as this version sends it: a result marked complete and signed
/// with warden's name, or an error on its status.
pub fn reply(id: &Value, answer: Rpc) -> ApiResult {
    match answer {
        Ok(mut result) => {
            result["resultType"] = json!("complete");
            if !result.get("_meta").is_some_and(Value::is_object) {
                result["_meta"] = json!({});
            }
            result["_meta"][META_SERVER] = json!({"name": "warden", "version": env!("CARGO_PKG_VERSION")});
            rpc_result(id, result)
        }
        Err(e) => rpc(status_of(e.code), &e.body(id)),
    }
}

/// A header's value as the client meant it: `=?base64?…?=` is decoded.
fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    let raw = headers.get(name)?.to_str().ok()?;
    match raw.strip_prefix("=?base64?").and_then(|r| r.strip_suffix("?=")) {
        Some(encoded) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(raw.to_owned()),
    }
}

/// A request's envelope is complete, its headers agree with it and with the
/// body, and it names this version.
fn check_request(headers: &HeaderMap, method: &str, params: &Value) -> Result<(), RpcError> {
    let meta = params.get("_meta").and_then(Value::as_object);
    let missing: Vec<&str> =
        [META_VERSION, META_CAPABILITIES].into_iter().filter(|k| !meta.is_some_and(|m| m.contains_key(*k))).collect();
    if !missing.is_empty() {
        return Err(RpcError::new(INVALID_PARAMS, format!("params._meta lacks {}", missing.join(" and "))));
    }
    let Some(version) = meta.and_then(|m| m[META_VERSION].as_str()) else {
        return Err(RpcError::new(INVALID_PARAMS, format!("{META_VERSION} must be a string")));
    };
    let mismatch =
        |what: &str| Err(RpcError::new(HEADER_MISMATCH, format!("the {what} header does not match the body")));
    if header_text(headers, VERSION_HEADER).as_deref() != Some(version) {
        return mismatch("MCP-Protocol-Version");
    }
    if header_text(headers, METHOD_HEADER).as_deref() != Some(method) {
        return mismatch("Mcp-Method");
    }
    if method == "tools/call" {
        if let Some(name) = params.get("name").and_then(Value::as_str) {
            if header_text(headers, NAME_HEADER).as_deref() != Some(name) {
                return mismatch("Mcp-Name");
            }
        }
    }
    if version != VERSION {
        return Err(unsupported(version));
    }
    Ok(())
}

impl Handlers<'_> {
    /// One 2026-07-28 request.
    pub(super) async fn mcp_modern(&self, headers: &HeaderMap, id: &Value, method: &str, params: &Value) -> ApiResult {
        if let Err(e) = check_request(headers, method, params) {
            return reply(id, Err(e));
        }
        let answer = match method {
            "server/discover" => Ok(json!({
                "supportedVersions": supported(),
                "capabilities": {"tools": {"listChanged": false}},
                "instructions": INSTRUCTIONS,
                "ttlMs": 0,
                "cacheScope": "private",
            })),
            "tools/list" => Ok(json!({"tools": self.mcp_tools().await, "ttlMs": 0, "cacheScope": "private"})),
            "tools/call" => self.mcp_call(id, CallTurn::New, params, headers).await?,
            other => Err(RpcError::new(METHOD_NOT_FOUND, format!("method {other:?} is not served at {VERSION}"))),
        };
        reply(id, answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (warp::http::HeaderName::from_static(k), HeaderValue::from_str(v).unwrap())).collect()
    }

    fn envelope(version: &str) -> Value {
        json!({"name": "é.search", "_meta": {META_VERSION: version, META_CAPABILITIES: {}}})
    }

    #[test]
    fn headers_must_agree_with_the_body() {
        let params = envelope(VERSION);
        let h = |name: &str| {
            headers(&[("mcp-protocol-version", VERSION), ("mcp-method", "tools/call"), ("mcp-name", name)])
        };
        assert!(check_request(&h("=?base64?w6kuc2VhcmNo?="), "tools/call", &params).is_ok(), "base64 of é.search");
        let code = |r: Result<(), RpcError>| r.unwrap_err().code;
        assert_eq!(code(check_request(&h("other"), "tools/call", &params)), HEADER_MISMATCH);
        let no_method = headers(&[("mcp-protocol-version", VERSION)]);
        assert_eq!(code(check_request(&no_method, "tools/list", &params)), HEADER_MISMATCH);
        let listing = headers(&[("mcp-protocol-version", VERSION), ("mcp-method", "tools/list")]);
        assert_eq!(code(check_request(&listing, "tools/list", &json!({}))), INVALID_PARAMS, "no envelope");
        let older = headers(&[("mcp-protocol-version", "2025-11-25"), ("mcp-method", "tools/list")]);
        assert_eq!(code(check_request(&older, "tools/list", &envelope(VERSION))), HEADER_MISMATCH);
        let unknown = headers(&[("mcp-protocol-version", "2099-01-01"), ("mcp-method", "tools/list")]);
        let e = check_request(&unknown, "tools/list", &envelope("2099-01-01")).unwrap_err();
        assert_eq!((e.code, status_of(e.code)), (UNSUPPORTED_VERSION, StatusCode::BAD_REQUEST));
        assert_eq!(e.data.unwrap()["supported"][0], VERSION);
    }
}

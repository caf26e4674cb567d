//! warden as an MCP gateway, end to end with real MCP software on both
//! sides: an upstream server written with the Python `mcp` SDK
//! (`tests/mcp/upstream.py`, which logs every start and completion of a
//! call per idempotency key) sits behind a warden node, and the SDK's client
//! (`tests/mcp/client.py`) lists and calls the tools through `POST /mcp`
//! with an agent's token. `.ci/run` installs the SDK and names its Python in
//! `WARDEN_MCP_PYTHON`; without it these tests fail under CI and are
//! skipped, saying so, elsewhere. The malformed-request test needs no Python.

mod common;
#[path = "mcp/upstream.rs"]
mod upstream;

use common::process::NodeProcess;
use serde_json::{json, Value};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use upstream::{log_in, script, Upstream};
use warden::auth::{create_token, Role};

/// Longest any one step may take (a Python start, a call, a restart).
const STEP: Duration = Duration::from_secs(60);

fn mcp_python() -> Option<PathBuf> {
    match std::env::var_os("WARDEN_MCP_PYTHON") {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("WARDEN_MCP_PYTHON is not set: .ci/run installs the Python mcp SDK and sets it")
        }
        None => {
            eprintln!("SKIPPED: WARDEN_MCP_PYTHON is not set (a Python with the `mcp` package; see .ci/run)");
            None
        }
    }
}

/// A node with tokens in front of the upstream, and the Python MCP client.
struct Gateway {
    node: NodeProcess,
    python: PathBuf,
    agent: String,
    operator: String,
    http: reqwest::Client,
}

/// The catalog: the upstream's tools as capabilities of every tier.
/// `email.send` is tier 2, but the bundle below lets mail to example.com run
/// at tier 1: the rule reads the arguments. `upstream` is the executor's
/// `url = ..` or `command = [..]`.
fn catalog(upstream: &str) -> String {
    format!(
        r#"
[[capability]]
name = "search.docs"
tier = 0
executor = {{ kind = "mcp", {upstream}, tool = "search" }}
[[capability]]
name = "email.send"
tier = 2
executor = {{ kind = "mcp", {upstream}, tool = "send_email" }}
[[capability]]
name = "files.write"
tier = 1
max_attempts = 8
backoff_ms = 200
timeout_ms = 10000
executor = {{ kind = "mcp", {upstream}, tool = "write" }}
[[capability]]
name = "db.drop"
tier = 3
executor = {{ kind = "mcp", {upstream}, tool = "drop" }}
"#
    )
}

/// The repository's bundle, with mail to anywhere but example.com kept at
/// tier 2 and mail to example.com at tier 1.
fn bundle(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let dst = dir.join("policies");
    for sub in ["warden", "golden"] {
        std::fs::create_dir_all(dst.join(sub)).unwrap();
        for f in std::fs::read_dir(src.join(sub)).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), dst.join(sub).join(f.file_name())).unwrap();
        }
    }
    let rego = dst.join("warden/authz.rego");
    let text = std::fs::read_to_string(&rego).unwrap();
    let original = "\tt in {0, 1, 2, 3}\n}\n";
    assert!(text.contains(original), "authz.rego changed shape");
    let rule = "\tt in {0, 1, 2, 3}\n\tinput.capability.name != \"email.send\"\n}\n\n\
                base_tier := 1 if {\n\tinput.capability.name == \"email.send\"\n\
                \tendswith(input.args.to, \"@example.com\")\n}\n\n\
                base_tier := 2 if {\n\tinput.capability.name == \"email.send\"\n\
                \tnot endswith(input.args.to, \"@example.com\")\n}\n";
    std::fs::write(&rego, text.replacen(original, rule, 1)).unwrap();
    dst
}

impl Gateway {
    fn start(python: &Path, dir: &Path, upstream: &str) -> Gateway {
        let tokens = dir.join("tokens.toml");
        let agent = create_token(&tokens, "bot", Role::Agent).unwrap();
        let operator = create_token(&tokens, "ops", Role::Operator).unwrap();
        let policies = bundle(dir);
        let config = dir.join("node.toml");
        let text = format!(
            "token_file = \"tokens.toml\"\npolicies_dir = {:?}\nconfirm_ttl_ms = 600000\n{}",
            policies.display().to_string(),
            catalog(upstream)
        );
        std::fs::write(&config, text).unwrap();
        let node = NodeProcess::start(&dir.join("data"), Some(&config));
        let http = reqwest::Client::builder().timeout(STEP).build().unwrap();
        Gateway { node, python: python.to_owned(), agent, operator, http }
    }

    fn client(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.python);
        cmd.arg(script("client.py")).arg(format!("{}/mcp", self.node.url)).arg(&self.agent).args(args);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }

    /// One client run to its end: its JSON line.
    fn run(&self, args: &[&str]) -> Value {
        let child = self.client(args).spawn().expect("the MCP client starts");
        finish(child)
    }

    async fn operator(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.node.url)).bearer_auth(&self.operator);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let response = req.send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    async fn timeline(&self) -> Vec<Value> {
        let t = self.operator(reqwest::Method::GET, "/v1/timeline?limit=10000", None).await;
        t["events"].as_array().unwrap().clone()
    }

    /// The first action the timeline shows with an event of `kind` for `capability`.
    async fn action_with(&self, kind: &str, capability: &str) -> Option<String> {
        let events = self.timeline().await;
        let of_cap = |id: &Value| {
            events.iter().any(|e| {
                e["action_id"] == *id && e["kind"] == "action.submitted" && e["data"]["capability"] == capability
            })
        };
        events
            .iter()
            .find(|e| e["kind"] == kind && of_cap(&e["action_id"]))
            .map(|e| e["action_id"].as_str().unwrap().to_owned())
    }
}

/// Waits for a client run and parses its JSON line; fails with its stderr.
fn finish(mut child: Child) -> Value {
    let deadline = Instant::now() + STEP;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the MCP client did not finish within {STEP:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "the MCP client failed ({status}):\n{err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("client output {out:?}: {e}"))
}

fn text_of(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_else(|| panic!("no text content: {result}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_mcp_client_calls_upstream_tools_through_warden_policy() {
    let Some(python) = mcp_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start(&python, &dir.path().join("upstream"));
    let gw = Gateway::start(&python, dir.path(), &format!("url = {:?}", upstream.url()));

    // tools/list: every tool but the forbidden tier, with the upstream's schemas.
    let listed = gw.run(&["list"]);
    assert_eq!(listed["protocol"], "2026-07-28", "the SDK's default finds the sessionless version: {listed}");
    let tools = listed["tools"].as_array().unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["email.send", "files.write", "search.docs"], "db.drop (tier 3) is hidden: {listed}");
    let search = tools.iter().find(|t| t["name"] == "search.docs").unwrap();
    assert_eq!(search["inputSchema"]["required"], json!(["query"]), "the upstream's schema: {search}");
    assert_eq!(search["description"], "Searches the documents (read-only).");

    // Allowed: the upstream's result, as the upstream returns it to a direct client.
    let through = gw.run(&["call", "search.docs", r#"{"query": "rust"}"#]);
    assert_eq!(text_of(&through), "3 documents match rust", "{through}");
    assert_eq!(through["isError"], false);
    assert_eq!(through["structuredContent"], json!({"result": "3 documents match rust"}));
    let direct_cmd = {
        let mut c = Command::new(&python);
        c.arg(script("client.py")).args([&upstream.url(), "none", "call", "search", r#"{"query": "rust"}"#]);
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    };
    let mut direct_cmd = direct_cmd;
    let direct = finish(direct_cmd.spawn().unwrap());
    for field in ["content", "structuredContent", "isError"] {
        assert_eq!(through[field], direct[field], "{field} differs: through {through}, direct {direct}");
    }
    // The handshake versions answer the same, in an MCP session of their own.
    let legacy = gw.run(&["--mode", "legacy", "call", "search.docs", r#"{"query": "rust"}"#]);
    assert_eq!(legacy["protocol"], "2025-11-25", "{legacy}");
    assert_eq!(legacy["content"], through["content"], "{legacy}");

    // Forbidden: refused with the policy's reason, and the upstream never called.
    let refused = gw.run(&["call", "db.drop", r#"{"table": "users"}"#]);
    assert_eq!(refused["isError"], true, "{refused}");
    assert_eq!(text_of(&refused), "denied by policy: db.drop is tier 3");
    assert!(upstream.ran("drop").is_empty(), "{:?}", upstream.log());

    // The arguments decide: mail inside example.com runs at once ...
    let inside = gw.run(&["call", "email.send", r#"{"to": "ana@example.com", "body": "hi"}"#]);
    assert_eq!(text_of(&inside), "sent to ana@example.com", "{inside}");
    // ... mail elsewhere waits for a person, and runs once confirmed through the API.
    let outside = gw.client(&["call", "email.send", r#"{"to": "bob@elsewhere.org", "body": "hi"}"#]).spawn().unwrap();
    let deadline = Instant::now() + STEP;
    let id = loop {
        if let Some(id) = gw.action_with("confirmation.requested", "email.send").await {
            break id;
        }
        assert!(Instant::now() < deadline, "no confirmation was requested");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let waiting = gw.operator(reqwest::Method::GET, &format!("/v1/actions/{id}"), None).await;
    assert_eq!(waiting["state"], "awaiting_confirmation", "{waiting}");
    assert_eq!(waiting["args"]["to"], "bob@elsewhere.org");
    assert_eq!(waiting["session_id"], "mcp-bot", "a sessionless call: a turn in the agent's MCP session");
    assert_eq!(upstream.ran("send_email").len(), 1, "only the example.com mail ran before the confirmation");
    gw.operator(reqwest::Method::POST, &format!("/v1/actions/{id}/confirmation"), Some(json!({"approve": true}))).await;
    let confirmed = tokio::task::spawn_blocking(move || finish(outside)).await.unwrap();
    assert_eq!(text_of(&confirmed), "sent to bob@elsewhere.org", "{confirmed}");

    // Exactly once per key, and each key is the one warden sent.
    let log = upstream.log();
    let done: Vec<&Value> = log.iter().filter(|e| e["event"] == "done" && e["key"] != "none").collect();
    assert_eq!(done.len(), 4, "a search in each version, and two mails: {log:?}");
    for e in &done {
        assert_eq!(upstream.count("done", e["key"].as_str().unwrap()), 1, "{log:?}");
    }

    // The timeline follows the call from its submission to the upstream's result.
    let events = gw.timeline().await;
    let of_action: Vec<&Value> = events.iter().filter(|e| e["action_id"] == id.as_str()).collect();
    let kinds: Vec<&str> = of_action.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "action.submitted",
            "policy.decided",
            "confirmation.requested",
            "confirmation.given",
            "action.dispatched",
            "action.attempt",
            "action.succeeded"
        ],
        "{of_action:?}"
    );
    let attempt = of_action.iter().find(|e| e["kind"] == "action.attempt").unwrap();
    assert_eq!(attempt["data"]["outcome"]["result"]["content"], confirmed["content"]);
    let correlation = &of_action[0]["correlation_id"];
    assert!(of_action.iter().all(|e| e["correlation_id"] == *correlation));
    let key = of_action[0]["data"]["idempotency_key"].as_str().unwrap();
    assert_eq!(upstream.count("done", key), 1, "the upstream saw warden's key for this action");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_killed_mid_call_completes_the_call_once() {
    let Some(python) = mcp_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut upstream = Upstream::start(&python, &dir.path().join("upstream"));
    let gw = Gateway::start(&python, dir.path(), &format!("url = {:?}", upstream.url()));

    let call = gw.client(&["call", "files.write", r#"{"path": "/srv/report", "ms": 2000}"#]).spawn().unwrap();
    let deadline = Instant::now() + STEP;
    let key = loop {
        let started = upstream.log().into_iter().find(|e| e["event"] == "start" && e["tool"] == "write");
        if let Some(e) = started {
            break e["key"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "the write never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Mid-call: started, not done.
    upstream.kill_and_restart();
    let result = tokio::task::spawn_blocking(move || finish(call)).await.unwrap();
    assert_eq!(text_of(&result), "wrote /srv/report", "{result}");
    assert_eq!(result["isError"], false);
    assert_eq!(upstream.count("start", &key), 2, "the call was cut and sent again: {:?}", upstream.log());
    assert_eq!(upstream.count("done", &key), 1, "and completed once: {:?}", upstream.log());

    let id = gw.action_with("action.succeeded", "files.write").await.expect("the action succeeded");
    let action = gw.operator(reqwest::Method::GET, &format!("/v1/actions/{id}"), None).await;
    let attempts = action["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 2, "{action}");
    assert_eq!(attempts[0]["outcome"]["outcome"], "retryable", "{action}");
    assert_eq!(action["idempotency_key"], key.as_str());
}

/// The same server as a child of the node over stdio (`command = [..]`):
/// the node starts it on the first call, and when it is killed mid-call
/// starts it again, and the call is sent again with its key and completes
/// once.
#[tokio::test(flavor = "multi_thread")]
async fn a_stdio_upstream_killed_mid_call_is_started_again_and_completes_the_call_once() {
    let Some(python) = mcp_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("upstream");
    std::fs::create_dir_all(&logs).unwrap();
    let command: Vec<String> =
        [python.as_path(), &script("upstream.py"), Path::new("--stdio"), Path::new("--dir"), &logs]
            .iter()
            .map(|p| p.display().to_string())
            .collect();
    let gw = Gateway::start(&python, dir.path(), &format!("command = {command:?}"));

    let listed = gw.run(&["list"]);
    let search = listed["tools"].as_array().unwrap().iter().find(|t| t["name"] == "search.docs").cloned();
    assert_eq!(search.expect("listed")["inputSchema"]["required"], json!(["query"]), "{listed}");
    let found = gw.run(&["call", "search.docs", r#"{"query": "rust"}"#]);
    assert_eq!(text_of(&found), "3 documents match rust", "{found}");

    let call = gw.client(&["call", "files.write", r#"{"path": "/srv/report", "ms": 2000}"#]).spawn().unwrap();
    let deadline = Instant::now() + STEP;
    let (key, pid) = loop {
        let started = log_in(&logs).into_iter().find(|e| e["event"] == "start" && e["tool"] == "write");
        if let Some(e) = started {
            break (e["key"].as_str().unwrap().to_owned(), e["pid"].as_u64().unwrap());
        }
        assert!(Instant::now() < deadline, "the write never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Mid-call: started, not done.
    let killed = Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    assert!(killed.success(), "kill -9 {pid}");
    let result = tokio::task::spawn_blocking(move || finish(call)).await.unwrap();
    assert_eq!(text_of(&result), "wrote /srv/report", "{result}");

    let log = log_in(&logs);
    let starts: Vec<&Value> = log.iter().filter(|e| e["event"] == "start" && e["key"] == key.as_str()).collect();
    let dones: Vec<&Value> = log.iter().filter(|e| e["event"] == "done" && e["key"] == key.as_str()).collect();
    assert_eq!(starts.len(), 2, "the call was cut and sent again: {log:?}");
    assert_eq!(dones.len(), 1, "and completed once: {log:?}");
    assert_eq!(starts[0]["pid"], pid, "{log:?}");
    assert_ne!(dones[0]["pid"], pid, "by a process started after the kill: {log:?}");
}

/// What a raw JSON-RPC POST to /mcp answers: status and body.
async fn post(http: &reqwest::Client, url: &str, token: &str, session: Option<&str>, body: &str) -> (u16, Value) {
    let session = session.map(|s| ("mcp-session-id", s));
    post_with(http, url, token, session.as_slice(), body).await
}

/// A 2026-07-28 request: `method` with `params` (and the envelope), its
/// routing headers as `headers` say.
async fn post_modern(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    headers: &[(&str, &str)],
    method: &str,
    mut params: Value,
) -> (u16, Value) {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    post_with(http, url, token, headers, &body).await
}

async fn post_with(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let mut req = http
        .post(format!("{url}/mcp"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_owned());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let response = req.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
}

/// The official Rust SDK's client (`rmcp`, Streamable HTTP, the agent's
/// token as its bearer) lists and calls tools through warden: the same
/// answers the Python client gets.
#[tokio::test(flavor = "multi_thread")]
async fn an_rmcp_client_lists_and_calls_tools_through_warden() {
    use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
    use rmcp::transport::streamable_http_client::{StreamableHttpClientTransport, StreamableHttpClientTransportConfig};
    use rmcp::ServiceExt;
    let Some(python) = mcp_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start(&python, &dir.path().join("upstream"));
    let gw = Gateway::start(&python, dir.path(), &format!("url = {:?}", upstream.url()));

    let config = StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", gw.node.url)).auth_header(&gw.agent);
    let transport = StreamableHttpClientTransport::from_config(config);
    let info = ClientConfig::new(ClientCapabilities::default(), Implementation::new("warden-rmcp-test", "0.1.0"));
    let client = tokio::time::timeout(STEP, info.serve(transport)).await.expect("initialize in time").unwrap();

    let listed = serde_json::to_value(client.list_tools(Default::default()).await.unwrap()).unwrap();
    let mut names: Vec<&str> =
        listed["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["email.send", "files.write", "search.docs"], "db.drop (tier 3) is hidden: {listed}");

    let call = |name: &'static str, args: Value| {
        let params = CallToolRequestParams::new(name).with_arguments(args.as_object().cloned().unwrap());
        let client = &client;
        async move { serde_json::to_value(client.call_tool(params).await.unwrap()).unwrap() }
    };
    let found = call("search.docs", json!({"query": "rust"})).await;
    assert_eq!(text_of(&found), "3 documents match rust", "{found}");
    assert_eq!(found["structuredContent"], json!({"result": "3 documents match rust"}));
    assert_ne!(found["isError"], true, "{found}");
    let refused = call("db.drop", json!({"table": "users"})).await;
    assert_eq!(refused["isError"], true, "{refused}");
    assert_eq!(text_of(&refused), "denied by policy: db.drop is tier 3");
    assert!(upstream.ran("drop").is_empty(), "{:?}", upstream.log());
    assert_eq!(upstream.ran("search").len(), 1, "{:?}", upstream.log());
    client.cancel().await.unwrap();
}

/// `warden mcp import` against the real upstream: one stanza per tool, at
/// tier 2, in a file the node's config loader accepts; an existing file is
/// not overwritten, and an upstream that is not there is a clear error.
#[test]
fn mcp_import_writes_a_capability_per_upstream_tool_that_a_node_loads() {
    let Some(python) = mcp_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start(&python, &dir.path().join("upstream"));
    let caps = dir.path().join("mcp-caps.toml");
    let import = |url: &str| {
        let args = ["mcp", "import", "--url", url, "--prefix", "up.", "--out", caps.to_str().unwrap()];
        let out = Command::new(env!("CARGO_BIN_EXE_warden")).args(args).stdin(Stdio::null()).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, stderr) = import(&upstream.url());
    assert!(ok, "{stderr}");
    assert!(stderr.contains("5 tools") && stderr.contains("at tier 2"), "{stderr}");
    let written = std::fs::read_to_string(&caps).unwrap();

    let config = dir.path().join("node.toml");
    std::fs::write(&config, "capabilities = \"mcp-caps.toml\"\n").unwrap();
    let settings = warden::config::Settings::load(Some(&config), Default::default()).unwrap();
    let mut found: Vec<(String, String)> = Vec::new();
    for c in &settings.node.capabilities {
        assert_eq!(c.tier, warden_actors::domain::Tier::Confirm, "{}", c.name);
        let Some((warden_actors::domain::McpUpstream::Http(url), tool)) = c.executor.mcp() else {
            panic!("{} is not backed by the upstream: {:?}", c.name, c.executor)
        };
        assert_eq!(url, upstream.url());
        found.push((c.name.clone(), tool.to_owned()));
    }
    found.sort();
    let want: Vec<(String, String)> =
        ["drop", "echo", "search", "send_email", "write"].iter().map(|t| (format!("up.{t}"), t.to_string())).collect();
    assert_eq!(found, want);

    let (ok, stderr) = import(&upstream.url());
    assert!(!ok && stderr.contains("not overwritten"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&caps).unwrap(), written);
    std::fs::remove_file(&caps).unwrap();
    let closed = format!("http://127.0.0.1:{}/mcp", warden::local::free_ports(1).unwrap());
    let (ok, stderr) = import(&closed);
    assert!(!ok && stderr.contains("listing the tools of"), "{stderr}");
    assert!(!caps.exists(), "nothing written for an upstream that is not there");

    // A stdio upstream: its command after `--`, started for the listing.
    let logs = dir.path().join("stdio");
    let server = script("upstream.py");
    let command = [python.to_str().unwrap(), server.to_str().unwrap(), "--stdio", "--dir"];
    let args = ["mcp", "import", "--out", caps.to_str().unwrap(), "--"];
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .args(command)
        .arg(&logs)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("5 tools of stdio:"), "{stderr}");
    let settings = warden::config::Settings::load(Some(&config), Default::default()).unwrap();
    for c in &settings.node.capabilities {
        let Some((warden_actors::domain::McpUpstream::Stdio(words), _)) = c.executor.mcp() else {
            panic!("{} is not backed by the stdio upstream: {:?}", c.name, c.executor)
        };
        assert_eq!(words.last().map(PathBuf::from), Some(logs.clone()), "{words:?}");
    }
    assert_eq!(settings.node.capabilities.len(), 5);
}

#[tokio::test]
async fn malformed_mcp_requests_get_json_rpc_errors() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    let agent = create_token(&tokens, "bot", Role::Agent).unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "token_file = \"tokens.toml\"\n[[capability]]\nname = \"search.web\"\ntier = 0\n").unwrap();
    let node = NodeProcess::start(&dir.path().join("data"), Some(&config));
    let http = reqwest::Client::new();
    let url = node.url.as_str();

    let code = |v: &Value| v["error"]["code"].as_i64();
    let (s, v) = post(&http, url, &agent, None, "{not json").await;
    assert_eq!((s, code(&v)), (400, Some(-32700)), "{v}");
    let (s, v) = post(&http, url, &agent, None, "[]").await;
    assert_eq!((s, code(&v)), (400, Some(-32600)), "{v}");
    let (s, v) = post(&http, url, &agent, None, r#"{"jsonrpc": "1.0", "id": 1, "method": "ping"}"#).await;
    assert_eq!((s, code(&v)), (400, Some(-32600)), "{v}");
    let (s, v) = post(&http, url, &agent, None, r#"{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}"#).await;
    assert_eq!((s, code(&v)), (400, Some(-32600)), "no session: {v}");
    let (s, v) = post(&http, url, &agent, Some("turn_nope"), r#"{"jsonrpc": "2.0", "id": 1, "method": "ping"}"#).await;
    assert_eq!((s, code(&v)), (404, Some(-32600)), "an unknown session: {v}");
    let (s, _) = post(&http, url, "wdn_wrong", None, r#"{"jsonrpc": "2.0", "id": 1, "method": "ping"}"#).await;
    assert_eq!(s, 401, "an unknown token");

    let init = r#"{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "1999-01-01"}}"#;
    let response = http
        .post(format!("{url}/mcp"))
        .bearer_auth(&agent)
        .header("content-type", "application/json")
        .body(init)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["result"]["protocolVersion"], "2025-11-25", "an unknown version gets the newest: {v}");

    let s = Some(session.as_str());
    let (st, v) = post(&http, url, &agent, s, r#"{"jsonrpc": "2.0", "method": "notifications/initialized"}"#).await;
    assert_eq!((st, &v), (202, &Value::Null));
    let (st, v) = post(&http, url, &agent, s, r#"{"jsonrpc": "2.0", "id": 2, "method": "resources/list"}"#).await;
    assert_eq!((st, code(&v)), (200, Some(-32601)), "{v}");
    let (st, v) =
        post(&http, url, &agent, s, r#"{"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {}}"#).await;
    assert_eq!((st, code(&v)), (200, Some(-32602)), "no name: {v}");
    let call = r#"{"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "nope"}}"#;
    let (st, v) = post(&http, url, &agent, s, call).await;
    assert_eq!((st, code(&v)), (200, Some(-32602)), "an unknown tool: {v}");
    let call =
        r#"{"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "search.web", "arguments": [1]}}"#;
    let (st, v) = post(&http, url, &agent, s, call).await;
    assert_eq!((st, code(&v)), (200, Some(-32602)), "arguments not an object: {v}");
    let call = r#"{"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"}"#;
    let (st, v) = post(&http, url, &agent, s, call).await;
    assert_eq!((st, code(&v)), (400, Some(-32600)), "an id that is an object: {v}");

    // A capability that is not an MCP tool answers with its action's state.
    let call =
        r#"{"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": "search.web", "arguments": {}}}"#;
    let (st, v) = post(&http, url, &agent, s, call).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["id"], 6);
    assert_eq!(v["result"]["structuredContent"]["state"], "succeeded", "{v}");
    // Sent again (same id, same session): the same action, not a second one.
    let (_, again) = post(&http, url, &agent, s, call).await;
    assert_eq!(again["result"]["structuredContent"]["action_id"], v["result"]["structuredContent"]["action_id"]);
    // The node still serves.
    let (st, v) = post(&http, url, &agent, s, r#"{"jsonrpc": "2.0", "id": 7, "method": "ping"}"#).await;
    assert_eq!((st, &v["result"]), (200, &json!({})));

    // 2026-07-28: no session; the routing headers must agree with the body.
    let v26 = ("mcp-protocol-version", "2026-07-28");
    let (st, v) =
        post_modern(&http, url, &agent, &[v26, ("mcp-method", "server/discover")], "server/discover", json!({})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["result"]["supportedVersions"][0], "2026-07-28", "{v}");
    assert_eq!(v["result"]["resultType"], "complete", "{v}");
    let listing = [v26, ("mcp-method", "tools/list")];
    let (st, v) = post_modern(&http, url, &agent, &listing, "tools/list", json!({})).await;
    assert_eq!((st, &v["result"]["tools"][0]["name"]), (200, &json!("search.web")), "{v}");
    assert_eq!((&v["result"]["ttlMs"], &v["result"]["cacheScope"]), (&json!(0), &json!("private")), "{v}");
    let call = json!({"name": "search.web", "arguments": {}});
    let (st, v) = post_modern(&http, url, &agent, &listing, "tools/call", call.clone()).await;
    assert_eq!((st, code(&v)), (400, Some(-32020)), "Mcp-Method says tools/list: {v}");
    let calling = [v26, ("mcp-method", "tools/call"), ("mcp-name", "other")];
    let (st, v) = post_modern(&http, url, &agent, &calling, "tools/call", call.clone()).await;
    assert_eq!((st, code(&v)), (400, Some(-32020)), "Mcp-Name names another tool: {v}");
    let calling = [v26, ("mcp-method", "tools/call"), ("mcp-name", "search.web")];
    let (st, v) = post_modern(&http, url, &agent, &calling, "tools/call", call.clone()).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["result"]["structuredContent"]["state"], "succeeded", "{v}");
    let (_, again) = post_modern(&http, url, &agent, &calling, "tools/call", call).await;
    let first = &v["result"]["structuredContent"]["action_id"];
    assert_ne!(&again["result"]["structuredContent"]["action_id"], first, "no session: each call is its own");
    let unknown = [v26, ("mcp-method", "tools/call"), ("mcp-name", "nope")];
    let (st, v) = post_modern(&http, url, &agent, &unknown, "tools/call", json!({"name": "nope"})).await;
    assert_eq!((st, code(&v)), (400, Some(-32602)), "an unknown tool: {v}");
    let pinging = [v26, ("mcp-method", "ping")];
    let (st, v) = post_modern(&http, url, &agent, &pinging, "ping", json!({})).await;
    assert_eq!((st, code(&v)), (404, Some(-32601)), "no ping at 2026-07-28: {v}");
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}).to_string();
    let (st, v) = post_with(&http, url, &agent, &listing, &body).await;
    assert_eq!((st, code(&v)), (400, Some(-32602)), "no envelope: {v}");
    let future = [("mcp-protocol-version", "2099-01-01"), ("mcp-method", "tools/list")];
    let (st, v) = post_with(&http, url, &agent, &future, &body).await;
    assert_eq!((st, code(&v)), (400, Some(-32022)), "{v}");
    assert_eq!(v["error"]["data"]["requested"], "2099-01-01", "{v}");
}

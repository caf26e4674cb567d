//! The HTTP API v1 against the real binary: each endpoint's success and error
//! paths, the http executor, kill -9 mid-execution, graceful shutdown, SSE,
//! metrics, and the demo workload.

mod common;

use common::api::Api;
use common::process::NodeProcess;
use common::tool::{Tool, ToolState};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// This file's helpers on the shared client.
impl Api {
    async fn turn(&self, session: &str) -> String {
        let (s, b) = self.post(&format!("/v1/sessions/{session}/turns"), json!({})).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["turn_id"].as_str().unwrap().to_owned()
    }

    async fn submit(&self, turn: &str, capability: &str, args: Value) -> Value {
        let (s, b) = self.post("/v1/actions", json!({"turn_id": turn, "capability": capability, "args": args})).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        b
    }

    /// Long-polls until the action is terminal.
    async fn finished(&self, id: &str) -> Value {
        for _ in 0..10 {
            let (s, a) = self.get(&format!("/v1/actions/{id}?wait_ms=5000")).await;
            assert_eq!(s, StatusCode::OK, "{a}");
            if !matches!(a["state"].as_str(), Some("awaiting_confirmation" | "pending" | "running")) {
                return a;
            }
        }
        panic!("action {id} did not finish");
    }
}

fn write_config(dir: &Path, tool_url: &str) -> std::path::PathBuf {
    let path = dir.join("node.toml");
    let text = format!(
        r#"
[[capability]]
name = "search.web"
tier = 0
[[capability]]
name = "email.send"
tier = 2
[[capability]]
name = "db.drop"
tier = 3
[[capability]]
name = "flaky.sim"
tier = 1
max_attempts = 2
backoff_ms = 5
[[capability]]
name = "crm.update"
tier = 1
max_attempts = 5
backoff_ms = 20
timeout_ms = 20000
executor = {{ kind = "http", url = "{tool_url}" }}
"#
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn every_endpoint_answers_one_turn_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "http://127.0.0.1:9/unused");
    let node = NodeProcess::start(&dir.path().join("data"), Some(&config));
    let api = Api::new(&node.url);

    let (s, health) = api.get("/v1/health").await;
    assert_eq!((s, health["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, cluster) = api.get("/v1/cluster").await;
    assert_eq!((s, cluster["nodes"].as_array().unwrap().len()), (StatusCode::OK, 1));
    let (_, caps) = api.get("/v1/capabilities").await;
    assert_eq!(caps["capabilities"].as_array().unwrap().len(), 5);

    let (s, t) = api.post("/v1/sessions/agent-1/turns", json!({"trust": "normal", "summary": "plan a trip"})).await;
    assert_eq!(s, StatusCode::CREATED);
    let turn = t["turn_id"].as_str().unwrap();
    let cid = t["correlation_id"].as_str().unwrap();
    let (s, _) =
        api.post(&format!("/v1/turns/{turn}/model-calls"), json!({"model": "m", "latency_ms": 80, "ok": true})).await;
    assert_eq!(s, StatusCode::CREATED);
    let put = json!({"value": {"city": "Lisbon"}, "tags": ["trip"], "turn_id": turn});
    let (s, item) = api.call(reqwest::Method::PUT, "/v1/memory/agent-1/dest", Some(put)).await;
    assert_eq!((s, item["version"].as_u64()), (StatusCode::OK, Some(1)));
    let (s, item) = api.get("/v1/memory/agent-1/dest").await;
    assert_eq!((s, &item["value"]["city"]), (StatusCode::OK, &json!("Lisbon")));
    let (s, recall) = api.get(&format!("/v1/memory/agent-1?tag=trip&q=lisbon&limit=5&turn_id={turn}")).await;
    assert_eq!((s, recall["items"].as_array().unwrap().len()), (StatusCode::OK, 1));

    let search = api.submit(turn, "search.web", json!({"q": "flights"})).await;
    assert_eq!(api.finished(search["action_id"].as_str().unwrap()).await["state"], "succeeded");

    let email = api.submit(turn, "email.send", json!({"to": "me"})).await;
    assert_eq!(email["state"], "awaiting_confirmation");
    let id = email["action_id"].as_str().unwrap();
    let (s, _) = api.post(&format!("/v1/actions/{id}/confirmation"), json!({"approve": true, "by": "alice"})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(api.finished(id).await["state"], "succeeded");

    let denied = api.submit(turn, "db.drop", json!({})).await;
    assert_eq!((denied["state"].as_str(), denied["decision"]["decision"].as_str()), (Some("denied"), Some("deny")));

    let failing = api.submit(turn, "flaky.sim", json!({"_sim": {"fail": true}})).await;
    let failed = api.finished(failing["action_id"].as_str().unwrap()).await;
    assert_eq!(failed["state"], "dead_lettered");
    let (_, dlq) = api.get("/v1/dlq").await;
    let entry = dlq["entries"][0]["id"].as_str().unwrap().to_owned();
    let (s, prov) = api.get(&format!("/v1/dlq/{entry}/provenance")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(prov["chain"][0]["kind"], "turn.opened");
    let (s, replay) = api.post(&format!("/v1/dlq/{entry}/replay"), json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(replay["replay_of"], entry.as_str());

    let (s, breakers) = api.get("/v1/breakers").await;
    assert_eq!((s, breakers["breakers"].as_array().unwrap().len()), (StatusCode::OK, 5));
    let (_, sessions) = api.get("/v1/sessions?active=true").await;
    assert!(sessions["sessions"].as_array().unwrap().iter().any(|s| s["id"] == "agent-1"));
    let (_, page) = api.get("/v1/timeline?after=2&limit=3").await;
    let seqs: Vec<u64> = page["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [3, 4, 5]);
    let (s, window) = api.get("/v1/timeline?from=2020-01-01T00:00:00Z&to=2999-01-01T00:00:00Z&limit=1000").await;
    assert_eq!(s, StatusCode::OK);
    assert!(window["events"].as_array().unwrap().len() > 10);
    let (s, graph) = api.get(&format!("/v1/correlations/{cid}/graph")).await;
    assert_eq!(s, StatusCode::OK);
    let kinds: Vec<&str> = graph["nodes"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for k in ["turn.opened", "model.call", "memory.write", "memory.recall", "confirmation.given", "dlq.entered"] {
        assert!(kinds.contains(&k), "{k} missing from the graph");
    }

    let page = reqwest::get(format!("{}/", node.url)).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("<title>warden</title>"));
}

#[tokio::test]
async fn bad_requests_get_clear_4xx_errors_in_the_contract_shape() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), None);
    let api = Api::new(&node.url);
    let turn = api.turn("s").await;
    let raw = |method: reqwest::Method, path: &str, body: Vec<u8>| {
        let req = api.http.request(method, format!("{}{path}", api.url)).body(body);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status();
            let cid = r.headers().get("x-correlation-id").map(|v| v.to_str().unwrap().to_owned());
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["correlation_id"].as_str(), cid.as_deref(), "the error names the echoed id");
            (status, body["error"]["code"].as_str().unwrap().to_owned())
        }
    };
    let post = reqwest::Method::POST;
    assert_eq!(
        raw(post.clone(), "/v1/actions", b"{not json".to_vec()).await,
        (StatusCode::BAD_REQUEST, "malformed_json".into())
    );
    assert_eq!(raw(post.clone(), "/v1/actions", vec![]).await, (StatusCode::BAD_REQUEST, "malformed_json".into()));
    let wrong_type = json!({"turn_id": 7, "capability": "x"}).to_string().into_bytes();
    assert_eq!(raw(post.clone(), "/v1/actions", wrong_type).await, (StatusCode::BAD_REQUEST, "bad_input".into()));
    let unknown_field = json!({"turn_id": turn, "capability": "search.web", "argz": {}}).to_string().into_bytes();
    assert_eq!(raw(post.clone(), "/v1/actions", unknown_field).await.0, StatusCode::BAD_REQUEST);
    let big = vec![b' '; (1 << 20) + 1];
    assert_eq!(
        raw(post.clone(), "/v1/actions", big).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".into())
    );
    let unknown_cap = json!({"turn_id": turn, "capability": "nope"}).to_string().into_bytes();
    assert_eq!(
        raw(post.clone(), "/v1/actions", unknown_cap).await,
        (StatusCode::NOT_FOUND, "unknown_capability".into())
    );
    let args_array = json!({"turn_id": turn, "capability": "search.web", "args": [1]}).to_string().into_bytes();
    assert_eq!(raw(post.clone(), "/v1/actions", args_array).await, (StatusCode::BAD_REQUEST, "bad_input".into()));
    let get = reqwest::Method::GET;
    assert_eq!(
        raw(get.clone(), "/v1/actions/act_nope", vec![]).await,
        (StatusCode::NOT_FOUND, "unknown_action".into())
    );
    assert_eq!(raw(get.clone(), "/v1/actions/act_nope?wait_ms=soon", vec![]).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(raw(get.clone(), "/v1/timeline?from=yesterday", vec![]).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(raw(get.clone(), "/v1/nothing/here", vec![]).await, (StatusCode::NOT_FOUND, "not_found".into()));
    assert_eq!(raw(reqwest::Method::DELETE, "/v1/actions", vec![]).await.0, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        raw(post.clone(), "/v1/dlq/dlq_nope/replay", vec![]).await,
        (StatusCode::NOT_FOUND, "unknown_dlq_entry".into())
    );
    assert_eq!(raw(get.clone(), "/v1/memory/ns/missing", vec![]).await.0, StatusCode::NOT_FOUND);

    let done = api.submit(&turn, "search.web", json!({})).await;
    let id = done["action_id"].as_str().unwrap();
    api.finished(id).await;
    let confirm = json!({"approve": true, "by": "a"}).to_string().into_bytes();
    let path = format!("/v1/actions/{id}/confirmation");
    assert_eq!(raw(post.clone(), &path, confirm).await, (StatusCode::CONFLICT, "not_awaiting_confirmation".into()));

    // A given correlation id is echoed; a bad one is refused.
    let r =
        api.http.get(format!("{}/v1/health", api.url)).header("X-Correlation-Id", "trace-123").send().await.unwrap();
    assert_eq!(r.headers()["x-correlation-id"], "trace-123");
    let r =
        api.http.get(format!("{}/v1/health", api.url)).header("X-Correlation-Id", "has space").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // None of that hurt the node.
    assert_eq!(api.get("/v1/health").await.1["status"], "ok");
}

#[tokio::test]
async fn http_executor_retries_server_errors_with_one_idempotency_key() {
    let tool = Tool::start(ToolState { fail_first: 2, ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &tool.url);
    let node = NodeProcess::start(&dir.path().join("data"), Some(&config));
    let api = Api::new(&node.url);
    let turn = api.turn("s").await;
    let a = api.submit(&turn, "crm.update", json!({"contact": 7})).await;
    let done = api.finished(a["action_id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded");
    assert_eq!(done["attempts"].as_array().unwrap().len(), 3, "succeeds on attempt 3");
    let s = tool.state.lock();
    assert_eq!(s.keys.len(), 3);
    assert!(s.keys.iter().all(|k| k == &s.keys[0] && !k.is_empty()), "one key: {:?}", s.keys);
    assert_eq!(s.keys[0], done["idempotency_key"].as_str().unwrap());
    assert_eq!(s.completed.get(&s.keys[0]), Some(&1), "no call after the successful one");
}

#[tokio::test]
async fn kill_9_mid_execution_then_restart_completes_the_action_with_the_same_key() {
    // The first call hangs (the node dies during it); later calls answer at once.
    let tool = Tool::start(ToolState { hold_first: 1, hold: Duration::from_secs(600), ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &tool.url);
    let mut node = NodeProcess::start(&dir.path().join("data"), Some(&config));
    let api = Api::new(&node.url);
    let turn = api.turn("s").await;
    let a = api.submit(&turn, "crm.update", json!({"contact": 9})).await;
    let id = a["action_id"].as_str().unwrap().to_owned();
    // Wait until the tool has the request in hand.
    tokio::time::timeout(Duration::from_secs(20), async {
        while tool.state.lock().requests == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the tool is called");

    node.restart(); // kill -9, then start on the same data dir
    let api = Api::new(&node.url);
    let done = api.finished(&id).await;
    assert_eq!(done["state"], "succeeded");
    let attempts = done["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["outcome"]["outcome"], "interrupted");
    let s = tool.state.lock();
    assert_eq!(s.keys.len(), 2, "the tool saw the key at most twice");
    assert!(s.keys.iter().all(|k| k == &s.keys[0]));
    assert_eq!(s.completed.get(&s.keys[0]), Some(&1), "and completed it once");
}

#[tokio::test]
async fn sigterm_stops_the_node_cleanly_and_nothing_acknowledged_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(dir.path(), None);
    let api = Api::new(&node.url);
    let turn = api.turn("s").await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(api.submit(&turn, "notes.write", json!({"i": i})).await["action_id"].as_str().unwrap().to_owned());
    }
    let status = node.signal_and_wait("TERM", Duration::from_secs(20)).expect("exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    let node = NodeProcess::start(dir.path(), None);
    let api = Api::new(&node.url);
    for id in ids {
        assert_eq!(api.finished(&id).await["state"], "succeeded");
    }
}

#[tokio::test]
async fn live_events_stream_as_server_sent_events() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), None);
    let api = Api::new(&node.url);
    let mut resp = api.http.get(format!("{}/v1/events/stream", api.url)).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let turn = api.turn("sse").await;
    let mut seen = String::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let chunk = resp.chunk().await.expect("the stream stays readable");
            let chunk = chunk.unwrap_or_else(|| panic!("the stream ended before turn.opened arrived; got: {seen}"));
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("event:turn.opened") && seen.contains(&turn) {
                return;
            }
        }
    })
    .await
    .expect("turn.opened arrives on the stream");
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_count_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), None);
    let api = Api::new(&node.url);
    let turn = api.turn("m").await;
    for _ in 0..3 {
        let a = api.submit(&turn, "search.web", json!({})).await;
        api.finished(a["action_id"].as_str().unwrap()).await;
    }
    api.submit(&turn, "db.drop_table", json!({})).await;
    // Counting happens off the request path: wait for it to catch up.
    let samples = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let text = reqwest::get(format!("{}/metrics", api.url)).await.unwrap().text().await.unwrap();
            let lines = text.lines().map(|l| Ok(l.to_owned()));
            let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition text");
            let count = |cap: &str, outcome: &str| {
                scrape
                    .samples
                    .iter()
                    .find(|s| {
                        s.metric == "warden_actions_total"
                            && s.labels.get("capability") == Some(cap)
                            && s.labels.get("outcome") == Some(outcome)
                    })
                    .map(|s| match s.value {
                        // prometheus-parse files `_total` samples of a counter family as untyped.
                        prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                        _ => -1.0,
                    })
            };
            if count("search.web", "succeeded") == Some(3.0) && count("db.drop_table", "denied") == Some(1.0) {
                return scrape;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("outcome counters reach the expected values");
    let names: Vec<&str> = samples.samples.iter().map(|s| s.metric.as_str()).collect();
    assert!(names.contains(&"warden_dlq_depth"));
    assert!(names.contains(&"warden_breaker_state"));
    assert!(names.iter().any(|n| n.starts_with("warden_attempt_latency_seconds")));
    let resident = samples.samples.iter().find(|s| s.metric == "warden_resident_memory_bytes").map(|s| &s.value);
    assert!(
        matches!(resident, Some(prometheus_parse::Value::Gauge(v)) if *v > 1e6),
        "the node's resident set, read at scrape: {resident:?}"
    );
}

#[tokio::test]
async fn demo_of_500_actions_against_a_fresh_node_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), None);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["demo", "--target", &node.url, "--actions", "500", "--rate", "1000"])
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let line = |label: &str| -> u64 {
        let l = stdout.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("no {label} line"));
        l.split_whitespace().last().unwrap().parse().unwrap()
    };
    assert_eq!(line("submitted"), 500);
    assert_eq!(line("lost"), 0);
    let terminal: u64 = ["succeeded", "failed", "dead_lettered", "denied", "rejected", "expired"]
        .iter()
        .filter(|s| stdout.lines().any(|l| l.trim_start().starts_with(*s)))
        .map(|s| line(s))
        .sum();
    assert_eq!(terminal, 500, "every action is accounted for:\n{stdout}");
    assert!(line("denied") > 0 && line("succeeded") > 0, "the mix covers tiers:\n{stdout}");
}

#[tokio::test]
async fn demo_degrade_moves_the_capability_slo_seen_by_v1_slo_metrics_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), None);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["demo", "--target", &node.url, "--actions", "200", "--rate", "1000", "--degrade", "search.web"])
        .args(["--degrade-latency-ms-per-min", "6000", "--degrade-fail-per-min", "0"])
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "demo failed: {}", String::from_utf8_lossy(&out.stderr));
    let api = Api::new(&node.url);
    for scope in ["", "?scope=node"] {
        let (s, view) = api.get(&format!("/v1/slo{scope}")).await;
        assert_eq!(s, StatusCode::OK, "{view}");
        let caps = view["capabilities"].as_array().unwrap();
        let search = caps.iter().find(|c| c["capability"] == "search.web").expect("search.web is monitored");
        let minute = search["windows"].as_array().unwrap().iter().find(|w| w["window"] == "1m").unwrap();
        // Half the steps call it (plus the mix's own share), each from 100 ms ±25 %, growing.
        assert!(minute["count"].as_u64().unwrap() >= 100, "{minute}");
        assert!(minute["p95_ms"].as_u64().unwrap() >= 100, "the sim tool was asked to be slow: {minute}");
        assert!(
            minute["p50_ms"].as_u64() <= minute["p95_ms"].as_u64()
                && minute["p95_ms"].as_u64() <= minute["p99_ms"].as_u64()
        );
        assert_eq!(search["slo"]["p95_ms"], 1000);
        assert_eq!(search["burn"].as_array().unwrap().len(), 3, "page 1h/5m, page 6h/30m, ticket 3d/6h");
    }
    let (s, err) = api.get("/v1/slo?scope=galaxy").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{err}");
    let metrics = reqwest::get(format!("{}/metrics", node.url)).await.unwrap().text().await.unwrap();
    for name in
        ["warden_slo_p95_seconds{", "warden_slo_burn_rate{", "warden_slo_attempts_total{", "warden_slo_error_budget{"]
    {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["status", "--target", &node.url])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    let line = text.lines().find(|l| l.trim_start().starts_with("search.web")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("/ 1000 ms"), "{line}");
}

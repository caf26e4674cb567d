//! Who may do what, against real processes: every route of the route table
//! (iterated, so a route added later is covered without touching this file)
//! × {no token, bad token, agent, operator, admin} answers 401 / 403 / 2xx
//! exactly as the route's access says, a refused request changes nothing (the
//! replicated state's digest is the same before and after), and the
//! principal — never a client-written name — is what the log records.

mod common;

use common::process::{free_ports, loopback, node_args, NodeProcess};
use common::serial::one_cluster_at_a_time;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use warden::auth::{create_token, Access, Role};
use warden::http::routes::{Endpoint, Route, ROUTES};

/// Bound on every wait of this test.
const WAIT: Duration = Duration::from_secs(30);

/// The five callers of the matrix.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Caller {
    NoToken,
    BadToken,
    As(Role),
}

const CALLERS: [Caller; 5] =
    [Caller::NoToken, Caller::BadToken, Caller::As(Role::Agent), Caller::As(Role::Operator), Caller::As(Role::Admin)];

/// Principal names of the three tokens.
fn principal(role: Role) -> &'static str {
    match role {
        Role::Agent => "bot",
        Role::Operator => "ops",
        Role::Admin => "root",
    }
}

struct Tokens {
    agent: String,
    operator: String,
    admin: String,
    /// A second agent ("bot-2"): it must not see the first one's actions.
    other_agent: String,
}

impl Tokens {
    fn of(&self, role: Role) -> &str {
        match role {
            Role::Agent => &self.agent,
            Role::Operator => &self.operator,
            Role::Admin => &self.admin,
        }
    }
}

/// One request: path (with query) and JSON body.
struct Call {
    path: String,
    body: Option<Value>,
}

struct Harness {
    url: String,
    tokens: Tokens,
    http: reqwest::Client,
    _nodes: Vec<NodeProcess>,
}

fn write_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("node.toml");
    let text = r#"
token_file = "tokens.toml"
confirm_ttl_ms = 600000
[raft]
auto_join = false
[[capability]]
name = "search.web"
tier = 0
[[capability]]
name = "email.send"
tier = 2
[[capability]]
name = "flaky.sim"
tier = 1
max_attempts = 1
"#;
    std::fs::write(&path, text).unwrap();
    path
}

impl Harness {
    /// Node a founds a cluster alone; b and c wait to be added (auto-join off),
    /// so membership changes can be asked for and refused.
    async fn start(dir: &Path) -> Harness {
        let file = dir.join("tokens.toml");
        let tokens = Tokens {
            agent: create_token(&file, principal(Role::Agent), Role::Agent).unwrap(),
            operator: create_token(&file, principal(Role::Operator), Role::Operator).unwrap(),
            admin: create_token(&file, principal(Role::Admin), Role::Admin).unwrap(),
            other_agent: create_token(&file, "bot-2", Role::Agent).unwrap(),
        };
        let config = write_config(dir);
        let cookie = dir.join("cookie");
        std::fs::write(&cookie, "test-cookie-0123456789").unwrap();
        let base = free_ports(3);
        let mut nodes = Vec::new();
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            let seeds: Vec<String> = (0..3u16).filter(|j| *j as usize != i).map(|j| loopback(base + j)).collect();
            let mut args = node_args(name, base + i as u16, &seeds, &cookie);
            if i == 0 {
                args.extend(["--bootstrap".into(), "a".into()]);
            }
            nodes.push(NodeProcess::start_with(&dir.join(name), Some(&config), &args));
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
        let h = Harness { url: nodes[0].url.clone(), tokens, http, _nodes: nodes };
        h.peers_up().await;
        h
    }

    async fn send(&self, caller: Caller, method: Method, call: &Call) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{}", self.url, call.path));
        match caller {
            Caller::NoToken => {}
            Caller::BadToken => req = req.bearer_auth("wdn_not-a-token-of-this-node"),
            Caller::As(role) => req = req.bearer_auth(self.tokens.of(role)),
        }
        if let Some(b) = &call.body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("node answers");
        let status = resp.status();
        let streaming =
            resp.headers().get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if streaming {
            return (status, Value::Null);
        }
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.send(Caller::As(Role::Admin), method, &Call { path: path.into(), body }).await
    }

    /// Node a's replicated state: (applied index, digest).
    async fn digest(&self) -> (u64, String) {
        let (s, d) = self.admin(Method::GET, "/v1/cluster/digest", None).await;
        assert_eq!(s, StatusCode::OK, "{d}");
        (d["applied_index"].as_u64().unwrap(), d["digest"].as_str().unwrap().to_owned())
    }

    /// The digest once nothing is being applied: the same on two reads 200 ms apart.
    async fn settled_digest(&self) -> (u64, String) {
        let deadline = Instant::now() + WAIT;
        let mut last = self.digest().await;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = self.digest().await;
            if now == last {
                return now;
            }
            assert!(Instant::now() < deadline, "the state kept changing");
            last = now;
        }
    }

    async fn peers_up(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let (_, view) = self.admin(Method::GET, "/v1/cluster", None).await;
            let up = view["nodes"].as_array().map_or(0, |n| n.iter().filter(|n| n["state"] == "up").count());
            if up == 3 && view["leader"] == "a" {
                return;
            }
            assert!(Instant::now() < deadline, "peers not up: {view}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn members(&self) -> Vec<String> {
        let (_, view) = self.admin(Method::GET, "/v1/cluster", None).await;
        let members = view["raft"]["members"].as_array().cloned().unwrap_or_default();
        members.iter().filter(|m| m["voter"] == true).map(|m| m["name"].as_str().unwrap().to_owned()).collect()
    }

    async fn leader(&self) -> String {
        let (_, view) = self.admin(Method::GET, "/v1/cluster", None).await;
        view["leader"].as_str().unwrap_or_default().to_owned()
    }

    async fn turn(&self) -> Value {
        let (s, t) = self.admin(Method::POST, "/v1/sessions/auth-test/turns", Some(json!({}))).await;
        assert_eq!(s, StatusCode::CREATED, "{t}");
        t
    }

    async fn submit(&self, capability: &str, args: Value) -> String {
        self.submit_as(Caller::As(Role::Admin), capability, args).await
    }

    /// Submits an action as `caller`; returns its id.
    async fn submit_as(&self, caller: Caller, capability: &str, args: Value) -> String {
        let turn = self.turn().await;
        let body = json!({"turn_id": turn["turn_id"], "capability": capability, "args": args});
        let (s, a) = self.send(caller, Method::POST, &Call { path: "/v1/actions".into(), body: Some(body) }).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{a}");
        a["action_id"].as_str().unwrap().to_owned()
    }

    /// The repository's bundle under a revision never used before: it passes
    /// the gate and hashes differently from every bundle pushed so far.
    fn fresh_bundle(&self) -> Value {
        static PUSHED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = PUSHED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let mut files = warden_actors::authz::Bundle::load_dir(&dir).unwrap().files().clone();
        files
            .insert(".manifest".into(), json!({"revision": format!("auth-test-{n}"), "roots": ["warden"]}).to_string());
        json!({ "files": files, "reason": "auth test" })
    }

    async fn push(&self) {
        let (s, v) = self.admin(Method::PUT, "/v1/policies", Some(self.fresh_bundle())).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }

    /// A fresh dead-letter entry.
    async fn dlq_entry(&self) -> String {
        let id = self.submit("flaky.sim", json!({"_sim": {"fail": true}})).await;
        let deadline = Instant::now() + WAIT;
        loop {
            let (_, a) = self.admin(Method::GET, &format!("/v1/actions/{id}?wait_ms=5000"), None).await;
            if a["state"] == "dead_lettered" {
                break;
            }
            assert!(Instant::now() < deadline, "{id} not dead-lettered: {a}");
        }
        let (_, dlq) = self.admin(Method::GET, "/v1/dlq", None).await;
        let entries = dlq["entries"].as_array().unwrap();
        let entry = entries.iter().find(|e| e["action_id"] == id.as_str()).expect("the entry");
        entry["id"].as_str().unwrap().to_owned()
    }

    /// A request that, when allowed, must succeed: it acts on real state
    /// (so a refusal that let it through would show in the digest). The
    /// match is exhaustive: a new endpoint does not compile here until it has
    /// a request of its own.
    async fn prepare(&self, r: &Route) -> Call {
        let call = |path: String, body: Option<Value>| Call { path, body };
        match r.endpoint {
            Endpoint::Dashboard => call("/".into(), None),
            Endpoint::Vendor => call("/vendor/uPlot.iife.min.js".into(), None),
            Endpoint::Metrics => call("/metrics".into(), None),
            Endpoint::Health => call("/v1/health".into(), None),
            Endpoint::Cluster => call("/v1/cluster".into(), None),
            Endpoint::Digest => call("/v1/cluster/digest".into(), None),
            Endpoint::RemoveMember => {
                if !self.members().await.contains(&"b".to_owned()) {
                    let (s, v) = self.admin(Method::POST, "/v1/cluster/members", Some(json!({"node": "b"}))).await;
                    assert_eq!(s, StatusCode::CREATED, "{v}");
                }
                call("/v1/cluster/members/b".into(), None)
            }
            Endpoint::AddMember => {
                assert!(!self.members().await.contains(&"c".to_owned()), "only an admin adds members, once");
                call("/v1/cluster/members".into(), Some(json!({"node": "c"})))
            }
            Endpoint::Drain => {
                let _ = self.admin(Method::DELETE, "/v1/cluster/nodes/c/drain", None).await;
                call("/v1/cluster/nodes/c/drain".into(), None)
            }
            Endpoint::Undrain => {
                let (s, v) = self.admin(Method::POST, "/v1/cluster/nodes/c/drain", None).await;
                assert_eq!(s, StatusCode::ACCEPTED, "{v}");
                call("/v1/cluster/nodes/c/drain".into(), None)
            }
            Endpoint::TransferLeader => {
                if self.members().await.len() < 2 {
                    let (s, v) = self.admin(Method::POST, "/v1/cluster/members", Some(json!({"node": "c"}))).await;
                    assert_eq!(s, StatusCode::CREATED, "{v}");
                }
                let leader = self.leader().await;
                let to = self.members().await.into_iter().find(|m| *m != leader).expect("a second voter");
                call("/v1/cluster/leader".into(), Some(json!({"node": to})))
            }
            Endpoint::Capabilities => call("/v1/capabilities".into(), None),
            Endpoint::OpenTurn => call("/v1/sessions/auth-test/turns".into(), Some(json!({"summary": "t"}))),
            Endpoint::Sessions => call("/v1/sessions".into(), None),
            Endpoint::ModelCall => {
                let t = self.turn().await;
                let body = json!({"model": "m", "latency_ms": 5, "ok": true});
                call(format!("/v1/turns/{}/model-calls", t["turn_id"].as_str().unwrap()), Some(body))
            }
            Endpoint::PutMemory => call("/v1/memory/auth-test/k".into(), Some(json!({"value": {"n": 1}}))),
            Endpoint::GetMemory => {
                let body = json!({"value": 1});
                let (s, v) = self.admin(Method::PUT, "/v1/memory/auth-test/seen", Some(body)).await;
                assert_eq!(s, StatusCode::OK, "{v}");
                call("/v1/memory/auth-test/seen".into(), None)
            }
            Endpoint::Recall => call("/v1/memory/auth-test?limit=5".into(), None),
            Endpoint::Submit => {
                let t = self.turn().await;
                let body = json!({"turn_id": t["turn_id"], "capability": "search.web", "args": {"q": "x"}});
                call("/v1/actions".into(), Some(body))
            }
            Endpoint::GetAction => {
                // The agent's own action: every role allowed here may read it.
                let id = self.submit_as(Caller::As(Role::Agent), "search.web", json!({})).await;
                call(format!("/v1/actions/{id}"), None)
            }
            Endpoint::Confirm => {
                let id = self.submit("email.send", json!({"to": "x"})).await;
                call(format!("/v1/actions/{id}/confirmation"), Some(json!({"approve": true})))
            }
            Endpoint::Dlq => call("/v1/dlq".into(), None),
            Endpoint::Replay => call(format!("/v1/dlq/{}/replay", self.dlq_entry().await), None),
            Endpoint::Provenance => call(format!("/v1/dlq/{}/provenance", self.dlq_entry().await), None),
            Endpoint::Breakers => call("/v1/breakers".into(), None),
            Endpoint::Timeline => call("/v1/timeline?limit=5".into(), None),
            Endpoint::Incidents => call("/v1/incidents?limit=5".into(), None),
            Endpoint::Graph => {
                let t = self.turn().await;
                call(format!("/v1/correlations/{}/graph", t["correlation_id"].as_str().unwrap()), None)
            }
            Endpoint::EventStream => call("/v1/events/stream".into(), None),
            Endpoint::Policies => call("/v1/policies".into(), None),
            Endpoint::Slo => call("/v1/slo".into(), None),
            Endpoint::Alerts => call("/v1/alerts".into(), None),
            Endpoint::PolicyDecide => {
                let body = json!({"capability": "email.send", "args": {"to": "x"}, "trust": "normal"});
                call("/v1/policies/decide".into(), Some(body))
            }
            Endpoint::PushPolicy => call("/v1/policies".into(), Some(self.fresh_bundle())),
            Endpoint::RollbackPolicy => {
                // Two activations, so there is one to go back to.
                self.push().await;
                self.push().await;
                call("/v1/policies/rollback".into(), Some(json!({"reason": "auth test"})))
            }
            Endpoint::PolicyAudit => {
                self.push().await;
                call("/v1/policies/audit".into(), None)
            }
            Endpoint::Mcp => {
                let params = json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}});
                call("/mcp".into(), Some(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params})))
            }
        }
    }

    async fn timeline(&self, kind: &str) -> Vec<Value> {
        let (s, t) = self.admin(Method::GET, "/v1/timeline?limit=10000", None).await;
        assert_eq!(s, StatusCode::OK);
        t["events"].as_array().unwrap().iter().filter(|e| e["kind"] == kind).cloned().collect()
    }
}

/// What the role table says `caller` gets on a route of `access` (metrics open, the default).
fn expected(access: Access, caller: Caller) -> Option<(StatusCode, &'static str)> {
    let required = access.required(true)?;
    match caller {
        Caller::NoToken | Caller::BadToken => Some((StatusCode::UNAUTHORIZED, "unauthenticated")),
        Caller::As(role) if role < required => Some((StatusCode::FORBIDDEN, "forbidden")),
        Caller::As(_) => None,
    }
}

#[tokio::test]
async fn every_route_answers_each_caller_as_the_role_table_says_and_a_refusal_changes_nothing() {
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path()).await;
    for r in ROUTES {
        for caller in CALLERS {
            let call = h.prepare(r).await;
            let before = h.settled_digest().await;
            let (status, body) = h.send(caller, r.method.clone(), &call).await;
            let what = format!("{} {} as {caller:?}: {status} {body}", r.method, call.path);
            match expected(r.access, caller) {
                Some((want, code)) => {
                    assert_eq!(status, want, "{what}");
                    assert_eq!(body["error"]["code"], code, "{what}");
                    assert_eq!(h.settled_digest().await, before, "a refused request changed the state: {what}");
                }
                None => {
                    assert!(status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN, "{what}");
                    assert!(status.is_success(), "{what}");
                }
            }
        }
    }
    // What the log recorded names the token's principal.
    let confirmers: Vec<Value> =
        h.timeline("confirmation.given").await.iter().map(|e| e["data"]["by"].clone()).collect();
    assert_eq!(confirmers, vec![json!("ops"), json!("root")]);
    let replayers: Vec<Value> =
        h.timeline("dlq.replayed").await.iter().map(|e| e["data"]["principal"].clone()).collect();
    assert_eq!(replayers, vec![json!("ops"), json!("root")]);
    let drains: Vec<(Value, Value)> = h
        .timeline("node.draining")
        .await
        .iter()
        .map(|e| (e["data"]["draining"].clone(), e["data"]["principal"].clone()))
        .collect();
    assert!(
        drains.contains(&(json!(true), json!("ops"))) && drains.contains(&(json!(false), json!("root"))),
        "{drains:?}"
    );
    for kind in ["member.added", "member.removed"] {
        let events = h.timeline(kind).await;
        assert!(!events.is_empty(), "no {kind}");
        assert!(events.iter().all(|e| e["data"]["principal"] == "root"), "{kind}: {events:?}");
    }
    let activations = h.timeline("policy.activated").await;
    assert!(activations.len() >= 4, "{activations:?}");
    assert!(activations.iter().all(|e| e["data"]["by"] == "root"), "{activations:?}");
    let (_, audit) = h.admin(Method::GET, "/v1/policies/audit", None).await;
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), activations.len(), "{audit}");
    assert!(entries.iter().all(|e| e["principal"] == "root"), "{audit}");
    let transfers = h.timeline("leader.transfer").await;
    let requested: Vec<&Value> = transfers.iter().filter(|e| e["data"]["why"] == "requested").collect();
    assert!(!requested.is_empty() && requested.iter().all(|e| e["data"]["principal"] == "root"), "{transfers:?}");
}

#[tokio::test]
async fn a_confirmation_is_the_principals_and_a_by_naming_someone_else_is_refused() {
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path()).await;
    let id = h.submit_as(Caller::As(Role::Agent), "email.send", json!({"to": "x"})).await;
    let path = format!("/v1/actions/{id}/confirmation");
    let before = h.settled_digest().await;
    let posing = Call { path: path.clone(), body: Some(json!({"approve": true, "by": "root"})) };
    let (s, body) = h.send(Caller::As(Role::Operator), Method::POST, &posing).await;
    assert_eq!((s, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{body}");
    assert_eq!(h.settled_digest().await, before, "a refused confirmation changed the state");
    let own = Call { path, body: Some(json!({"approve": false, "by": "ops"})) };
    let (s, a) = h.send(Caller::As(Role::Operator), Method::POST, &own).await;
    assert_eq!((s, a["state"].as_str(), a["confirmed_by"].as_str()), (StatusCode::OK, Some("rejected"), Some("ops")));
    // The agent may read its action but not confirm it.
    let agent = Call { path: format!("/v1/actions/{id}"), body: None };
    assert_eq!(h.send(Caller::As(Role::Agent), Method::GET, &agent).await.0, StatusCode::OK);
    // The 401 says how to authenticate.
    let resp = reqwest::get(format!("{}/v1/cluster", h.url)).await.unwrap();
    assert_eq!(resp.headers().get("www-authenticate").map(|v| v.as_bytes()), Some(&b"Bearer"[..]));
}

/// An agent reads its own actions only: another principal's answers 404
/// exactly like an id that does not exist (a 403 would confirm the id), also
/// as a long poll; operators and admins read every action.
#[tokio::test]
async fn an_agent_reads_only_the_actions_its_token_submitted() {
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path()).await;
    let bot = Caller::As(Role::Agent);
    let own = h.submit_as(bot, "search.web", json!({"q": "mine"})).await;
    let admins = h.submit("search.web", json!({"q": "root's"})).await;
    let get = |id: &str, query: &str| Call { path: format!("/v1/actions/{id}{query}"), body: None };

    let (s, a) = h.send(bot, Method::GET, &get(&own, "?wait_ms=5000")).await;
    assert_eq!((s, a["submitted_by"].as_str()), (StatusCode::OK, Some("bot")), "{a}");
    let (_, a) = h.admin(Method::GET, &format!("/v1/actions/{admins}?wait_ms=5000"), None).await;
    assert_eq!(a["submitted_by"], "root", "{a}");

    let (unknown_status, unknown) = h.send(bot, Method::GET, &get("act_00000000000000000000000000", "")).await;
    assert_eq!(unknown_status, StatusCode::NOT_FOUND, "{unknown}");
    for query in ["", "?wait_ms=10000"] {
        let started = Instant::now();
        let (s, body) = h.send(bot, Method::GET, &get(&admins, query)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"]["code"], unknown["error"]["code"], "the same answer as an unknown id: {body}");
        assert!(started.elapsed() < Duration::from_secs(5), "answered without waiting out the long poll");
    }
    // Another agent cannot read bot's action either, nor reach it by reusing its idempotency key.
    let as_other = |method: Method, path: String| h.http.request(method, format!("{}{path}", h.url));
    let r = as_other(Method::GET, format!("/v1/actions/{own}")).bearer_auth(&h.tokens.other_agent).send().await;
    assert_eq!(r.unwrap().status(), StatusCode::NOT_FOUND);
    let (_, a) = h.admin(Method::GET, &format!("/v1/actions/{own}"), None).await;
    let before = h.settled_digest().await;
    let body = json!({"turn_id": a["turn_id"], "capability": "search.web", "args": {}, "idempotency_key": a["idempotency_key"]});
    let r = as_other(Method::POST, "/v1/actions".into()).bearer_auth(&h.tokens.other_agent).json(&body).send().await;
    let r = r.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let reply: Value = r.json().await.unwrap();
    assert!(reply.get("action_id").is_none() && reply["error"]["code"] == "conflict", "{reply}");
    // The submission went through the log (the index moves) and changed no state.
    assert_eq!(h.settled_digest().await.1, before.1, "a reused key changes no state");
    // Operators and admins read everyone's.
    for role in [Role::Operator, Role::Admin] {
        for id in [&own, &admins] {
            assert_eq!(h.send(Caller::As(role), Method::GET, &get(id, "")).await.0, StatusCode::OK, "{role:?} {id}");
        }
    }
}

#[test]
fn a_node_without_tokens_refuses_a_non_loopback_address_unless_told_auth_none() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["node", "--http-addr", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("a node on 0.0.0.0 without tokens kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success() && stderr.contains("not loopback"), "{status:?}: {stderr}");
    assert!(!dir.path().join("data").exists(), "it refused before creating anything");

    // Told `auth = "none"`, it serves (and says so).
    let config = dir.path().join("open.toml");
    std::fs::write(&config, "auth = \"none\"\n").unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.args(["node", "--http-addr", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("open"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null());
    let (mut child, url) = warden::local::spawn_node(&mut cmd, WAIT).expect("it serves with auth = none");
    let port = url.rsplit(':').next().unwrap();
    let resp = std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap()));
    let _ = child.kill();
    let _ = child.wait();
    assert!(resp.is_ok(), "not listening at {url}");
}

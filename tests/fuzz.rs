//! Bad input, fuzzed, against the real binary: arbitrary bytes and arbitrary
//! JSON at every body-taking route, arbitrary bytes in every path parameter
//! and query value, in headers, as a whole request, and at the cluster
//! port. Every route comes from the route table, so routes added later are
//! fuzzed too. What must hold: an answer (never a dropped connection — a
//! handler that panics drops it), never a 5xx, and a refused request leaves
//! the replicated state's digest as it was (no partial write); the node
//! stays healthy throughout.
//!
//! Requests go over raw TCP (`std::net`), so nothing on the client side
//! cleans them up first. Case counts are fixed (`CASES`), so the whole file
//! runs in well under two minutes.

mod common;

use common::process::{free_port, NodeProcess};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};
use warden::auth::{create_token, Role};
use warden::http::routes::{Endpoint, Route, ROUTES};
use warp::http::Method;

/// Cases per strategy and route.
const CASES: u32 = 48;
/// Longest wait for an answer to one request.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

fn runner() -> TestRunner {
    TestRunner::new(Config { cases: CASES, failure_persistence: None, ..Config::default() })
}

/// A JSON value of any shape, a few levels deep.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        "\\PC{0,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{0,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every byte but unreserved ones as `%XX`: any bytes fit in a path or query.
fn percent_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (*b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An HTTP answer's status, or why there was none.
fn send_raw(addr: &str, request: &[u8]) -> Result<u16, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
    s.write_all(request).map_err(|e| format!("write: {e}"))?;
    // The head is enough (a live stream never ends).
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&head[..head.len().min(64)]).into_owned();
    let status = line.strip_prefix("HTTP/1.1 ").and_then(|l| l.get(..3)).and_then(|s| s.parse().ok());
    status.ok_or_else(|| format!("no HTTP answer: {line:?}"))
}

struct Target {
    addr: String,
    admin: String,
    _node: NodeProcess,
    /// Ids that exist, for path parameters.
    fixtures: Fixtures,
    /// The cluster port.
    cluster_port: u16,
}

#[derive(Default)]
struct Fixtures {
    turn: String,
    /// Awaiting confirmation.
    awaiting: String,
    /// Terminal (denied): a long-poll on it returns at once.
    terminal: String,
    dlq: String,
    correlation: String,
}

/// One request of the fuzz: method, path and query, extra header lines, body.
struct Req<'a> {
    method: &'a Method,
    path: String,
    headers: Vec<Vec<u8>>,
    body: Vec<u8>,
    token: bool,
}

impl Target {
    fn start(dir: &Path) -> Target {
        let tokens = dir.join("tokens.toml");
        let admin = create_token(&tokens, "root", Role::Admin).unwrap();
        let config = dir.join("node.toml");
        std::fs::write(
            &config,
            r#"
token_file = "tokens.toml"
confirm_ttl_ms = 600000
[[capability]]
name = "email.send"
tier = 2
max_attempts = 1
[[capability]]
name = "db.drop"
tier = 3
[[capability]]
name = "flaky.sim"
tier = 1
max_attempts = 1
"#,
        )
        .unwrap();
        let cookie = dir.join("cookie");
        std::fs::write(&cookie, "fuzz-cookie-0123456789").unwrap();
        let cluster_port = free_port();
        let args: Vec<String> = vec![
            "--cluster-addr".into(),
            format!("127.0.0.1:{cluster_port}"),
            "--cookie-file".into(),
            cookie.display().to_string(),
        ];
        let node = NodeProcess::start_with(&dir.join("data"), Some(&config), &args);
        let addr = node.url.trim_start_matches("http://").to_owned();
        let mut t = Target { addr, admin, _node: node, fixtures: Fixtures::default(), cluster_port };
        t.fixtures = t.make_fixtures();
        t
    }

    fn call(&self, method: &Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let req = Req { method, path: path.into(), headers: vec![], body, token: true };
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
        s.write_all(&self.encode(&req)).unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        let text = String::from_utf8_lossy(&all);
        let status = text[9..12].parse().unwrap();
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    fn make_fixtures(&self) -> Fixtures {
        let (s, t) = self.call(&Method::POST, "/v1/sessions/fuzz/turns", Some(json!({})));
        assert_eq!(s, 201, "{t}");
        let turn = t["turn_id"].as_str().unwrap().to_owned();
        let submit = |cap: &str, args: Value| {
            let (s, a) = self.call(
                &Method::POST,
                "/v1/actions",
                Some(json!({"turn_id": turn, "capability": cap, "args": args})),
            );
            assert_eq!(s, 202, "{a}");
            a["action_id"].as_str().unwrap().to_owned()
        };
        let awaiting = submit("email.send", json!({}));
        let terminal = submit("db.drop", json!({}));
        // Dead-lettered after a confirmation: its replay awaits one again, so
        // the first replay the fuzz gets through leaves the entry replayed
        // (later ones: 409) without running anything in the background.
        let failing = submit("email.send", json!({"_sim": {"fail": true}}));
        let (s, a) =
            self.call(&Method::POST, &format!("/v1/actions/{failing}/confirmation"), Some(json!({"approve": true})));
        assert_eq!(s, 200, "{a}");
        let (_, a) = self.call(&Method::GET, &format!("/v1/actions/{failing}?wait_ms=10000"), None);
        assert_eq!(a["state"], "dead_lettered", "{a}");
        let (_, dlq) = self.call(&Method::GET, "/v1/dlq", None);
        let dlq = dlq["entries"][0]["id"].as_str().unwrap().to_owned();
        let correlation = t["correlation_id"].as_str().unwrap().to_owned();
        Fixtures { turn, awaiting, terminal, dlq, correlation }
    }

    fn encode(&self, r: &Req) -> Vec<u8> {
        let mut out =
            format!("{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", r.method, r.path, self.addr).into_bytes();
        if r.token {
            out.extend_from_slice(format!("Authorization: Bearer {}\r\n", self.admin).as_bytes());
        }
        for h in &r.headers {
            out.extend_from_slice(h);
            out.extend_from_slice(b"\r\n");
        }
        if !r.body.is_empty() || *r.method != Method::GET {
            out.extend_from_slice(
                format!("Content-Type: application/json\r\nContent-Length: {}\r\n", r.body.len()).as_bytes(),
            );
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&r.body);
        out
    }

    /// The digest of the replicated state. (Not the applied index: a
    /// request that `apply` refuses — a second replay of an entry, say —
    /// still takes a log index, but changes nothing.)
    fn digest(&self) -> String {
        let (s, d) = self.call(&Method::GET, "/v1/cluster/digest", None);
        assert_eq!(s, 200, "{d}");
        d["digest"].as_str().unwrap().to_owned()
    }

    /// The digest once nothing is being applied (an accepted confirmation or
    /// replay runs its action after answering).
    fn settled(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = self.digest();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.digest();
            if now == last {
                return now;
            }
            assert!(Instant::now() < deadline, "the state kept changing");
            last = now;
        }
    }

    /// Sends `r`; checks it was answered without a 5xx and, if refused, changed nothing.
    fn check(&self, what: &str, r: &Req, endpoint: Option<Endpoint>) -> Result<(), TestCaseError> {
        let before = self.digest();
        let status = send_raw(&self.addr, &self.encode(r))
            .map_err(|e| TestCaseError::fail(format!("{what} {} {}: {e}", r.method, r.path)))?;
        prop_assert!(status < 500, "{} {} ({what}) answered {}", r.method, r.path, status);
        // The one refusal that records something: a bundle the policy gate
        // refused is audited (an audit entry and a `policy.rejected` event).
        let audited = status == 422 && endpoint == Some(Endpoint::PushPolicy);
        if audited {
            self.settled();
        } else if status >= 400 {
            prop_assert_eq!(
                self.digest(),
                before,
                "{} {} ({}) was refused ({}) but changed the state",
                r.method,
                &r.path,
                what,
                status
            );
        } else if matches!(endpoint, Some(Endpoint::Confirm | Endpoint::Replay | Endpoint::Submit)) {
            self.settled();
        }
        Ok(())
    }

    /// `r`'s path with its parameters filled with ids that exist.
    fn path(&self, r: &Route) -> String {
        let f = &self.fixtures;
        let mut params: Vec<&str> = match r.endpoint {
            Endpoint::OpenTurn => vec!["fuzz"],
            Endpoint::ModelCall => vec![&f.turn],
            Endpoint::PutMemory | Endpoint::GetMemory => vec!["fuzz", "k"],
            Endpoint::Recall => vec!["fuzz"],
            Endpoint::GetAction => vec![&f.terminal],
            Endpoint::Confirm => vec![&f.awaiting],
            Endpoint::Replay | Endpoint::Provenance => vec![&f.dlq],
            Endpoint::Graph => vec![&f.correlation],
            Endpoint::Drain | Endpoint::Undrain => vec!["nobody"],
            Endpoint::RemoveMember => vec!["nobody"],
            _ => vec![],
        };
        let segments: Vec<String> = r
            .pattern
            .iter()
            .map(|p| {
                if *p == "{}" {
                    if params.is_empty() {
                        "x".into()
                    } else {
                        params.remove(0).to_owned()
                    }
                } else {
                    (*p).to_owned()
                }
            })
            .collect();
        format!("/{}", segments.join("/"))
    }

    /// A body the route accepts, to mutate one field at a time.
    fn template(&self, r: &Route) -> Value {
        match r.endpoint {
            Endpoint::OpenTurn => json!({"trust": "normal", "summary": "s"}),
            Endpoint::ModelCall => json!({"model": "m", "latency_ms": 5, "ok": true}),
            Endpoint::PutMemory => json!({"value": 1, "tags": ["t"]}),
            Endpoint::Submit => json!({"turn_id": self.fixtures.turn, "capability": "email.send", "args": {}}),
            Endpoint::Confirm => json!({"approve": false}),
            Endpoint::AddMember | Endpoint::TransferLeader => json!({"node": "nobody"}),
            _ => json!({}),
        }
    }

    fn healthy(&self) {
        let (s, h) = self.call(&Method::GET, "/v1/health", None);
        assert_eq!((s, h["status"].as_str()), (200, Some("ok")), "{h}");
    }
}

fn body_routes() -> impl Iterator<Item = &'static Route> {
    ROUTES.iter().filter(|r| r.method == Method::POST || r.method == Method::PUT)
}

#[test]
fn arbitrary_bodies_at_every_post_and_put_get_a_4xx_or_a_clean_success() {
    let dir = tempfile::tempdir().unwrap();
    let t = Target::start(dir.path());
    let started = Instant::now();
    for r in body_routes() {
        let path = t.path(r);
        let req = |body: Vec<u8>| Req { method: &r.method, path: path.clone(), headers: vec![], body, token: true };
        runner()
            .run(&proptest::collection::vec(any::<u8>(), 0..2048), |bytes| {
                t.check("bytes", &req(bytes), Some(r.endpoint))
            })
            .unwrap();
        runner().run(&arb_json(), |v| t.check("json", &req(v.to_string().into_bytes()), Some(r.endpoint))).unwrap();
        // The route's own body with one field replaced, removed or added: input that gets past parsing.
        let template = t.template(r);
        let fields: Vec<String> = template.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        let mutation = (any::<prop::sample::Index>(), arb_json(), 0..3u8);
        runner()
            .run(&mutation, |(at, value, how)| {
                let mut body = template.clone();
                let obj = body.as_object_mut().unwrap();
                match (how, fields.is_empty()) {
                    (0, false) => {
                        obj.insert(fields[at.index(fields.len())].clone(), value);
                    }
                    (1, false) => {
                        obj.remove(&fields[at.index(fields.len())]);
                    }
                    _ => {
                        obj.insert("unexpected".into(), value);
                    }
                }
                t.check("mutated", &req(body.to_string().into_bytes()), Some(r.endpoint))
            })
            .unwrap();
    }
    t.healthy();
    eprintln!("bodies fuzzed in {:?}", started.elapsed());
}

#[test]
fn arbitrary_path_parameters_and_query_values_at_every_route_get_an_answer_below_500() {
    let dir = tempfile::tempdir().unwrap();
    let t = Target::start(dir.path());
    const KEYS: &[&str] = &[
        "limit", "from", "to", "after", "fresh", "scope", "active", "all", "prefix", "tag", "q", "turn_id", "wait_ms",
    ];
    for r in ROUTES {
        let template = t.template(r).to_string().into_bytes();
        let body = if r.method == Method::GET || r.method == Method::DELETE { vec![] } else { template };
        let req = |path: String| Req { method: &r.method, path, headers: vec![], body: body.clone(), token: true };
        if r.pattern.contains(&"{}") {
            let params = proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 2);
            runner()
                .run(&params, |values| {
                    let mut values = values.iter();
                    let segments: Vec<String> = r
                        .pattern
                        .iter()
                        .map(|p| if *p == "{}" { percent_encode(values.next().unwrap()) } else { (*p).to_owned() })
                        .collect();
                    t.check("path", &req(format!("/{}", segments.join("/"))), Some(r.endpoint))
                })
                .unwrap();
        }
        let path = t.path(r);
        // A long-poll on a terminal action returns at once; on any other it would wait its full wait_ms.
        let keys: Vec<&str> =
            KEYS.iter().copied().filter(|k| *k != "wait_ms" || r.endpoint == Endpoint::GetAction).collect();
        let query = (prop::sample::select(keys), proptest::collection::vec(any::<u8>(), 0..48));
        runner()
            .run(&query, |(key, value)| {
                t.check("query", &req(format!("{path}?{key}={}", percent_encode(&value))), Some(r.endpoint))
            })
            .unwrap();
    }
    t.healthy();
}

#[test]
fn arbitrary_headers_and_whole_garbage_requests_never_take_the_node_down() {
    let dir = tempfile::tempdir().unwrap();
    let t = Target::start(dir.path());
    let submit = ROUTES.iter().find(|r| r.endpoint == Endpoint::Submit).unwrap();
    let body = t.template(submit).to_string().into_bytes();
    let names = prop::sample::select(vec!["Authorization", "X-Correlation-Id", "Content-Type", "Accept", "X-Anything"]);
    let header =
        (names, proptest::collection::vec(any::<u8>().prop_filter("one line", |b| *b != b'\r' && *b != b'\n'), 0..256));
    for route in [submit, ROUTES.iter().find(|r| r.endpoint == Endpoint::Cluster).unwrap()] {
        runner()
            .run(&(header.clone(), any::<bool>()), |((name, value), token)| {
                let mut line = format!("{name}: ").into_bytes();
                line.extend_from_slice(&value);
                let body = if route.method == Method::GET { vec![] } else { body.clone() };
                // With the admin token and another Authorization line, or without one.
                let req = Req { method: &route.method, path: t.path(route), headers: vec![line], body, token };
                t.check("header", &req, Some(route.endpoint))
            })
            .unwrap();
    }
    // A header name of any bytes; a huge header (over MAX_HEADER_BYTES: 431).
    runner()
        .run(&proptest::collection::vec(any::<u8>(), 1..64), |name| {
            let mut line = name;
            line.extend_from_slice(b": x");
            let req = Req {
                method: &Method::GET,
                path: "/v1/cluster".into(),
                headers: vec![line],
                body: vec![],
                token: true,
            };
            t.check("header name", &req, None)
        })
        .unwrap();
    let huge = format!("X-Big: {}", "a".repeat(warden::http::serve::MAX_HEADER_BYTES + 1)).into_bytes();
    let req = Req { method: &Method::GET, path: "/v1/health".into(), headers: vec![huge], body: vec![], token: false };
    assert_eq!(send_raw(&t.addr, &t.encode(&req)), Ok(431));
    // Whole requests of arbitrary bytes: an answer below 500, or the connection closed; the node stays up.
    runner()
        .run(&proptest::collection::vec(any::<u8>(), 1..1024), |bytes| {
            let mut s = TcpStream::connect(&t.addr).unwrap();
            s.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
            let _ = s.write_all(&bytes);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer);
            if let Some(status) = answer.strip_prefix(b"HTTP/1.1 ").and_then(|a| std::str::from_utf8(&a[..3]).ok()) {
                prop_assert!(status.as_bytes()[0] < b'5', "garbage got {status}");
            }
            Ok(())
        })
        .unwrap();
    t.healthy();
}

#[test]
fn arbitrary_bytes_at_the_cluster_port_leave_the_node_serving() {
    let dir = tempfile::tempdir().unwrap();
    let t = Target::start(dir.path());
    let before = t.settled();
    // A length prefix then anything, or anything at all; the session is cut at random points.
    let frame = (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..1024), any::<bool>());
    TestRunner::new(Config { cases: 256, failure_persistence: None, ..Config::default() })
        .run(&frame, |(len, bytes, prefixed)| {
            let mut s = TcpStream::connect(("127.0.0.1", t.cluster_port)).unwrap();
            let mut out = if prefixed { len.to_be_bytes().to_vec() } else { vec![] };
            out.extend_from_slice(&bytes);
            let _ = s.write_all(&out);
            Ok(())
        })
        .unwrap();
    t.healthy();
    assert_eq!(t.settled(), before, "garbage on the cluster port changed the state");
    let (s, view) = t.call(&Method::GET, "/v1/cluster", None);
    assert_eq!(s, 200);
    assert!(view["transport"]["rejected_sessions"].as_u64() > Some(0), "{view}");
}

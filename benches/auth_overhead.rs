//! What authentication costs. `action_throughput` drives a node directly
//! (no HTTP, so no tokens), so the cost is measured here on the HTTP path:
//! actions submitted over HTTP and followed to their end (a POST and a
//! long-poll GET each, both authorized) against two in-process nodes in the
//! same run — one serving with a token file, one open — with the log
//! volatile, so that fsync does not hide what auth adds. And the primitive:
//! one `Tokens::authenticate` (SHA-256 of the token, constant-time compare
//! against every stored hash).
//!
//! Run: cargo bench --bench auth_overhead

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use warden::auth::{create_token, Role, Tokens};
use warden::config::{AccessSettings, Auth};
use warden::http::{routes, serve, Api};
use warden::metrics::Metrics;
use warden_actors::consensus::Durability;
use warden_actors::domain::{Capability, Tier};
use warden_actors::{Node, NodeConfig};

/// Actions per measured iteration.
const ACTIONS: usize = 1_024;
/// Agents submitting at once, each over its own keep-alive connection pool.
const AGENTS: usize = 32;

struct Served {
    /// Kept: dropping it would end the node's live streams.
    _stop: tokio::sync::watch::Sender<bool>,
    url: String,
    http: reqwest::Client,
    turn: String,
}

/// A node served over HTTP on loopback, with tokens (`Some(token file)`) or open.
async fn serve_node(name: &str, dir: &std::path::Path, tokens: Option<(Tokens, String)>) -> Served {
    let mut config = NodeConfig::new(name, dir, vec![Capability::new("bench.noop", Tier::Observe)]);
    config.durability = Durability::Volatile;
    let node = Arc::new(Node::start(config).await.unwrap());
    let (auth, token) = match tokens {
        Some((t, token)) => (Auth::Tokens(Arc::new(t)), Some(token)),
        None => (Auth::Open { explicit: false }, None),
    };
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let api = Arc::new(Api {
        node,
        metrics: Arc::new(Metrics::new()),
        shutdown,
        cluster: None,
        access: AccessSettings { auth, metrics_open: true },
        mcp: Default::default(),
    });
    let listener = serve::listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve::serve(listener, routes(api), serve::Limits::default(), None, std::future::pending()));
    let http = warden::auth::client(Duration::from_secs(60), token.as_deref(), None).unwrap();
    let turn: Value = http
        .post(format!("{url}/v1/sessions/bench/turns"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Served { _stop: stop, url, http, turn: turn["turn_id"].as_str().unwrap().to_owned() }
}

async fn run_batch(s: Arc<Served>) {
    let mut agents = tokio::task::JoinSet::new();
    for _ in 0..AGENTS {
        let s = s.clone();
        agents.spawn(async move {
            for _ in 0..ACTIONS / AGENTS {
                let body = json!({"turn_id": s.turn, "capability": "bench.noop", "args": {"k": 1}});
                let r = s.http.post(format!("{}/v1/actions", s.url)).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 202);
                let a: Value = r.json().await.unwrap();
                let id = a["action_id"].as_str().unwrap();
                let done: Value = s
                    .http
                    .get(format!("{}/v1/actions/{id}?wait_ms=30000", s.url))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(done["state"], "succeeded");
            }
        });
    }
    while let Some(r) = agents.join_next().await {
        r.expect("agent task");
    }
}

fn http_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.toml");
    let token = create_token(&file, "bench-agent", Role::Agent).unwrap();
    create_token(&file, "bench-ops", Role::Operator).unwrap();
    create_token(&file, "bench-admin", Role::Admin).unwrap();
    let tokens = Tokens::load(&file).unwrap();
    let open = Arc::new(rt.block_on(serve_node("auth-open", &dir.path().join("open"), None)));
    let authed = Arc::new(rt.block_on(serve_node("auth-tokens", &dir.path().join("tokens"), Some((tokens, token)))));

    let mut group = c.benchmark_group("auth_overhead");
    group.throughput(Throughput::Elements(ACTIONS as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    // Interleaved, so drift over the run hits both alike.
    group.bench_function("http_actions_open", |b| b.to_async(&rt).iter(|| run_batch(open.clone())));
    group.bench_function("http_actions_tokens", |b| b.to_async(&rt).iter(|| run_batch(authed.clone())));
    group.finish();
}

fn authenticate(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.toml");
    let token = create_token(&file, "a", Role::Agent).unwrap();
    create_token(&file, "o", Role::Operator).unwrap();
    create_token(&file, "r", Role::Admin).unwrap();
    let tokens = Tokens::load(&file).unwrap();
    let mut group = c.benchmark_group("primitive");
    group.throughput(Throughput::Elements(1));
    group.bench_function("tokens_authenticate_3_entries", |b| {
        b.iter(|| criterion::black_box(tokens.authenticate(criterion::black_box(&token))))
    });
    group.finish();
}

criterion_group!(benches, http_path, authenticate);
criterion_main!(benches);

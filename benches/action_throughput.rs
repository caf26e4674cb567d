//! Actions per second through the whole pipeline on one node: admission,
//! policy, the log (group commit), dispatch, breaker, sim executor (0 ms),
//! completion — with the log fsync'd (durable) and without (volatile), so the
//! cost of fsync is visible, and with each policy engine (the embedded Rego
//! bundle, the native rules), so the cost of Rego is visible. A raw redb
//! durable commit is measured in the same run as the primitive the durable
//! figure is bounded by.
//! `volatile_no_slo` is `volatile_rego` with the SloMonitor not recording
//! (`[slo] enabled = false`): the two, in one run, are the monitor's cost per
//! attempt.
//!
//! `notify/volatile_quiet_webhook` and `notify/volatile_failing_webhook`
//! are one node with a webhook channel whose receiver answers 500 to
//! everything: quiet, nothing to deliver; failing, an alert is firing and
//! its delivery is retried all along (pauses capped at 100 ms). The two, in
//! one run, are what a failing receiver costs the pipeline.
//!
//! Run: cargo bench --bench action_throughput

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use warden_actors::authz::EngineKind;
use warden_actors::config::{ChannelConfig, ChannelKind};
use warden_actors::consensus::Durability;
use warden_actors::domain::{BreakerSpec, Capability, Tier, Trust};
use warden_actors::pipeline::SubmitRequest;
use warden_actors::sessions::OpenTurnRequest;
use warden_actors::{Node, NodeConfig};

/// Actions per measured iteration.
const ACTIONS: usize = 4_096;
/// Agents submitting at once; each submits and waits for its actions in turn.
const AGENTS: usize = 256;

async fn run_batch(node: Arc<Node>, turn: warden_actors::ids::TurnId) {
    let mut agents = tokio::task::JoinSet::new();
    for _ in 0..AGENTS {
        let (node, turn) = (node.clone(), turn.clone());
        agents.spawn(async move {
            for _ in 0..ACTIONS / AGENTS {
                let req = SubmitRequest {
                    turn_id: turn.clone(),
                    capability: "bench.noop".into(),
                    args: json!({"k": 1}),
                    idempotency_key: None,
                    principal: None,
                };
                let action = node.submit(req).await.expect("submitted");
                let done = node.wait_action(&action.id, Duration::from_secs(60)).await.expect("exists");
                assert!(done.state.is_terminal(), "action did not finish");
            }
        });
    }
    while let Some(r) = agents.join_next().await {
        r.expect("agent task");
    }
}

fn pipeline(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut group = c.benchmark_group("action_throughput");
    group.throughput(Throughput::Elements(ACTIONS as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    let runs = [
        ("durable_rego", Durability::Durable, EngineKind::Rego, true),
        ("durable_native", Durability::Durable, EngineKind::Native, true),
        ("volatile_rego", Durability::Volatile, EngineKind::Rego, true),
        ("volatile_native", Durability::Volatile, EngineKind::Native, true),
        ("volatile_no_slo", Durability::Volatile, EngineKind::Rego, false),
    ];
    for (label, durability, engine, slo) in runs {
        let dir = tempfile::tempdir().unwrap();
        let mut config = NodeConfig::new("bench", dir.path(), vec![Capability::new("bench.noop", Tier::Observe)]);
        config.durability = durability;
        config.policy.engine = engine;
        config.slo.enabled = slo;
        let node = Arc::new(rt.block_on(Node::start(config)).unwrap());
        let turn = rt
            .block_on(node.open_turn(OpenTurnRequest { trust: Some(Trust::Normal), ..Default::default() }))
            .unwrap()
            .id;
        group.bench_function(label, |b| b.to_async(&rt).iter(|| run_batch(node.clone(), turn.clone())));
        rt.block_on(report_index_lag(&node));
        let node = Arc::into_inner(node).expect("no other handle");
        rt.block_on(node.shutdown()).unwrap();
    }
    group.finish();
}

/// How far the timeline's indexer (off the log's writer thread) is behind
/// when the load stops, and how long it takes to catch up.
async fn report_index_lag(node: &Node) {
    let Some((behind, events)) = node.store().index_lag().unwrap() else { return };
    let start = std::time::Instant::now();
    let mut left = behind;
    while left > 0 && start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        left = node.store().index_lag().unwrap().map_or(0, |(b, _)| b);
    }
    println!(
        "  timeline index: {behind} of {events} events behind at the end of the load; caught up in {:?} ({left} left)",
        start.elapsed()
    );
}

/// A receiver that answers 500 to every request; returns its URL.
async fn refusing_receiver() -> String {
    use warp::Filter;
    let route = warp::any().map(|| warp::reply::with_status("no", warp::http::StatusCode::INTERNAL_SERVER_ERROR));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(route).incoming(listener).run());
    format!("http://{addr}/hook")
}

fn failing_webhook(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut group = c.benchmark_group("notify");
    group.throughput(Throughput::Elements(ACTIONS as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    let url = rt.block_on(refusing_receiver());
    for (label, failing) in [("volatile_quiet_webhook", false), ("volatile_failing_webhook", true)] {
        let dir = tempfile::tempdir().unwrap();
        let mut fragile = Capability::new("bench.fragile", Tier::Observe);
        fragile.max_attempts = 1;
        fragile.breaker = BreakerSpec { failure_threshold: 1, open_ms: 3_600_000 };
        let mut config =
            NodeConfig::new("bench", dir.path(), vec![Capability::new("bench.noop", Tier::Observe), fragile]);
        config.durability = Durability::Volatile;
        config.policy.engine = EngineKind::Native;
        config.notify.channels = vec![ChannelConfig {
            name: "webhook".into(),
            kind: ChannelKind::Webhook,
            url: Some(url.clone()),
            secret: Some("s".into()),
        }];
        config.notify.retry_max = Duration::from_millis(100);
        let node = Arc::new(rt.block_on(Node::start(config)).unwrap());
        let turn = rt
            .block_on(node.open_turn(OpenTurnRequest { trust: Some(Trust::Normal), ..Default::default() }))
            .unwrap()
            .id;
        if failing {
            rt.block_on(open_breaker(&node, &turn));
        }
        // A filter that leaves this bench out still runs the setup above: judge only a run that happened.
        let ran = std::sync::atomic::AtomicBool::new(false);
        group.bench_function(label, |b| {
            ran.store(true, std::sync::atomic::Ordering::Relaxed);
            b.to_async(&rt).iter(|| run_batch(node.clone(), turn.clone()))
        });
        if failing && ran.load(std::sync::atomic::Ordering::Relaxed) {
            let alerts = rt.block_on(node.alerts()).unwrap();
            let attempts = alerts["alerts"][0]["deliveries"][0]["attempts"].as_u64().unwrap_or(0);
            assert!(attempts > 10, "the delivery was being retried all along: {alerts}");
            eprintln!("webhook delivery tried {attempts} times during the run");
        }
        let node = Arc::into_inner(node).expect("no other handle");
        rt.block_on(node.shutdown()).unwrap();
    }
    group.finish();
}

/// Fails one action of bench.fragile (threshold 1): its breaker opens and an alert fires.
async fn open_breaker(node: &Node, turn: &warden_actors::ids::TurnId) {
    let req = SubmitRequest {
        turn_id: turn.clone(),
        capability: "bench.fragile".into(),
        args: json!({"_sim": {"fail": true}}),
        idempotency_key: None,
        principal: None,
    };
    let action = node.submit(req).await.expect("submitted");
    node.wait_action(&action.id, Duration::from_secs(10)).await.expect("exists");
    for _ in 0..100 {
        if node.alerts().await.unwrap()["alerts"].as_array().is_some_and(|a| !a.is_empty()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no alert fired");
}

/// The primitive: one durable redb commit of one small record.
fn primitive(c: &mut Criterion) {
    const T: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("t");
    let dir = tempfile::tempdir().unwrap();
    let db = redb::Database::create(dir.path().join("p.redb")).unwrap();
    let mut group = c.benchmark_group("primitive");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    let mut k = 0u64;
    group.bench_function("redb_durable_commit_1_insert", |b| {
        b.iter(|| {
            k += 1;
            let txn = db.begin_write().unwrap();
            txn.open_table(T).unwrap().insert(k, [0u8; 128].as_slice()).unwrap();
            txn.commit().unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, pipeline, failing_webhook, primitive);
criterion_main!(benches);

//! Cross-node action throughput: three `warden node` processes (release
//! build) founding one group, with a zero-latency sim capability. Clients
//! submit actions round-robin to all three nodes over HTTP and long-poll each
//! until it is terminal. Every action goes submit (any node, forwarded to
//! the leader) → dispatch by the leader to the least loaded node → attempt
//! there → result through the log: three replicated commands per action.
//! Reports completed actions/s (criterion), the submit-to-terminal latency
//! the client saw, and how attempts spread over the nodes.
//!
//! Run: cargo bench --bench cross_node_actions

mod common;

use common::{settle, start_cluster};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Actions per measured iteration (rounded down to a multiple of the clients).
const ACTIONS: usize = 1_000;
/// Clients submitting at once, unless `WARDEN_BENCH_CLIENTS` says otherwise.
const CLIENTS: usize = 64;

fn clients() -> usize {
    std::env::var("WARDEN_BENCH_CLIENTS").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(CLIENTS)
}

const CONFIG: &str = r#"
[[capability]]
name = "bench.sim"
tier = 0
executor = { kind = "sim", latency_ms = 0 }
"#;

#[derive(Default)]
struct Seen {
    latency_us: Option<Histogram<u64>>,
    executed_on: BTreeMap<String, u64>,
}

async fn turn_on(client: &reqwest::Client, url: &str, c: usize) -> String {
    let r: Value = client
        .post(format!("{url}/v1/sessions/bench-{c}/turns"))
        .json(&json!({}))
        .send()
        .await
        .expect("node answers")
        .json()
        .await
        .unwrap();
    r["turn_id"].as_str().expect("a turn id").to_owned()
}

async fn run_batch(client: &reqwest::Client, urls: &[String], round: u64, seen: &Mutex<Seen>) {
    let n_clients = clients();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..n_clients {
        let (client, urls) = (client.clone(), urls.to_vec());
        tasks.spawn(async move {
            let url = &urls[c % urls.len()];
            let turn = turn_on(&client, url, c).await;
            let per_client = ACTIONS / n_clients;
            let mut mine = Vec::with_capacity(per_client);
            for n in 0..per_client {
                let started = Instant::now();
                let body = json!({"turn_id": turn, "capability": "bench.sim", "args": {"n": n},
                    "idempotency_key": format!("r{round}-c{c}-n{n}")});
                let r = client.post(format!("{url}/v1/actions")).json(&body).send().await.expect("node answers");
                assert!(r.status().is_success(), "submission refused: {}", r.status());
                let id = r.json::<Value>().await.unwrap()["action_id"].as_str().unwrap().to_owned();
                let done: Value = client
                    .get(format!("{url}/v1/actions/{id}?wait_ms=30000"))
                    .send()
                    .await
                    .expect("node answers")
                    .json()
                    .await
                    .unwrap();
                assert_eq!(done["state"], "succeeded", "{done}");
                let node = done["attempts"][0]["node"].as_str().unwrap_or("?").to_owned();
                mine.push((started.elapsed().as_micros() as u64, node));
            }
            mine
        });
    }
    while let Some(mine) = tasks.join_next().await {
        let mut seen = seen.lock().unwrap();
        for (us, node) in mine.unwrap() {
            seen.latency_us.get_or_insert_with(|| Histogram::new(3).unwrap()).record(us).unwrap();
            *seen.executed_on.entry(node).or_default() += 1;
        }
    }
}

fn cross_node_actions(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let cluster = start_cluster(Some(CONFIG));
    let urls = cluster.urls();
    let n_clients = clients();
    let client = reqwest::Client::builder().pool_max_idle_per_host(n_clients).build().unwrap();
    rt.block_on(settle(&client, &urls));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut round = 0u64;

    let mut group = c.benchmark_group("cross_node_actions");
    group
        .throughput(Throughput::Elements((ACTIONS / n_clients * n_clients) as u64))
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    group.bench_function("3_nodes_sim_submit_to_terminal", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                round += 1;
                rt.block_on(run_batch(&client, &urls, round, &seen));
            }
            started.elapsed()
        })
    });
    group.finish();

    let seen = seen.lock().unwrap();
    if let Some(h) = &seen.latency_us {
        println!(
            "submit-to-terminal latency over {} actions ({n_clients} clients): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            h.len(),
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        );
    }
    println!("attempts executed per node: {:?}", seen.executed_on);
}

criterion_group!(benches, cross_node_actions);
criterion_main!(benches);

//! Replicated writes on a 3-node loopback cluster: three `warden node`
//! processes (release build) founding one Raft group over the cluster
//! transport, and HTTP clients writing memory items round-robin to all three
//! (a follower forwards to the leader; the reply comes once a majority has
//! committed the write and the receiving node has applied it). Reports
//! writes/s (criterion) and the latency distribution of each write as the
//! client saw it (printed at the end: p50, p99).
//!
//! Run: cargo bench --bench replicated_writes

mod common;

use common::{settle, start_cluster};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Writes per measured iteration.
const WRITES: usize = 2_000;
/// Clients writing at once.
const CLIENTS: usize = 64;

async fn write_batch(client: &reqwest::Client, urls: &[String], round: u64, latencies: &Mutex<Histogram<u64>>) {
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let (client, urls) = (client.clone(), urls.to_vec());
        clients.spawn(async move {
            let mut mine = Vec::with_capacity(WRITES / CLIENTS);
            for n in 0..WRITES / CLIENTS {
                let url = &urls[(c + n) % urls.len()];
                let started = Instant::now();
                let r = client
                    .put(format!("{url}/v1/memory/bench/r{round}-c{c}-n{n}"))
                    .json(&json!({"value": {"n": n}}))
                    .send()
                    .await
                    .expect("node answers");
                assert!(r.status().is_success(), "write refused: {}", r.status());
                mine.push(started.elapsed().as_micros() as u64);
            }
            mine
        });
    }
    while let Some(mine) = clients.join_next().await {
        let mut h = latencies.lock().unwrap();
        for us in mine.unwrap() {
            h.record(us).unwrap();
        }
    }
}

fn replicated_writes(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let cluster = start_cluster(None);
    let urls = cluster.urls();
    let client = reqwest::Client::builder().pool_max_idle_per_host(CLIENTS).build().unwrap();
    rt.block_on(settle(&client, &urls));
    let latencies = Arc::new(Mutex::new(Histogram::<u64>::new(3).unwrap()));
    let mut round = 0u64;

    let mut group = c.benchmark_group("replicated_writes");
    group.throughput(Throughput::Elements(WRITES as u64)).sample_size(10).measurement_time(Duration::from_secs(20));
    group.bench_function("3_nodes_http_put_memory", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                round += 1;
                rt.block_on(write_batch(&client, &urls, round, &latencies));
            }
            started.elapsed()
        })
    });
    group.finish();

    let h = latencies.lock().unwrap();
    println!(
        "write latency over {} writes ({CLIENTS} clients): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        h.len(),
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0
    );
    let view: Value = rt
        .block_on(async { client.get(format!("{}/v1/cluster", urls[0])).send().await.unwrap().json().await.unwrap() });
    println!("raft after the run: {}", view["raft"]);
}

criterion_group!(benches, replicated_writes);
criterion_main!(benches);

//! One node, one client, one request at a time: the latency of a single
//! replicated command (`put_memory`: one `PutMemory` through the proposer,
//! the log and apply), of a submission (admission, policy, `SubmitAction`),
//! and of a whole action to its terminal state (submission, the
//! Dispatcher's `Dispatch`, the Worker's sim attempt, `FinishAttempt`) —
//! with the log volatile and durable. What a single MCP call through warden
//! pays before any HTTP (benches/mcp_overhead.rs). 1,500 of each; the
//! first 300 are warm-up. Prints p50/p90 in µs.
//!
//! Run: cargo bench --bench action_latency

use serde_json::json;
use std::time::{Duration, Instant};
use warden_actors::consensus::Durability;
use warden_actors::domain::{Capability, Tier, Trust};
use warden_actors::ids::CorrelationId;
use warden_actors::memory::PutRequest;
use warden_actors::pipeline::SubmitRequest;
use warden_actors::sessions::OpenTurnRequest;
use warden_actors::{Node, NodeConfig};

const RUNS: usize = 1_500;
const WARMUP: usize = 300;

fn pct(v: &mut [u128], p: f64) -> u128 {
    v.sort_unstable();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for durability in [Durability::Volatile, Durability::Durable] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = NodeConfig::new("bench", dir.path(), vec![Capability::new("bench.noop", Tier::Observe)]);
        config.durability = durability;
        let node = rt.block_on(Node::start(config)).unwrap();
        rt.block_on(async {
            let turn =
                node.open_turn(OpenTurnRequest { trust: Some(Trust::Normal), ..Default::default() }).await.unwrap().id;
            let mut put = Vec::new();
            for i in 0..RUNS {
                let t = Instant::now();
                node.put_memory(PutRequest {
                    ns: "n".into(),
                    key: format!("k{i}"),
                    value: json!(1),
                    tags: vec![],
                    turn_id: None,
                    correlation_id: CorrelationId("c".into()),
                })
                .await
                .unwrap();
                if i >= WARMUP {
                    put.push(t.elapsed().as_micros());
                }
            }
            let (mut sub, mut full) = (Vec::new(), Vec::new());
            for i in 0..RUNS {
                let t = Instant::now();
                let a = node
                    .submit(SubmitRequest {
                        turn_id: turn.clone(),
                        capability: "bench.noop".into(),
                        args: json!({}),
                        idempotency_key: None,
                        principal: None,
                    })
                    .await
                    .unwrap();
                let s = t.elapsed().as_micros();
                node.wait_action(&a.id, Duration::from_secs(10)).await.unwrap();
                if i >= WARMUP {
                    sub.push(s);
                    full.push(t.elapsed().as_micros());
                }
            }
            println!(
                "{durability:?}: put_memory p50 {} p90 {} | submit p50 {} | submit->terminal p50 {} p90 {}",
                pct(&mut put, 0.5),
                pct(&mut put, 0.9),
                pct(&mut sub, 0.5),
                pct(&mut full, 0.5),
                pct(&mut full, 0.9)
            );
        });
        rt.block_on(node.shutdown()).unwrap();
    }
}

//! Chaos suite: scripted failures of a 3-node cluster (one process per node,
//! every link through a fault proxy) while actions run, each ending with the
//! soak invariants (`warden::soak::check`): every acknowledged action
//! terminal and succeeded, no tool execution outside an action's record, one
//! effect per succeeded action, SLOs met, and all nodes on one state digest.

mod common;

use common::cluster::{http, post, CLUSTER_WAIT};
use common::load::{kill_of, start, HOLD};
use common::serial::one_cluster_at_a_time;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use warden::soak::workload::events_of_kind;
use warden_actors::clock::wall_ms as now_ms;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_node_executing_a_held_request_completes_the_action_elsewhere_with_one_effect() {
    let _serial = one_cluster_at_a_time().await;
    let run = start(Duration::from_secs(3), 10_000, "").await;
    let http = http();
    let turn = run.cluster.open_turn(0, "s1").await;
    let key = "held-key-1";
    let body = json!({"turn_id": turn, "capability": "soak.tool", "args": {}, "idempotency_key": key});
    let (status, accepted) = post(format!("{}/v1/actions", run.cluster.url(0)), body).await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["action_id"].as_str().unwrap().to_owned();

    // The tool holds the request: find who sent it, and kill that node mid-request.
    let deadline = Instant::now() + CLUSTER_WAIT;
    while run.tool.record(key).map_or(0, |r| r.requests) == 0 {
        assert!(Instant::now() < deadline, "the tool never saw the action");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let action: Value =
        http.get(format!("{}/v1/actions/{id}", run.cluster.url(0))).send().await.unwrap().json().await.unwrap();
    let executor = action["attempts"][0]["node"].as_str().unwrap().to_owned();
    let victim = run.cluster.index_of(&executor);
    let mut run = run;
    run.cluster.nodes[victim].kill_9();
    let killed_at = now_ms();

    let survivor = (victim + 1) % 3;
    let deadline = Instant::now() + CLUSTER_WAIT;
    let done = loop {
        let url = format!("{}/v1/actions/{id}?wait_ms=5000", run.cluster.url(survivor));
        if let Ok(r) = http.get(url).send().await {
            let a: Value = r.json().await.unwrap_or_default();
            if a["state"] == "succeeded" {
                break a;
            }
            assert!(!matches!(a["state"].as_str(), Some("failed" | "dead_lettered")), "action ended badly: {a}");
        }
        assert!(Instant::now() < deadline, "the action did not complete after its executor died");
    };
    let attempts = done["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["outcome"]["outcome"], "interrupted", "{done}");
    let last = attempts.last().unwrap();
    assert_ne!(last["node"], executor, "the action finished on the dead node: {done}");
    let record = run.tool.record(key).unwrap();
    assert!(record.requests <= 2, "the tool saw the key {} times", record.requests);
    assert_eq!(record.effects, 1, "the effect was not applied exactly once");

    let takeovers = events_of_kind(run.cluster.url(survivor), "action.takeover").await.unwrap();
    let takeover = takeovers.iter().find(|e| e["action_id"] == id.as_str()).expect("an action.takeover event");
    assert_eq!(takeover["data"]["from"], executor.as_str());
    let dispatched = events_of_kind(run.cluster.url(survivor), "action.dispatched").await.unwrap();
    let nodes: Vec<&str> = dispatched
        .iter()
        .filter(|e| e["action_id"] == id.as_str())
        .filter_map(|e| e["data"]["node"].as_str())
        .collect();
    assert_eq!(nodes.len(), attempts.len(), "one action.dispatched per attempt: {nodes:?}");
    let after = takeover["ts"].as_u64().unwrap().saturating_sub(killed_at);
    eprintln!("executor {executor} killed; taken over {after} ms later by {}", last["node"]);
    run.restart(victim);
    run.cluster.converged(&run.cluster.all()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_under_load_loses_nothing() {
    let _serial = one_cluster_at_a_time().await;
    let mut run = start(HOLD, 5_000, "").await;
    let (leader, _) = run.cluster.leader_among(&run.cluster.all(), 0).await;
    let load = run.load("leaderkill", 150, 30.0);
    run.cluster.running_on((leader + 1) % 3, leader, 3).await;
    run.cluster.nodes[leader].kill_9();
    let kills = vec![kill_of(&run, leader)];
    tokio::time::sleep(Duration::from_secs(2)).await;
    run.restart(leader);
    let submitted = load.await.unwrap();
    let report = run.finish(150, submitted, &kills).await;
    assert!(report.takeovers >= 1, "the dead leader's attempts were not taken over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_executor_is_taken_over_and_its_late_results_are_fenced() {
    let _serial = one_cluster_at_a_time().await;
    let run = start(HOLD, 5_000, "").await;
    let (leader, _) = run.cluster.leader_among(&run.cluster.all(), 0).await;
    let frozen = (leader + 1) % 3;
    let load = run.load("sigstop", 150, 30.0);
    run.cluster.running_on(leader, frozen, 3).await;
    run.cluster.nodes[frozen].signal("STOP");
    let kills = vec![kill_of(&run, frozen)];
    tokio::time::sleep(Duration::from_secs(3)).await;
    run.cluster.nodes[frozen].signal("CONT");
    let submitted = load.await.unwrap();
    let report = run.finish(150, submitted, &kills).await;
    assert!(report.takeovers_by_reason.get("node_down").copied().unwrap_or(0) >= 1, "{:?}", report.takeovers_by_reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_executor_is_taken_over_and_rejoins() {
    let _serial = one_cluster_at_a_time().await;
    let run = start(HOLD, 5_000, "").await;
    let (leader, _) = run.cluster.leader_among(&run.cluster.all(), 0).await;
    let cut = (leader + 1) % 3;
    let load = run.load("partition", 150, 30.0);
    run.cluster.running_on(leader, cut, 3).await;
    run.cluster.isolate(cut);
    let kills = vec![kill_of(&run, cut)];
    tokio::time::sleep(Duration::from_secs(3)).await;
    run.cluster.heal_all();
    let submitted = load.await.unwrap();
    let report = run.finish(150, submitted, &kills).await;
    assert!(report.takeovers_by_reason.get("node_down").copied().unwrap_or(0) >= 1, "{:?}", report.takeovers_by_reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_at_once_on_its_data_dir_takes_over_its_own_attempts() {
    let _serial = one_cluster_at_a_time().await;
    let mut run = start(HOLD, 5_000, "").await;
    let (leader, _) = run.cluster.leader_among(&run.cluster.all(), 0).await;
    let victim = (leader + 1) % 3;
    let load = run.load("restart", 150, 30.0);
    run.cluster.running_on(leader, victim, 3).await;
    let kills = vec![kill_of(&run, victim)];
    run.restart(victim);
    let submitted = load.await.unwrap();
    let report = run.finish(150, submitted, &kills).await;
    assert!(report.takeovers >= 1, "nothing was taken over after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_node_loses_nothing() {
    let _serial = one_cluster_at_a_time().await;
    let mut run = start(HOLD, 5_000, "").await;
    let load = run.load("rolling", 240, 30.0);
    let mut kills = Vec::new();
    for i in run.cluster.all() {
        // Stop each node while attempts run on it: its drain must let them finish.
        run.cluster.running_on((i + 1) % 3, i, 3).await;
        let status = run.cluster.nodes[i].signal_and_wait("TERM", Duration::from_secs(20));
        assert!(status.is_some_and(|s| s.success()), "node {i} did not stop cleanly: {status:?}");
        kills.push(kill_of(&run, i));
        run.restart(i);
        // The next node goes only once this one is back in the group.
        let deadline = Instant::now() + CLUSTER_WAIT;
        while run.cluster.raft(i).await.is_none_or(|r| r["leader"].is_null()) {
            assert!(Instant::now() < deadline, "node {i} did not rejoin after its restart");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let submitted = load.await.unwrap();
    let report = run.finish(240, submitted, &kills).await;
    // A graceful stop drains the node first and lets its attempts finish: nothing to take over.
    assert_eq!(report.takeovers, 0, "{:?}", report.takeovers_by_reason);
    let view = run.cluster.get(0, "/v1/cluster").await.unwrap();
    let drained: Vec<&Value> = view["nodes"].as_array().unwrap().iter().filter(|n| n["draining"] == true).collect();
    assert!(drained.is_empty(), "a restarted node stayed drained: {drained:?}");
}

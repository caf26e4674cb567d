//! Orchestrator and health supervisor over HTTP on real 3-node clusters:
//! drain under load, leadership transfer, remove and re-add, refused
//! requests that change nothing, and an actor crash loop turning the cluster
//! verdict degraded and back to ok (also as `warden status` shows it).

mod common;

use common::cluster::{delete, http, post, Cluster, CLUSTER_WAIT};
use common::load::{start, HOLD};
use common::process::{loopback, NodeProcess};
use common::serial::one_cluster_at_a_time;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use warden::soak::workload::events_of_kind;

/// Leader, term, each member's role and each node's drain flag, as node `i` sees them.
async fn topology(cluster: &Cluster, i: usize) -> Value {
    let view = cluster.get(i, "/v1/cluster").await.expect("cluster view");
    let mut nodes: Vec<Value> = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| json!({"name": n["name"], "role": n["raft"]["role"], "draining": n["draining"]}))
        .collect();
    nodes.sort_by_key(|n| n["name"].as_str().unwrap_or_default().to_owned());
    json!({"leader": view["leader"], "term": view["term"], "nodes": nodes})
}

/// Waits until every node in `among` names `leader` as leader.
async fn all_follow(cluster: &Cluster, among: &[usize], leader: &str) {
    let deadline = Instant::now() + CLUSTER_WAIT;
    for &i in among {
        while cluster.raft(i).await.is_none_or(|r| r["leader"] != leader) {
            assert!(Instant::now() < deadline, "node {i} does not follow {leader}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_the_leader_under_load_moves_leadership_and_places_nothing_new_on_it() {
    let _serial = one_cluster_at_a_time().await;
    let run = start(HOLD, 5_000, "").await;
    let (leader, _) = run.cluster.leader_among(&run.cluster.all(), 0).await;
    let name = run.cluster.names[leader].clone();
    let other = (leader + 1) % 3;
    let load = run.load("drain", 150, 30.0);
    run.cluster.running_on(other, leader, 3).await;
    let (status, drained) = post(format!("{}/v1/cluster/nodes/{name}/drain", run.cluster.url(other)), json!({})).await;
    assert_eq!(status, 202, "{drained}");
    assert_eq!(drained["draining"], true);
    assert_ne!(drained["leader"], name.as_str(), "leadership stayed on the drained node: {drained}");
    assert!(drained["running"].as_u64().unwrap() >= 1, "nothing was running on {name} when drained: {drained}");

    let submitted = load.await.unwrap();
    let report = run.finish(150, submitted, &[]).await;
    assert_eq!(report.takeovers, 0, "a drain moves nothing: in-flight attempts finish where they are");

    let events = run.cluster.timeline(other).await;
    let drain_seq = events
        .iter()
        .find(|e| e["kind"] == "node.draining" && e["data"]["node"] == name.as_str())
        .and_then(|e| e["seq"].as_u64())
        .expect("a node.draining event");
    let on_drained: Vec<&Value> =
        events.iter().filter(|e| e["kind"] == "action.dispatched" && e["data"]["node"] == name.as_str()).collect();
    assert!(!on_drained.is_empty(), "nothing ever ran on {name}");
    for e in &on_drained {
        assert!(e["seq"].as_u64().unwrap() < drain_seq, "dispatched to {name} after its drain: {e}");
    }
    // What ran there when the drain came finished there.
    let finished_there = events
        .iter()
        .filter(|e| {
            e["kind"] == "action.attempt" && e["data"]["node"] == name.as_str() && e["seq"].as_u64() > Some(drain_seq)
        })
        .count();
    assert!(finished_there >= 1, "no attempt finished on {name} after the drain");
    let view = run.cluster.get(other, "/v1/cluster").await.unwrap();
    assert_ne!(view["leader"], name.as_str());
    for service in view["services"].as_array().unwrap() {
        assert_ne!(service["node"], name.as_str(), "a service stayed placed on the drained node: {service}");
    }
    let node = view["nodes"].as_array().unwrap().iter().find(|n| n["name"] == name.as_str()).unwrap();
    assert_eq!((node["draining"].clone(), node["running"].clone()), (json!(true), json!(0)), "{node}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_to_the_named_node_and_writes_go_on() {
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3, "");
    cluster.settled().await;
    let (leader, term) = cluster.leader_among(&cluster.all(), 0).await;
    let target = (leader + 1) % 3;
    let asked = (leader + 2) % 3;
    let name = cluster.names[target].clone();
    let started = Instant::now();
    let (status, body) = post(format!("{}/v1/cluster/leader", cluster.url(asked)), json!({"node": name})).await;
    eprintln!("leadership moved to {name} in {:?}", started.elapsed());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["leader"], name.as_str());
    // The reply names the new leader's term, as the asked node learnt it.
    assert!(body["term"].as_u64().unwrap() > term, "{body}");
    all_follow(&cluster, &cluster.all(), &name).await;
    let new_term = cluster.raft(target).await.expect("the new leader answers")["term"].as_u64().unwrap();
    assert!(new_term > term, "leadership moved without a new term: {new_term} after {term}");
    for i in cluster.all() {
        assert_eq!(cluster.put_memory(i, "after-transfer", &format!("k{i}")).await, Some(200));
    }
    let events = cluster.timeline(asked).await;
    let transfer = events.iter().position(|e| e["kind"] == "leader.transfer" && e["data"]["to"] == name.as_str());
    let changed = events.iter().rposition(|e| e["kind"] == "leader.changed" && e["data"]["leader"] == name.as_str());
    assert!(transfer.is_some() && changed > transfer, "leader.transfer then leader.changed expected");
    cluster.converged(&cluster.all()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_is_added_back_on_a_fresh_data_dir() {
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, "[raft]\nauto_join = false\n");
    cluster.settled().await;
    let (status, body) = delete(format!("{}/v1/cluster/members/c", cluster.url(0))).await;
    assert_eq!(status, 200, "{body}");
    let seed = loopback(cluster.ports[0]);
    cluster.nodes[2].restart_fresh(&["--seed".into(), seed]);
    // c is up again, without a log: a member can be made of it only by request.
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let view = cluster.get(0, "/v1/cluster").await.unwrap();
        let c = view["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "c").cloned().unwrap_or_default();
        if c["state"] == "up" && c["raft"]["role"] == "none" {
            break;
        }
        assert!(Instant::now() < deadline, "c never came back up outside the group: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = post(format!("{}/v1/cluster/members", cluster.url(0)), json!({"node": "c"})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(cluster.put_memory(0, "readd", "k").await, Some(200));
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let item = cluster.get(2, "/v1/memory/readd/k?fresh=true").await.unwrap_or_default();
        let role = topology(&cluster, 0).await["nodes"][2]["role"].clone();
        if item["key"] == "k" && role == "voter" {
            break;
        }
        assert!(Instant::now() < deadline, "c did not become a voter with the data: {item} {role}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kinds: Vec<String> = cluster
        .timeline(2)
        .await
        .iter()
        .filter(|e| e["data"]["node"] == "c")
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    let removed = kinds.iter().position(|k| k == "member.removed").expect("member.removed");
    let added = kinds.iter().position(|k| k == "member.added").expect("member.added");
    assert!(removed < added);
    cluster.converged(&cluster.all()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_topology_requests_are_refused_and_change_nothing() {
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let pinned = "[[capability]]\nname = \"pinned.job\"\ntier = 0\nnodes = [\"c\"]\n\
                  [[capability]]\nname = \"any.job\"\ntier = 0\n";
    let cluster = Cluster::start(dir.path(), 3, pinned);
    cluster.settled().await;
    let before = topology(&cluster, 0).await;
    let base = cluster.url(0).to_owned();
    let refused = [
        (
            "drain an unknown node",
            post(format!("{base}/v1/cluster/nodes/zz/drain"), json!({})).await,
            404,
            "unknown_node",
        ),
        (
            "drain the only executor",
            post(format!("{base}/v1/cluster/nodes/c/drain"), json!({})).await,
            409,
            "only_executor",
        ),
        (
            "lead: unknown node",
            post(format!("{base}/v1/cluster/leader"), json!({"node": "zz"})).await,
            404,
            "unknown_node",
        ),
        (
            "add an unknown node",
            post(format!("{base}/v1/cluster/members"), json!({"node": "zz"})).await,
            404,
            "unknown_node",
        ),
        ("add a member again", post(format!("{base}/v1/cluster/members"), json!({"node": "b"})).await, 409, "conflict"),
        ("remove an unknown node", delete(format!("{base}/v1/cluster/members/zz")).await, 404, "unknown_node"),
        ("add without a name", post(format!("{base}/v1/cluster/members"), json!({})).await, 400, "bad_input"),
    ];
    for (what, (status, body), want_status, want_code) in refused {
        assert_eq!((status, body["error"]["code"].as_str()), (want_status, Some(want_code)), "{what}: {body}");
        assert!(!body["error"]["message"].as_str().unwrap_or_default().is_empty(), "{what}: no message");
    }
    assert_eq!(topology(&cluster, 0).await, before, "a refused request changed the topology");
    let drains = events_of_kind(cluster.url(0), "node.draining").await.unwrap();
    assert!(drains.is_empty(), "a refused drain was recorded: {drains:?}");

    // The last voter of a group cannot be removed.
    let lone_dir = tempfile::tempdir().unwrap();
    let lone = NodeProcess::start(lone_dir.path(), None);
    let (status, body) = delete(format!("{}/v1/cluster/members/a", lone.url)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("last_voter")), "{body}");
    let raft: Value = http().get(format!("{}/v1/cluster", lone.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(raft["raft"]["members"].as_array().map(Vec::len), Some(1), "{raft}");
}

/// Node `i`'s cluster verdict: (verdict, reasons).
async fn verdict(cluster: &Cluster, i: usize) -> (String, Vec<Value>) {
    let h = cluster.get(i, "/v1/health?scope=cluster").await.expect("cluster health");
    (h["verdict"].as_str().unwrap_or_default().to_owned(), h["reasons"].as_array().cloned().unwrap_or_default())
}

/// Waits until node `i`'s cluster verdict satisfies `pred`; returns it.
async fn verdict_until(
    cluster: &Cluster,
    i: usize,
    what: &str,
    pred: impl Fn(&str, &[Value]) -> bool,
) -> (String, Vec<Value>) {
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let (v, reasons) = verdict(cluster, i).await;
        if pred(&v, &reasons) {
            return (v, reasons);
        }
        assert!(Instant::now() < deadline, "node {i}: {what} not seen: {v} {reasons:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn restart_loop(reasons: &[Value]) -> Option<&Value> {
    reasons.iter().find(|r| r["kind"] == "restart_loop")
}

fn status_cli(url: &str) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["status", "--target", url])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("warden status runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_crash_loop_turns_the_verdict_degraded_naming_it_then_ok_again() {
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let config = "fault_injection = true\n\
                  [health]\nrestart_window_ms = 4000\n\
                  [[capability]]\nname = \"crashy\"\ntier = 0\nnodes = [\"b\"]\nmax_attempts = 8\nbackoff_ms = 100\n";
    let cluster = Cluster::start(dir.path(), 3, config);
    cluster.settled().await;
    assert_eq!(verdict(&cluster, 0).await.0, "ok");
    let (code, text) = status_cli(cluster.url(0));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("OK") && !text.contains('\u{1b}'), "plain OK expected off a terminal: {text}");

    let turn = cluster.open_turn(0, "s").await;
    let body = json!({"turn_id": turn, "capability": "crashy", "args": {"_sim": {"panic_attempts": 3}}});
    let (status, action) = post(format!("{}/v1/actions", cluster.url(0)), body).await;
    assert_eq!(status, 202, "{action}");

    // Node a judges the cluster: b's Executors actor is in a restart loop.
    let (v, reasons) = verdict_until(&cluster, 0, "a restart loop", |_, r| restart_loop(r).is_some()).await;
    assert_eq!(v, "degraded", "{reasons:?}");
    let reason = restart_loop(&reasons).unwrap();
    assert_eq!(reason["node"], "b");
    assert!(reason["message"].as_str().unwrap().contains("executors"), "{reason}");
    // Node c hears of it through b's heartbeats: wait for its verdict before asking `warden status` there.
    let (v, reasons) = verdict_until(&cluster, 2, "a restart loop", |_, r| restart_loop(r).is_some()).await;
    assert_eq!(v, "degraded", "{reasons:?}");
    let (code, text) = status_cli(cluster.url(2));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("DEGRADED") && text.contains("executors"), "{text}");

    // The action still completes (attempt 4), and once the window passes the verdict is ok again.
    let id = action["action_id"].as_str().unwrap();
    let done = cluster.get(0, &format!("/v1/actions/{id}?wait_ms=20000")).await.unwrap();
    assert_eq!(done["state"], "succeeded", "{done}");
    for i in [0, 1] {
        verdict_until(&cluster, i, "the verdict back to ok", |v, _| v == "ok").await;
    }
    let (code, text) = status_cli(cluster.url(1));
    assert_eq!(code, 0, "{text}");
}

//! The cluster transport across real processes: nodes that share a cookie
//! connect (directly or transitively), a node with another cookie never
//! joins, and a peer that comes back is reconnected.

mod common;

use common::process::{free_port, NodeProcess};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Bound on every wait for the cluster to reach a state.
const CLUSTER_WAIT: Duration = Duration::from_secs(30);

fn node_args(name: &str, port: u16, seeds: &[u16], cookie: &Path) -> Vec<String> {
    let mut args = vec!["--name".into(), name.into(), "--cluster-addr".into(), format!("127.0.0.1:{port}")];
    for s in seeds {
        args.extend(["--seed".into(), format!("127.0.0.1:{s}")]);
    }
    args.extend(["--cookie-file".into(), cookie.display().to_string()]);
    args
}

async fn cluster(node: &NodeProcess) -> Value {
    reqwest::get(format!("{}/v1/cluster", node.url)).await.unwrap().json().await.unwrap()
}

fn peers_in(view: &Value, state: &str) -> Vec<String> {
    let mut names: Vec<String> = view["transport"]["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["state"] == state)
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// Polls `node`'s cluster view until `pred` holds.
async fn until(node: &NodeProcess, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    tokio::time::timeout(CLUSTER_WAIT, async {
        loop {
            let view = cluster(node).await;
            if pred(&view) {
                return view;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} within {CLUSTER_WAIT:?}"))
}

#[tokio::test]
async fn nodes_sharing_a_cookie_connect_and_a_wrong_cookie_never_joins() {
    let dir = tempfile::tempdir().unwrap();
    let (good, bad) = (dir.path().join("cookie"), dir.path().join("other-cookie"));
    std::fs::write(&good, "test-cookie-0123456789").unwrap();
    std::fs::write(&bad, "another-cookie-0123456789").unwrap();
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let start = |name: &str, i: usize, seeds: &[u16], cookie: &Path| {
        NodeProcess::start_with(&dir.path().join(name), None, &node_args(name, ports[i], seeds, cookie))
    };
    let a = start("a", 0, &[ports[1], ports[2]], &good);
    let b = start("b", 1, &[ports[0]], &good);
    let c = start("c", 2, &[ports[0]], &good);
    for (node, others) in [(&a, ["b", "c"]), (&b, ["a", "c"]), (&c, ["a", "b"])] {
        until(node, "every node sees the two others", |v| peers_in(v, "connected") == others).await;
    }

    let intruder = start("x", 3, &[ports[0], ports[1]], &bad);
    until(&intruder, "the intruder's handshakes fail", |v| v["transport"]["rejected_sessions"].as_u64() >= Some(2))
        .await;
    until(&a, "the seed refuses the intruder", |v| v["transport"]["rejected_sessions"].as_u64() >= Some(1)).await;
    for node in [&a, &b, &c] {
        let view = cluster(node).await;
        let all: Vec<&str> = view["nodes"].as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap()).collect();
        assert!(!all.contains(&"x"), "the intruder appears in {all:?}");
    }
    assert!(peers_in(&cluster(&intruder).await, "connected").is_empty());
}

#[tokio::test]
async fn a_peer_that_comes_back_is_reconnected() {
    let dir = tempfile::tempdir().unwrap();
    let cookie = dir.path().join("cookie");
    std::fs::write(&cookie, "test-cookie-0123456789").unwrap();
    let (pa, pb) = (free_port(), free_port());
    let a = NodeProcess::start_with(&dir.path().join("a"), None, &node_args("a", pa, &[pb], &cookie));
    let mut b = NodeProcess::start_with(&dir.path().join("b"), None, &node_args("b", pb, &[pa], &cookie));
    until(&a, "a connects to b", |v| peers_in(v, "connected") == ["b"]).await;

    b.kill_9();
    until(&a, "a sees b's session close", |v| peers_in(v, "disconnected") == ["b"]).await;
    b.restart();
    until(&a, "a reconnects to the restarted b", |v| peers_in(v, "connected") == ["b"]).await;
    until(&b, "and b to a", |v| peers_in(v, "connected") == ["a"]).await;
}

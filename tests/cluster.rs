//! The cluster transport across real processes: nodes that share a cookie
//! connect (directly or transitively), a node with another cookie never
//! joins, and a peer that comes back is reconnected.

mod common;

use common::process::{free_ports, loopback, node_args, NodeProcess};
use common::serial::one_cluster_at_a_time;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Bound on every wait for the cluster to reach a state.
const CLUSTER_WAIT: Duration = Duration::from_secs(30);

/// Writes the shared cookie under `dir` and returns its path.
fn cookie_in(dir: &Path) -> std::path::PathBuf {
    let cookie = dir.join("cookie");
    std::fs::write(&cookie, "test-cookie-0123456789").unwrap();
    cookie
}

/// Nodes a, b, c under `dir`, each seeded with the two others, founding one
/// Raft cluster of three voters.
fn three_node_mesh(dir: &Path) -> [NodeProcess; 3] {
    let cookie = cookie_in(dir);
    let base = free_ports(3);
    let ports: Vec<u16> = (0..3).map(|i| base + i).collect();
    ["a", "b", "c"].map(|name| {
        let i = (name.as_bytes()[0] - b'a') as usize;
        let seeds = [ports[(i + 1) % 3], ports[(i + 2) % 3]];
        let mut args = args_seeded_by_ports(name, ports[i], &seeds, &cookie);
        args.extend(["--bootstrap".into(), "a,b,c".into()]);
        NodeProcess::start_with(&dir.join(name), None, &args)
    })
}

/// `node_args` with seeds given as loopback ports.
fn args_seeded_by_ports(name: &str, port: u16, seeds: &[u16], cookie: &Path) -> Vec<String> {
    let seeds: Vec<String> = seeds.iter().map(|&p| loopback(p)).collect();
    node_args(name, port, &seeds, cookie)
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
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let (good, bad) = (dir.path().join("cookie"), dir.path().join("other-cookie"));
    std::fs::write(&good, "test-cookie-0123456789").unwrap();
    std::fs::write(&bad, "another-cookie-0123456789").unwrap();
    let base = free_ports(4);
    let ports: Vec<u16> = (0..4).map(|i| base + i).collect();
    let start = |name: &str, i: usize, seeds: &[u16], cookie: &Path| {
        NodeProcess::start_with(&dir.path().join(name), None, &args_seeded_by_ports(name, ports[i], seeds, cookie))
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
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let cookie = cookie_in(dir.path());
    let pa = free_ports(2);
    let pb = pa + 1;
    let a = NodeProcess::start_with(&dir.path().join("a"), None, &args_seeded_by_ports("a", pa, &[pb], &cookie));
    let mut b = NodeProcess::start_with(&dir.path().join("b"), None, &args_seeded_by_ports("b", pb, &[pa], &cookie));
    until(&a, "a connects to b", |v| peers_in(v, "connected") == ["b"]).await;

    b.kill_9();
    until(&a, "a sees b's session close", |v| peers_in(v, "disconnected") == ["b"]).await;
    b.restart();
    until(&a, "a reconnects to the restarted b", |v| peers_in(v, "connected") == ["b"]).await;
    until(&b, "and b to a", |v| peers_in(v, "connected") == ["a"]).await;
}

fn state_of(view: &Value, name: &str) -> Option<String> {
    view["nodes"].as_array()?.iter().find(|n| n["name"] == name).map(|n| n["state"].as_str().unwrap().to_owned())
}

/// A dead node must be declared down within this (the target is 2 s; this
/// bound leaves room for a loaded CI machine and the polling itself).
const DETECTION_BOUND: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_killed_or_frozen_node_is_declared_down_and_rejoins_when_it_returns() {
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let [a, b, mut c] = three_node_mesh(dir.path());
    for (node, others) in [(&a, ["b", "c"]), (&b, ["a", "c"]), (&c, ["a", "b"])] {
        until(node, "heartbeats show every peer up", |v| {
            others.iter().all(|o| state_of(v, o).as_deref() == Some("up"))
        })
        .await;
    }

    // kill -9: both survivors declare it down.
    c.kill_9();
    let killed = std::time::Instant::now();
    for node in [&a, &b] {
        until(node, "c declared down", |v| state_of(v, "c").as_deref() == Some("down")).await;
    }
    assert!(killed.elapsed() < DETECTION_BOUND, "down after {:?}", killed.elapsed());
    c.restart();
    until(&a, "c rejoins after restart", |v| state_of(v, "c").as_deref() == Some("up")).await;

    // SIGSTOP: the TCP session stays open, yet the silence is noticed.
    let frozen = std::time::Instant::now();
    assert!(std::process::Command::new("kill").args(["-STOP", &c.pid().to_string()]).status().unwrap().success());
    until(&a, "a frozen c declared down", |v| state_of(v, "c").as_deref() == Some("down")).await;
    assert!(frozen.elapsed() < DETECTION_BOUND, "down after {:?}", frozen.elapsed());
    assert!(std::process::Command::new("kill").args(["-CONT", &c.pid().to_string()]).status().unwrap().success());
    let view = until(&a, "c up again after SIGCONT", |v| state_of(v, "c").as_deref() == Some("up")).await;
    let rejoins = view["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "c").unwrap()["rejoins"].as_u64();
    assert_eq!(rejoins, Some(2));

    let events: Value = reqwest::get(format!("{}/v1/timeline?limit=10000", a.url)).await.unwrap().json().await.unwrap();
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"]["node"] == "c")
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for k in ["node.joined", "node.suspect", "node.down"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
}

/// The detection target: a kill -9 is a `node.down` event on a survivor within this.
const DETECTION_TARGET_MS: u64 = 2_000;

/// Kills node c `kills` times (restarting it in between) and returns, for
/// each kill, the time from the kill to node a's committed `node.down` event.
async fn detection_times(kills: usize) -> Vec<u64> {
    let dir = tempfile::tempdir().unwrap();
    let [a, _b, mut c] = three_node_mesh(dir.path());
    let mut times = Vec::new();
    for round in 0..kills {
        until(&a, "c up", |v| state_of(v, "c").as_deref() == Some("up")).await;
        let killed_ms = warden_actors::clock::wall_ms();
        c.kill_9();
        let down = tokio::time::timeout(CLUSTER_WAIT, async {
            loop {
                let url = format!("{}/v1/timeline?from={killed_ms}&limit=10000", a.url);
                let events: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
                let down = events["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["kind"] == "node.down" && e["data"]["node"] == "c")
                    .cloned();
                if let Some(down) = down {
                    return down;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("a node.down event after the kill");
        let ms = down["ts"].as_u64().unwrap() - killed_ms;
        println!("kill {round:2}: declared down after {ms} ms");
        times.push(ms);
        c.restart();
    }
    times
}

#[tokio::test]
async fn a_killed_node_is_declared_down_within_2_s_on_each_of_5_kills() {
    let _serial = one_cluster_at_a_time().await;
    let times = detection_times(5).await;
    assert!(times.iter().all(|&ms| ms < DETECTION_TARGET_MS), "detection times {times:?} ms");
}

/// Detection time over 20 kills. A measurement: run it with
/// `cargo nextest run --test cluster --run-ignored only detection_time_over_20_kills --no-capture`.
#[tokio::test]
#[ignore = "a 20-kill measurement; the 5-kill test gates CI"]
async fn detection_time_over_20_kills() {
    let _serial = one_cluster_at_a_time().await;
    let mut times = detection_times(20).await;
    times.sort_unstable();
    println!("detection over 20 kills: median {} ms, max {} ms", times[10], times[19]);
    assert!(times[19] < DETECTION_TARGET_MS, "a kill took {} ms to detect", times[19]);
}

#[tokio::test]
async fn services_of_a_dead_node_are_re_placed_on_a_live_one() {
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let [mut a, b, _c] = three_node_mesh(dir.path());
    let placed_on = |v: &Value, node: &str| {
        let services = v["services"].as_array().unwrap();
        !services.is_empty() && services.iter().all(|s| s["node"] == node)
    };
    let view = until(&b, "every service placed on a, hosted by all three", |v| {
        placed_on(v, "a")
            && v["services"].as_array().unwrap().iter().all(|s| s["hosts"] == serde_json::json!(["a", "b", "c"]))
    })
    .await;
    assert!(view["services"].as_array().unwrap().iter().any(|s| s["service"] == "executor:search.web"));

    a.kill_9();
    until(&b, "a's services re-placed on b", |v| placed_on(v, "b")).await;
    // b and c are a majority: the move is committed and on the timeline.
    let moved = tokio::time::timeout(CLUSTER_WAIT, async {
        loop {
            let events: Value =
                reqwest::get(format!("{}/v1/timeline?limit=10000", b.url)).await.unwrap().json().await.unwrap();
            let moved: Vec<Value> = events["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["kind"] == "service.moved" && e["node"] == "b" && e["data"]["from"] == "a")
                .cloned()
                .collect();
            if !moved.is_empty() {
                return moved;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("service.moved committed");
    assert!(moved.iter().all(|e| e["data"]["to"] == "b"), "{moved:?}");
}

/// Each node runs the same capability at its own latency; the cluster p95 of
/// `GET /v1/slo` merges the nodes' histograms and lands within 1 % of the
/// exact p95 of every attempt (from the log's `action.attempt` events), where
/// averaging the nodes' own p95s would not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_p95_merges_every_node_histogram_within_one_percent_of_exact() {
    use common::cluster::{post, Cluster};
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let probe = |latency: u64, jitter: u64| {
        format!(
            "[[capability]]\nname = \"probe\"\ntier = 0\nmax_attempts = 1\n\
             executor = {{ kind = \"sim\", latency_ms = {latency}, jitter_ms = {jitter} }}\n"
        )
    };
    let cluster = Cluster::start_each(dir.path(), &[probe(5, 20), probe(60, 60), probe(200, 150)]);
    cluster.settled().await;
    let turn = cluster.open_turn(0, "slo").await;
    let mut submits = tokio::task::JoinSet::new();
    for i in 0..600 {
        let url = format!("{}/v1/actions", cluster.url(i % 3));
        let body = serde_json::json!({
            "turn_id": turn, "capability": "probe", "args": {"i": i}, "idempotency_key": format!("p95-{i}"),
        });
        // 600 at once on two cores can outlast a write's commit timeout: a 503
        // is retryable (docs/api.md), and the same key never runs it twice.
        submits.spawn(async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                let (status, answer) = post(url.clone(), body.clone()).await;
                if status != 503 || std::time::Instant::now() > deadline {
                    return (status, answer);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    while let Some(done) = submits.join_next().await {
        let (status, body) = done.unwrap();
        assert_eq!(status, 202, "{body}");
    }
    // Every attempt recorded in the log, with the latency its node measured.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut latencies = loop {
        let events = cluster.timeline(0).await;
        let attempts: Vec<&Value> = events.iter().filter(|e| e["kind"] == "action.attempt").collect();
        if attempts.len() == 600 {
            let nodes: std::collections::BTreeSet<&str> =
                attempts.iter().filter_map(|e| e["data"]["node"].as_str()).collect();
            assert_eq!(nodes.len(), 3, "every node ran attempts: {nodes:?}");
            break attempts.iter().map(|e| e["data"]["latency_ms"].as_u64().unwrap()).collect::<Vec<u64>>();
        }
        assert!(std::time::Instant::now() < deadline, "{} of 600 attempts recorded", attempts.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    latencies.sort_unstable();
    let exact = latencies[(0.95 * latencies.len() as f64).ceil() as usize - 1] as f64;
    let p95_of = |view: &Value| {
        let probe =
            view["capabilities"].as_array().unwrap().iter().find(|c| c["capability"] == "probe").unwrap().clone();
        let hour = probe["windows"].as_array().unwrap().iter().find(|w| w["window"] == "1h").unwrap().clone();
        (hour["count"].as_u64().unwrap(), hour["p95_ms"].as_f64().unwrap_or(0.0))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (count, merged) = loop {
        let view = cluster.get(1, "/v1/slo").await.expect("GET /v1/slo");
        assert_eq!(view["nodes"].as_array().map(Vec::len), Some(3), "{view}");
        let (count, p95) = p95_of(&view);
        if count == 600 || std::time::Instant::now() > deadline {
            break (count, p95);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(count, 600, "the merged hour counts every attempt");
    eprintln!("cluster p95 {merged} ms, exact {exact} ms");
    assert!((merged - exact).abs() / exact <= 0.01, "merged p95 {merged} vs exact {exact}");
    let mut node_p95s = Vec::new();
    for i in cluster.all() {
        let view = cluster.get(i, "/v1/slo?scope=node").await.unwrap();
        assert_eq!(view["scope"], "node");
        node_p95s.push(p95_of(&view).1);
    }
    let averaged = node_p95s.iter().sum::<f64>() / 3.0;
    assert!((averaged - exact).abs() / exact > 0.01, "the node p95s {node_p95s:?} differ from the whole's {exact}");
}

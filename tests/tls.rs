//! TLS end to end, with real processes on loopback: a cluster whose HTTP API
//! is HTTPS and whose transport is mutual TLS elects a leader and runs
//! actions; a node that speaks plain TCP, even with the right cookie, never
//! becomes a member; clients that speak plain HTTP or do not trust the CA get
//! no answer.

mod common;

use common::cluster::{tls_args, Cluster, CLUSTER_WAIT};
use common::process::{free_port, node_args, NodeProcess};
use common::serial::one_cluster_at_a_time;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PROBE: &str = "[[capability]]\nname = \"probe\"\ntier = 0\nmax_attempts = 1\n\
                     executor = { kind = \"sim\", latency_ms = 5, jitter_ms = 5 }\n";

/// Submits an action of `probe` through node `i` and waits for its end.
async fn run_probe(cluster: &Cluster, i: usize, turn: &str, n: usize) -> Value {
    let http = cluster.client();
    let body = json!({"turn_id": turn, "capability": "probe", "args": {"n": n}});
    let r = http.post(format!("{}/v1/actions", cluster.url(i))).json(&body).send().await.expect("HTTPS answers");
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["action_id"].as_str().expect("an action id").to_owned();
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let url = format!("{}/v1/actions/{id}?wait_ms=5000", cluster.url(i));
        let action: Value = http.get(url).send().await.expect("HTTPS answers").json().await.unwrap();
        if action["state"] == "succeeded" {
            return action;
        }
        assert!(Instant::now() < deadline, "action {id} not done: {action}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_over_tls_elect_a_leader_and_run_actions_over_https() {
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start_tls(dir.path(), 3, PROBE);
    assert!(cluster.nodes.iter().all(|n| n.url.starts_with("https://127.0.0.1:")), "every node serves HTTPS");
    // A leader, every node connected to both others, and a replicated write through each.
    cluster.settled().await;
    let (leader, _) = cluster.leader_among(&cluster.all(), 0).await;
    let turn = cluster.open_turn(leader, "tls").await;
    for i in cluster.all() {
        let action = run_probe(&cluster, i, &turn, i).await;
        assert_eq!(action["submitted_via"], cluster.names[i].as_str(), "{action}");
    }
    // Every node applied the same log: the actions went through Raft over TLS.
    cluster.converged(&cluster.all()).await;
    for i in cluster.all() {
        let view = cluster.get(i, "/v1/cluster").await.expect("cluster view");
        assert_eq!(view["transport"]["rejected_sessions"].as_u64(), Some(0), "no failed session: {view}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_tcp_node_with_the_right_cookie_cannot_join_a_tls_cluster() {
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    // The leader adds any node that is up and connected: were the plain node let in, it would become a member.
    let cluster = Cluster::start_tls(dir.path(), 3, &format!("{PROBE}[raft]\nauto_join = true\n"));
    cluster.settled().await;
    // Same cookie, every TLS node as a seed, no TLS: it dials and is refused.
    let seeds: Vec<String> = cluster.ports.iter().map(|p| common::process::loopback(*p)).collect();
    let plain_port = free_port();
    let args = node_args("plain", plain_port, &seeds, &dir.path().join("cookie"));
    let plain = NodeProcess::start_with(&dir.path().join("plain"), None, &args);
    // Its sessions die before authenticating, again and again (it keeps dialling).
    let plain_http = common::cluster::http();
    let deadline = Instant::now() + CLUSTER_WAIT;
    let view = loop {
        let view: Value =
            plain_http.get(format!("{}/v1/cluster", plain.url)).send().await.unwrap().json().await.unwrap();
        if view["transport"]["rejected_sessions"].as_u64().unwrap_or(0) >= 6 {
            break view;
        }
        assert!(Instant::now() < deadline, "the plain node's sessions were never refused: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(view["transport"]["peers"], json!([]), "the plain node reached no peer: {view}");
    for i in cluster.all() {
        let view = cluster.get(i, "/v1/cluster").await.expect("cluster view");
        let peers = view["transport"]["peers"].as_array().unwrap();
        assert!(peers.iter().all(|p| p["name"] != "plain"), "node {i} has the plain node as a peer: {view}");
        let nodes = view["nodes"].as_array().unwrap();
        assert!(nodes.iter().all(|n| n["name"] != "plain"), "node {i} counts the plain node: {view}");
        let members = view["raft"]["members"].as_array().unwrap();
        assert_eq!(members.len(), 3, "no member added: {view}");
    }
    // The cluster still works with it knocking.
    let turn = cluster.open_turn(0, "still").await;
    run_probe(&cluster, 1, &turn, 1).await;
}

/// Waits until node `i` reports peer `name` in `state`.
async fn peer_state(cluster: &Cluster, i: usize, name: &str, state: &str) {
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let view = cluster.get(i, "/v1/cluster").await.unwrap_or_default();
        let peers = view["transport"]["peers"].as_array().cloned().unwrap_or_default();
        if peers.iter().any(|p| p["name"] == name && p["state"] == state) {
            return;
        }
        assert!(Instant::now() < deadline, "node {i} never saw {name} {state}: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_connect_and_say_nothing_do_not_hold_the_cluster_port() {
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start_tls(dir.path(), 3, PROBE);
    cluster.settled().await;
    // Silent connections on every node's cluster port, held to the end of the test.
    let _silent: Vec<std::net::TcpStream> = (0..4)
        .flat_map(|_| cluster.ports.iter())
        .map(|p| std::net::TcpStream::connect(common::process::loopback(*p)).expect("the cluster port accepts"))
        .collect();
    // a's session to c goes; a dials c again, and c has to accept it behind them.
    cluster.link(0, 2).cut();
    peer_state(&cluster, 0, "c", "disconnected").await;
    cluster.link(0, 2).heal();
    peer_state(&cluster, 0, "c", "connected").await;
    peer_state(&cluster, 2, "a", "connected").await;
    let turn = cluster.open_turn(0, "after").await;
    run_probe(&cluster, 0, &turn, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_node_answers_only_clients_that_speak_tls_and_trust_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let tls = warden::tls::generate(&dir.path().join("tls"), &["a".to_owned()]).unwrap();
    let files = warden::tls::TlsFiles { ca: None, ..tls.nodes[0].clone() };
    let node = NodeProcess::start_with(&dir.path().join("a"), None, &tls_args(&files));
    let https = node.url.clone();
    assert!(https.starts_with("https://"), "{https}");
    let trusting = warden::auth::client(Duration::from_secs(5), None, Some(&tls.ca)).unwrap();
    let health = trusting.get(format!("{https}/v1/health")).send().await.expect("a client with the CA is answered");
    assert_eq!(health.status(), 200);

    // Without the CA: the certificate does not verify.
    let untrusting = warden::auth::client(Duration::from_secs(5), None, None).unwrap();
    let err = untrusting.get(format!("{https}/v1/health")).send().await.expect_err("an unknown CA is refused");
    assert!(err.is_connect(), "{err:?}");
    assert!(format!("{err:?}").to_lowercase().contains("certificate"), "{err:?}");

    // Another CA's certificate is not this one's either.
    let other = warden::tls::generate(&dir.path().join("other"), &["x".to_owned()]).unwrap();
    let wrong = warden::auth::client(Duration::from_secs(5), None, Some(&other.ca)).unwrap();
    assert!(wrong.get(format!("{https}/v1/health")).send().await.is_err(), "a client trusting another CA");

    // Plain HTTP on the HTTPS port: the connection closes without an answer.
    let plain = https.replacen("https://", "http://", 1);
    let err = untrusting.get(format!("{plain}/v1/health")).send().await.expect_err("plain HTTP gets no answer");
    assert!(!err.is_timeout(), "closed at once, not left hanging: {err:?}");
    // And the node still serves the trusting client after all that.
    assert_eq!(trusting.get(format!("{https}/v1/health")).send().await.unwrap().status(), 200);
}

#[test]
fn tls_settings_that_cannot_work_stop_the_start_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let tls = warden::tls::generate(&dir.path().join("tls"), &["a".to_owned()]).unwrap();
    std::fs::write(dir.path().join("cookie"), "test-cookie-0123456789").unwrap();
    let files = &tls.nodes[0];
    let refused = |args: Vec<String>| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["node", "--http-addr", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("a"))
            .args(args)
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        assert!(!out.status.success(), "the node started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let cluster = node_args("a", free_port(), &[], &dir.path().join("cookie"));
    let no_ca = [cluster.clone(), tls_args(&warden::tls::TlsFiles { ca: None, ..files.clone() })].concat();
    assert!(refused(no_ca).contains("needs tls_ca"));
    let no_key = vec!["--tls-cert".into(), files.cert.display().to_string()];
    assert!(refused(no_key).contains("go together"));
    let swapped = vec![
        "--tls-cert".into(),
        files.key.display().to_string(),
        "--tls-key".into(),
        files.cert.display().to_string(),
    ];
    assert!(refused(swapped).contains("no certificate"));
}

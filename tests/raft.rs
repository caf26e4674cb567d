//! Replication across real processes: nothing acknowledged is lost when the
//! leader is killed or frozen again and again, a partitioned minority never acknowledges
//! a write, and restarted or new nodes catch up (from the log or a snapshot)
//! to the same state, digest for digest.

mod common;

use common::cluster::{delete, http, Cluster, CLUSTER_WAIT};
use common::process::{free_port, loopback, node_args, NodeProcess};
use common::serial::one_cluster_at_a_time;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a client learned about its writes.
#[derive(Default)]
struct Acks {
    /// Memory keys whose PUT got a 2xx.
    acked_memory: BTreeSet<String>,
    /// Action ids (with their idempotency keys) whose submit got a 2xx.
    acked_actions: BTreeMap<String, String>,
    refused: usize,
}

/// Writes continuously, round-robin over the nodes it is given, until stopped.
async fn write_forever(
    urls: Arc<Mutex<Vec<String>>>,
    turn: String,
    out: Arc<Mutex<Acks>>,
    stop: Arc<tokio::sync::Notify>,
) {
    let client = http();
    let mut n = 0u64;
    loop {
        n += 1;
        let targets = urls.lock().unwrap().clone();
        let url = &targets[n as usize % targets.len()];
        let write = async {
            if n.is_multiple_of(4) {
                let key = format!("k{n}");
                let body =
                    json!({"turn_id": turn, "capability": "search.web", "args": {"q": n}, "idempotency_key": key});
                let r = client.post(format!("{url}/v1/actions")).json(&body).send().await.ok()?;
                if !r.status().is_success() {
                    return Some(false);
                }
                let v: Value = r.json().await.ok()?;
                out.lock().unwrap().acked_actions.insert(v["action_id"].as_str()?.to_owned(), key);
            } else {
                let key = format!("w{n}");
                let r = client
                    .put(format!("{url}/v1/memory/kill/{key}"))
                    .json(&json!({"value": {"n": n}}))
                    .send()
                    .await
                    .ok()?;
                if !r.status().is_success() {
                    return Some(false);
                }
                out.lock().unwrap().acked_memory.insert(key);
            }
            Some(true)
        };
        tokio::select! {
            done = write => if done != Some(true) { out.lock().unwrap().refused += 1 },
            _ = stop.notified() => return,
        }
    }
}

/// Every acknowledged write is on every node, exactly once.
async fn assert_nothing_lost(cluster: &Cluster, ledger: &Acks) {
    let all = cluster.all();
    cluster.converged(&all).await;
    let events = cluster.timeline(0).await;
    let mut writes: BTreeMap<String, usize> = BTreeMap::new();
    let mut submits: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        if e["kind"] == "memory.write" && e["data"]["ns"] == "kill" {
            *writes.entry(e["data"]["key"].as_str().unwrap().to_owned()).or_default() += 1;
        }
        if e["kind"] == "action.submitted" {
            *submits.entry(e["data"]["idempotency_key"].as_str().unwrap().to_owned()).or_default() += 1;
        }
    }
    for key in &ledger.acked_memory {
        let n = writes.get(key).copied().unwrap_or(0);
        assert_eq!(n, 1, "acknowledged write {key} is on the log {n} times");
    }
    for (id, key) in &ledger.acked_actions {
        let n = submits.get(key).copied().unwrap_or(0);
        assert_eq!(n, 1, "acknowledged action {id} ({key}) is on the log {n} times");
    }
    assert!(writes.values().chain(submits.values()).all(|&c| c == 1), "a write was applied twice");
    for i in all {
        for key in ledger.acked_memory.iter().step_by(7) {
            let item = cluster.get(i, &format!("/v1/memory/kill/{key}")).await;
            assert!(item.is_some_and(|v| v["key"] == key.as_str()), "{key} missing on node {i}");
        }
        for id in ledger.acked_actions.keys().step_by(3) {
            let action = cluster.get(i, &format!("/v1/actions/{id}")).await;
            assert!(action.is_some_and(|v| v["id"] == id.as_str()), "action {id} missing on node {i}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_repeatedly_loses_no_acknowledged_write() {
    let _serial = one_cluster_at_a_time().await;
    const KILLS: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, "");
    cluster.settled().await;
    let (mut leader, mut term) = cluster.leader_among(&cluster.all(), 0).await;
    let turn = cluster.open_turn(leader, "s-raft").await;
    let urls = Arc::new(Mutex::new(cluster.nodes.iter().map(|n| n.url.clone()).collect::<Vec<_>>()));
    let ledger = Arc::new(Mutex::new(Acks::default()));
    let stop = Arc::new(tokio::sync::Notify::new());
    let writer = tokio::spawn(write_forever(urls.clone(), turn, ledger.clone(), stop.clone()));

    let mut leaderless = Vec::new();
    for round in 0..KILLS {
        let before = ledger.lock().unwrap().acked_memory.len();
        // Let some writes through under this leader first.
        let deadline = Instant::now() + CLUSTER_WAIT;
        while ledger.lock().unwrap().acked_memory.len() < before + 10 {
            assert!(Instant::now() < deadline, "no write acknowledged under leader {leader}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let killed = Instant::now();
        cluster.nodes[leader].kill_9();
        let survivors: Vec<usize> = cluster.all().into_iter().filter(|&i| i != leader).collect();
        let (next, next_term) = cluster.leader_among(&survivors, term).await;
        let gap = killed.elapsed();
        println!(
            "kill {round}: {} led term {term}; {} leads term {next_term} after {gap:?}",
            cluster.names[leader], cluster.names[next]
        );
        leaderless.push(gap);
        cluster.nodes[leader].restart();
        urls.lock().unwrap()[leader] = cluster.nodes[leader].url.clone();
        (leader, term) = (next, next_term);
    }
    stop.notify_waiters();
    writer.abort();
    let _ = writer.await;
    conclude(&cluster, "kills", leaderless, &ledger).await;
}

/// After the rounds of a failover test: the time without a leader (median,
/// max) printed, nothing acknowledged lost, and each new leader recorded
/// with its term: at least one `leader.changed` per round, terms rising.
async fn conclude(cluster: &Cluster, rounds: &str, mut leaderless: Vec<Duration>, ledger: &Mutex<Acks>) {
    leaderless.sort();
    let n = leaderless.len();
    let (median, max) = (leaderless[n / 2], leaderless[n - 1]);
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    println!(
        "time without a leader over {n} {rounds}: median {median:?}, max {max:?}; {} memory writes and {} actions acknowledged, {} refused",
        ledger.acked_memory.len(),
        ledger.acked_actions.len(),
        ledger.refused
    );
    assert!(!ledger.acked_actions.is_empty());
    assert_nothing_lost(cluster, &ledger).await;
    let terms: Vec<u64> = cluster
        .timeline(0)
        .await
        .iter()
        .filter(|e| e["kind"] == "leader.changed")
        .map(|e| e["data"]["term"].as_u64().unwrap())
        .collect();
    assert!(terms.len() > n, "leader.changed terms {terms:?}");
    assert!(terms.windows(2).all(|w| w[0] < w[1]), "terms not rising: {terms:?}");
}

/// A frozen leader (SIGSTOP: its sockets stay open, as in a long GC or VM
/// pause) is replaced by the survivors' silence watch, and rejoins as a
/// follower when thawed; nothing acknowledged is lost. Prints the time from
/// the freeze to a survivor leading a higher term (its bound is in
/// docs/performance.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freezing_the_leader_repeatedly_hands_over_and_loses_no_acknowledged_write() {
    let _serial = one_cluster_at_a_time().await;
    const FREEZES: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3, "");
    cluster.settled().await;
    let (mut leader, mut term) = cluster.leader_among(&cluster.all(), 0).await;
    let turn = cluster.open_turn(leader, "s-freeze").await;
    let urls = Arc::new(Mutex::new(cluster.nodes.iter().map(|n| n.url.clone()).collect::<Vec<_>>()));
    let ledger = Arc::new(Mutex::new(Acks::default()));
    let stop = Arc::new(tokio::sync::Notify::new());
    let writer = tokio::spawn(write_forever(urls, turn, ledger.clone(), stop.clone()));

    let mut leaderless = Vec::new();
    for round in 0..FREEZES {
        let before = ledger.lock().unwrap().acked_memory.len();
        let deadline = Instant::now() + CLUSTER_WAIT;
        while ledger.lock().unwrap().acked_memory.len() < before + 10 {
            assert!(Instant::now() < deadline, "no write acknowledged under leader {leader}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let frozen = Instant::now();
        cluster.nodes[leader].signal("STOP");
        let survivors: Vec<usize> = cluster.all().into_iter().filter(|&i| i != leader).collect();
        let (next, next_term) = cluster.leader_among(&survivors, term).await;
        let gap = frozen.elapsed();
        cluster.nodes[leader].signal("CONT");
        println!(
            "freeze {round}: {} led term {term}; {} leads term {next_term} after {gap:?}",
            cluster.names[leader], cluster.names[next]
        );
        leaderless.push(gap);
        // The thawed leader learns of the new term and follows.
        let deadline = Instant::now() + CLUSTER_WAIT;
        loop {
            let r = cluster.raft(leader).await.unwrap_or_default();
            if r["role"] == "follower" && r["term"].as_u64().unwrap_or(0) >= next_term {
                break;
            }
            assert!(Instant::now() < deadline, "thawed {} never followed term {next_term}: {r}", cluster.names[leader]);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (leader, term) = (next, next_term);
    }
    stop.notify_waiters();
    writer.abort();
    let _ = writer.await;
    conclude(&cluster, "freezes", leaderless, &ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_minority_never_acknowledges_and_the_majority_goes_on() {
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3, "");
    cluster.settled().await;
    let (old, term) = cluster.leader_among(&cluster.all(), 0).await;
    assert_eq!(cluster.put_memory(old, "split", "before").await, Some(200));

    // Cut the leader off (blackhole: its sockets stay open, nothing arrives).
    cluster.isolate(old);
    let majority: Vec<usize> = cluster.all().into_iter().filter(|&i| i != old).collect();
    let mut minority_writes = Vec::new();
    for n in 0..5 {
        let key = format!("minority-{n}");
        let status = cluster.put_memory(old, "split", &key).await;
        assert!(status.is_none_or(|s| s >= 500), "the isolated old leader answered {status:?} to a write");
        minority_writes.push(key);
    }
    let err: Value = http()
        .put(format!("{}/v1/memory/split/minority-x", cluster.url(old)))
        .json(&json!({"value": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(err["error"]["code"], "unavailable", "{err}");
    minority_writes.push("minority-x".into());

    let (new, new_term) = cluster.leader_among(&majority, term).await;
    let mut majority_writes = Vec::new();
    for n in 0..20 {
        let key = format!("majority-{n}");
        assert_eq!(cluster.put_memory(majority[n % 2], "split", &key).await, Some(200), "{key} on the majority");
        majority_writes.push(key);
    }
    println!("{} isolated in term {term}; {} leads term {new_term}", cluster.names[old], cluster.names[new]);

    cluster.heal_all();
    let digest = cluster.converged(&cluster.all()).await;
    println!("converged on {digest}");
    for i in cluster.all() {
        for key in majority_writes.iter().chain(["before".to_owned()].iter()) {
            let item = cluster.get(i, &format!("/v1/memory/split/{key}")).await;
            assert!(item.is_some_and(|v| v["key"] == key.as_str()), "{key} missing on node {i}");
        }
        for key in &minority_writes {
            let r = http().get(format!("{}/v1/memory/split/{key}", cluster.url(i))).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 404, "{key}, never acknowledged, was committed (node {i})");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_and_new_nodes_catch_up_from_disk_log_and_snapshot() {
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    // Snapshot often and keep little log behind it, so a lagging node needs the snapshot.
    let mut cluster = Cluster::start(dir.path(), 3, "[raft]\nsnapshot_every = 50\nkeep_behind_snapshot = 5\n");
    cluster.settled().await;
    let (leader, _) = cluster.leader_among(&cluster.all(), 0).await;
    let lagging = (leader + 1) % 3;
    assert_eq!(cluster.put_memory(leader, "snap", "first").await, Some(200));
    cluster.converged(&cluster.all()).await;
    let had = cluster.raft(lagging).await.unwrap()["last_log_index"].as_u64().unwrap();
    cluster.nodes[lagging].kill_9();

    let up: Vec<usize> = cluster.all().into_iter().filter(|&i| i != lagging).collect();
    for n in 0..300 {
        assert_eq!(cluster.put_memory(up[n % 2], "snap", &format!("k{n}")).await, Some(200));
    }
    let purged = cluster.raft(leader).await.unwrap()["purged_index"].as_u64().unwrap_or(0);
    assert!(purged > had, "the leader purged its log up to {purged}, not past the lagging node's {had}");

    cluster.nodes[lagging].restart();
    cluster.converged(&cluster.all()).await;
    let raft = cluster.raft(lagging).await.unwrap();
    assert!(raft["snapshot_index"].as_u64() >= Some(purged), "caught up without a snapshot: {raft}");
    let item = cluster.get(lagging, "/v1/memory/snap/k299").await.unwrap();
    assert_eq!(item["key"], "k299");

    // Every node restarted from its own disk at once: same state as before.
    cluster.converged(&cluster.all()).await;
    for node in &mut cluster.nodes {
        node.kill_9();
    }
    for node in &mut cluster.nodes {
        node.restart();
    }
    cluster.leader_among(&cluster.all(), 0).await;
    cluster.converged(&cluster.all()).await;
    for i in cluster.all() {
        for n in (0..300).step_by(37) {
            let key = format!("k{n}");
            assert_eq!(cluster.get(i, &format!("/v1/memory/snap/{key}")).await.unwrap()["key"], key.as_str());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_joins_later_becomes_a_voter_with_the_whole_state() {
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3, "[raft]\nsnapshot_every = 50\nkeep_behind_snapshot = 5\n");
    cluster.settled().await;
    let (leader, _) = cluster.leader_among(&cluster.all(), 0).await;
    for n in 0..120 {
        assert_eq!(cluster.put_memory(leader, "join", &format!("k{n}")).await, Some(200));
    }
    // d seeds itself with a and has no bootstrap: it waits to be added.
    // It dials a directly and, transitively, the others.
    let config = dir.path().join("d.toml");
    std::fs::write(&config, "cluster_transitive = true\n[raft]\nsnapshot_every = 50\nkeep_behind_snapshot = 5\n")
        .unwrap();
    let args = node_args("d", free_port(), &[loopback(cluster.ports[0])], &dir.path().join("cookie"));
    let d = NodeProcess::start_with(&dir.path().join("d"), Some(&config), &args);
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let raft = cluster.raft(leader).await.unwrap();
        let voter = raft["members"].as_array().unwrap().iter().any(|m| m["name"] == "d" && m["voter"] == true);
        if voter {
            break;
        }
        assert!(Instant::now() < deadline, "d was not made a voter: {raft}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One fresh read: it waits for d to reach the leader and apply the leader's commit index.
    let item: Value =
        http().get(format!("{}/v1/memory/join/k119?fresh=true", d.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(item["key"], "k119", "{item}");
    let view: Value = http().get(format!("{}/v1/cluster", d.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(view["raft"]["role"], "follower", "{view}");
    // Every member announces its wire version; the cluster's is the lowest, here everyone's.
    let wire = warden_actors::version::WIRE.to_string();
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let view: Value = http().get(format!("{}/v1/cluster", d.url)).send().await.unwrap().json().await.unwrap();
        let versions = view["member_versions"].as_object().cloned().unwrap_or_default();
        if versions.len() == 4 && versions.values().all(|v| *v == wire.as_str()) {
            assert_eq!(view["cluster_version"], wire.as_str(), "{view}");
            assert_eq!(view["version"], wire.as_str(), "{view}");
            break;
        }
        assert!(Instant::now() < deadline, "d did not hear every member's version: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_removed_through_any_node_leaves_and_the_group_goes_on_in_its_term() {
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3, "");
    cluster.settled().await;
    let (leader, term) = cluster.leader_among(&cluster.all(), 0).await;
    let follower = (leader + 1) % 3;
    let gone = (leader + 2) % 3;
    let remove = |at: usize, name: &str| delete(format!("{}/v1/cluster/members/{name}", cluster.url(at)));

    let (status, body) = remove(follower, "zz").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_node")), "{body}");

    // Asked of a follower, carried out by the leader.
    let (status, body) = remove(follower, &cluster.names[gone]).await;
    assert_eq!(status, 200, "{body}");
    let members = |raft: &Value| -> Vec<String> {
        raft["members"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap().to_owned()).collect()
    };
    let raft = cluster.raft(leader).await.unwrap();
    assert!(!members(&raft).contains(&cluster.names[gone]), "{raft}");

    // The group goes on without it, in the same term, and does not add it back.
    let removed_at = Instant::now();
    let mut n = 0;
    while removed_at.elapsed() < Duration::from_secs(3) {
        assert_eq!(cluster.put_memory([leader, follower][n % 2], "after", &format!("k{n}")).await, Some(200));
        n += 1;
    }
    let raft = cluster.raft(leader).await.unwrap();
    assert_eq!((raft["role"].as_str(), raft["term"].as_u64()), (Some("leader"), Some(term)), "{raft}");
    assert!(!members(&raft).contains(&cluster.names[gone]), "it was added back: {raft}");

    // Down to one voter is allowed; removing that last one is refused and changes nothing.
    let (status, body) = remove(leader, &cluster.names[follower]).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = remove(leader, &cluster.names[leader]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("last_voter")), "{body}");
    let raft = cluster.raft(leader).await.unwrap();
    assert_eq!(members(&raft), vec![cluster.names[leader].clone()], "{raft}");
    assert_eq!(cluster.put_memory(leader, "after", "alone").await, Some(200));
}

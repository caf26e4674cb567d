//! Provenance against a live cluster: 3 `warden node` processes, over a
//! thousand actions of a capability that always fails submitted through all
//! three under turns with model calls and memory recalls, one node killed
//! (`kill -9`) while attempts run on it and restarted at once, dead-letter
//! entries replayed and their replays replayed again. Every DLQ entry's
//! `GET /v1/dlq/{id}/provenance` must resolve to the turn its action was
//! submitted under.

mod common;

use common::cluster::{Cluster, CLUSTER_WAIT};
use common::serial::one_cluster_at_a_time;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every node's catalog: one capability with a single attempt and a breaker
/// that never opens, so a forced failure dead-letters at once, on every try.
const CONFIG: &str = r#"
[[capability]]
name = "doomed.api"
tier = 0
max_attempts = 1
breaker = { failure_threshold = 1000000, open_ms = 1000 }
executor = { kind = "sim", latency_ms = 2, jitter_ms = 3, fail_rate = 0.0 }
"#;

/// Actions of the bulk wave (on top of the slow wave and the replays).
const BULK: usize = 1_000;
/// Actions of the slow wave: in flight when a node is killed.
const SLOW: usize = 30;
/// Entries replayed; each replay's entry is replayed again.
const REPLAYED: usize = 30;
const TURNS: usize = 30;
/// Requests in flight at once.
const CONCURRENCY: usize = 24;

/// One action to submit: (turn, idempotency key, args).
type Job = (String, String, Value);

/// Submits every job through the nodes in turn, `CONCURRENCY` at a time; a
/// request that fails (a node restarting, overload) is sent again with the
/// same idempotency key, so it is one action. Returns action id → turn id.
async fn submit_all(urls: Vec<String>, jobs: Vec<Job>) -> BTreeMap<String, String> {
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(BTreeMap::new()));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (jobs, next, out, urls) = (jobs.clone(), next.clone(), out.clone(), urls.clone());
        workers.push(tokio::spawn(async move {
            let http = common::cluster::http();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some((turn, key, args)) = jobs.get(k) else { return };
                let body = json!({"turn_id": turn, "capability": "doomed.api", "args": args, "idempotency_key": key});
                let deadline = Instant::now() + CLUSTER_WAIT;
                let mut via = k;
                let id = loop {
                    let url = &urls[via % urls.len()];
                    if let Ok(r) = http.post(format!("{url}/v1/actions")).json(&body).send().await {
                        let status = r.status().as_u16();
                        let v: Value = r.json().await.unwrap_or_default();
                        if let (200 | 202, Some(id)) = (status, v["action_id"].as_str()) {
                            break id.to_owned();
                        }
                    }
                    assert!(Instant::now() < deadline, "action {key} was never accepted");
                    via += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                };
                out.lock().unwrap().insert(id, turn.clone());
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    Arc::try_unwrap(out).unwrap().into_inner().unwrap()
}

fn urls(cluster: &Cluster) -> Vec<String> {
    cluster.all().iter().map(|&i| cluster.url(i).to_owned()).collect()
}

/// Waits until node `i` lists at least `n` DLQ entries (replayed ones too); returns them.
async fn dlq_at_least(cluster: &Cluster, i: usize, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let page = cluster.get(i, "/v1/dlq?all=true&limit=100000").await.unwrap_or_default();
        let entries = page["entries"].as_array().cloned().unwrap_or_default();
        if entries.len() >= n {
            return entries;
        }
        assert!(Instant::now() < deadline, "only {} of {n} actions dead-lettered", entries.len());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Replays entry `dlq_id` through the node at `url` (which has applied the
/// entry) and waits until the replay is dead-lettered in turn; returns
/// (replay action id, its own entry id).
async fn replay(url: &str, dlq_id: &str) -> (String, String) {
    let http = common::cluster::http();
    let r = http.post(format!("{url}/v1/dlq/{dlq_id}/replay")).send().await.expect("node answers");
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or_default();
    assert_eq!(status, 202, "replay of {dlq_id}: {v}");
    assert_eq!(v["replay_of"], dlq_id, "{v}");
    let action = v["action_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let r = http.get(format!("{url}/v1/actions/{action}?wait_ms=5000")).send().await.expect("node answers");
        let a: Value = r.json().await.unwrap_or_default();
        if a["state"] == "dead_lettered" {
            break;
        }
        assert!(!matches!(a["state"].as_str(), Some("succeeded" | "failed")), "the replay ended otherwise: {a}");
        assert!(Instant::now() < deadline, "replay {action} of {dlq_id} never dead-lettered: {a}");
    }
    // Its own entry: the one the provenance of the replayed entry names.
    let r = http.get(format!("{url}/v1/dlq/{dlq_id}/provenance")).send().await.expect("node answers");
    let p: Value = r.json().await.unwrap_or_default();
    let replays = p["replays"].as_array().unwrap_or_else(|| panic!("{p}"));
    let link = replays.iter().find(|r| r["action_id"] == action.as_str()).unwrap_or_else(|| panic!("{p}"));
    (action, link["dlq_id"].as_str().unwrap_or_else(|| panic!("no entry for the replay: {p}")).to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_dead_letters_on_a_live_cluster_each_resolve_to_their_turn() {
    let _serial = one_cluster_at_a_time().await;
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, CONFIG);
    cluster.settled().await;
    let (leader, _) = cluster.leader_among(&cluster.all(), 0).await;

    // Turns through every node; every other one with a model call and a memory recall.
    let mut turns = Vec::new();
    let mut with_calls = BTreeSet::new();
    for t in 0..TURNS {
        let i = t % 3;
        let session = format!("agent-{}", t % 7);
        let turn = cluster.open_turn(i, &session).await;
        if t % 2 == 0 {
            let url = format!("{}/v1/turns/{turn}/model-calls", cluster.url(i));
            let body = json!({"model": "m-1", "latency_ms": 120, "ok": true, "prompt_tokens": 40});
            let r = cluster.client().post(url).json(&body).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap_or_default());
            assert_eq!(cluster.put_memory(i, "facts", &format!("k{t}")).await, Some(200));
            let recall = cluster.get(i, &format!("/v1/memory/facts?turn_id={turn}")).await.unwrap();
            assert!(recall["items"].is_array(), "{recall}");
            with_calls.insert(turn.clone());
        }
        turns.push((turn, session));
    }
    let session_of: BTreeMap<String, String> = turns.iter().cloned().collect();

    // The slow wave: attempts that take seconds, so some are running on the victim when it dies.
    let victim = (leader + 1) % 3;
    let slow: Vec<Job> = (0..SLOW)
        .map(|n| {
            let args = json!({"n": n, "_sim": {"fail": true, "latency_ms": 4_000, "latency_attempts": 1}});
            (turns[n % TURNS].0.clone(), format!("slow-{n}"), args)
        })
        .collect();
    let mut turn_of = submit_all(urls(&cluster), slow).await;
    cluster.running_on(leader, victim, 2).await;
    cluster.nodes[victim].restart(); // kill -9, then start again on the same data dir

    // The bulk wave, through all three nodes (the victim on its new address).
    let bulk: Vec<Job> = (0..BULK)
        .map(|n| (turns[n % TURNS].0.clone(), format!("bulk-{n}"), json!({"n": n, "_sim": {"fail": true}})))
        .collect();
    turn_of.extend(submit_all(urls(&cluster), bulk).await);
    assert_eq!(turn_of.len(), SLOW + BULK);
    let originals = dlq_at_least(&cluster, leader, SLOW + BULK).await;
    let submitted = Instant::now();

    // Replays through every node, and replays of those replays, the chains side by side.
    cluster.converged(&cluster.all()).await;
    let mut chains = Vec::new();
    for (k, e) in originals.iter().take(REPLAYED).enumerate() {
        let first = e["id"].as_str().unwrap().to_owned();
        let url = cluster.url(k % 3).to_owned();
        chains.push(tokio::spawn(async move {
            let (a1, d1) = replay(&url, &first).await;
            let (a2, d2) = replay(&url, &d1).await;
            (first, a1, d1, a2, d2)
        }));
    }
    let mut replay_chain: BTreeMap<String, Vec<String>> = BTreeMap::new(); // entry → its ancestors, nearest first
    let mut replayed = 0;
    for (chain, e) in chains.into_iter().zip(&originals) {
        let (first, a1, d1, a2, d2) = chain.await.unwrap();
        let turn = turn_of[e["action_id"].as_str().unwrap()].clone();
        turn_of.insert(a1, turn.clone());
        turn_of.insert(a2, turn);
        replay_chain.insert(d1.clone(), vec![first.clone()]);
        replay_chain.insert(d2, vec![d1, first]);
        replayed += 2;
    }
    let entries = dlq_at_least(&cluster, (leader + 2) % 3, SLOW + BULK + replayed).await;
    assert_eq!(entries.len(), SLOW + BULK + replayed, "one entry per dead-lettered action");

    // Every entry's provenance, read through every node in turn (once all have applied everything).
    cluster.converged(&cluster.all()).await;
    let names: BTreeSet<String> = cluster.names.iter().cloned().collect();
    let (mut resolved, mut takeovers, mut replays_of_replays, mut with_model_calls) = (0, 0, 0, 0);
    let mut attempt_nodes = BTreeSet::new();
    for (k, e) in entries.iter().enumerate() {
        let id = e["id"].as_str().unwrap();
        let p = cluster.get(k % 3, &format!("/v1/dlq/{id}/provenance")).await.expect("provenance");
        assert_eq!(p["complete"], true, "{id} does not resolve: {p}");
        assert_eq!(p["dlq_id"], id);
        assert_eq!(p["entry"]["id"], id);
        let action = p["action"]["id"].as_str().unwrap();
        assert_eq!(action, e["action_id"].as_str().unwrap());
        assert_eq!(p["action"]["state"], "dead_lettered", "{p}");
        // The turn it was submitted under, and that turn's session.
        let turn = turn_of.get(action).unwrap_or_else(|| panic!("{action} was never submitted: {p}"));
        assert_eq!(p["turn"]["id"], turn.as_str(), "{id}");
        assert_eq!(p["session"]["id"], session_of[turn].as_str(), "{id}");
        let chain = p["chain"].as_array().unwrap();
        assert_eq!(chain.first().map(|c| &c["seq"]), Some(&p["turn"]["opened_seq"]), "{id}");
        assert_eq!(chain.last().map(|c| &c["kind"]), Some(&json!("dlq.entered")), "{id}");
        // The decision it ran under.
        assert_eq!(p["decision"]["decision"], "allow", "{p}");
        assert!(p["decision"]["policy_hash"].as_str().is_some_and(|h| !h.is_empty()), "{p}");
        // The turn's model calls and recalls.
        let calls = p["model_calls"].as_array().unwrap().len();
        let recalls = p["memory_recalls"].as_array().unwrap().len();
        if with_calls.contains(turn) {
            assert!(calls == 1 && recalls == 1, "{id}: {calls} model calls, {recalls} recalls");
            with_model_calls += 1;
        } else {
            assert_eq!((calls, recalls), (0, 0), "{id}");
        }
        // Every attempt: a node of the cluster, and where a takeover came from.
        let attempts = p["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), p["action"]["attempts"].as_array().unwrap().len(), "{p}");
        assert!(!attempts.is_empty(), "{p}");
        for a in attempts {
            let node = a["node"].as_str().unwrap();
            assert!(names.contains(node), "{a}");
            attempt_nodes.insert(node.to_owned());
            if a["takeover"] == true {
                takeovers += 1;
                // Taken from the killed node (possibly back onto it, once restarted).
                assert_eq!(a["took_over_from"], cluster.names[victim].as_str(), "{a}");
                assert!(a["takeover_reason"].as_str().is_some_and(|r| !r.is_empty()), "a takeover says why: {a}");
            }
        }
        assert_eq!(attempts.last().unwrap()["outcome"]["outcome"], "retryable", "{p}");
        // Replays name every entry they re-ran, nearest first.
        let ancestors: Vec<&str> =
            p["replay_of"].as_array().unwrap().iter().map(|l| l["dlq_id"].as_str().unwrap()).collect();
        let want: Vec<&str> = replay_chain.get(id).map(|c| c.iter().map(String::as_str).collect()).unwrap_or_default();
        assert_eq!(ancestors, want, "{id}: {p}");
        if ancestors.len() == 2 {
            replays_of_replays += 1;
        }
        resolved += 1;
    }
    assert_eq!(resolved, entries.len(), "100 % resolve to their turn");
    assert!(resolved >= 1_000, "only {resolved} entries");
    assert!(takeovers >= 1, "no attempt was taken over from {}", cluster.names[victim]);
    assert_eq!(replays_of_replays, REPLAYED);
    assert_eq!(attempt_nodes.len(), 3, "attempts ran on {attempt_nodes:?}");
    assert!(with_model_calls > 0);
    eprintln!(
        "{resolved} entries resolved ({takeovers} takeovers, {replays_of_replays} replays of replays); \
         submitted and dead-lettered in {:?}, {:?} in all",
        submitted - started,
        started.elapsed()
    );
}

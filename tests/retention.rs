//! Retention and the archive, on a node whose clock is moved by the test:
//! events older than the retention leave the replicated state through
//! `Expire` commands the Retention actor proposes, each batch archived first;
//! finished actions and turns go with their history, unfinished work stays;
//! the timeline, the correlation graph and DLQ provenance read through to the
//! archive; replaying the log (what a replica does) gives the same state.

mod common;

use common::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use warden_actors::clock::{wall_ms, Clock};
use warden_actors::config::RetentionConfig;
use warden_actors::consensus::replay_log;
use warden_actors::domain::*;
use warden_actors::limits::MAX_QUERY_LIMIT;
use warden_actors::sessions::OpenTurnRequest;
use warden_actors::store::{open_database, Store, TimelineQuery};
use warden_actors::Node;

const RETENTION: Duration = Duration::from_secs(3600);
/// Small batches: the expiry takes several commands and writes several segments.
const BATCH: u64 = 16;

async fn start_with_retention(dir: &TempDir) -> (Node, Clock) {
    let clock = Clock::manual(wall_ms());
    let mut config = config(dir);
    config.clock = clock.clone();
    config.retention =
        RetentionConfig { events: Some(RETENTION), sessions: None, every: Duration::from_secs(60), batch: BATCH };
    // A confirmation that outlives the retention: the action stays unfinished across it.
    config.confirm_ttl_ms = 10 * RETENTION.as_millis() as u64;
    (Node::start(config).await.expect("node starts"), clock)
}

/// Polls `probe` until it holds, failing the test after `WAIT`.
async fn until(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !probe() {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn everything() -> TimelineQuery {
    TimelineQuery { limit: Some(MAX_QUERY_LIMIT), ..TimelineQuery::default() }
}

#[tokio::test]
async fn expired_history_is_archived_and_still_answers_while_unfinished_work_stays() {
    let dir = tempfile::tempdir().unwrap();
    let (node, clock) = start_with_retention(&dir).await;
    let store = node.store().clone();
    // The same database without the archive: what the replicated state holds.
    let hot = Store::new(store.database().clone());

    // A turn whose work all finishes, and one with unfinished work: an action
    // awaiting confirmation and a dead-lettered one.
    let done = turn(&node, Trust::Normal).await;
    let mut finished = Vec::new();
    for i in 0..12 {
        finished.push(submit(&node, &done, "search.web", json!({"q": format!("query {i}")})).await.id);
    }
    let open = turn(&node, Trust::Normal).await;
    let waiting = submit(&node, &open, "email.send", json!({"to": "ops@example.com"})).await;
    let doomed = submit(&node, &open, "fragile.api", json!({"_sim": {"fail": true}})).await;
    for id in finished.iter().chain([&doomed.id]) {
        terminal(&node, id).await;
    }
    let entry = node.dlq(true, None).unwrap().pop().expect("the failed action is dead-lettered");
    let provenance_before = node.provenance_of(&entry.id).await.unwrap();
    assert!(provenance_before.complete);
    let provenance_before = json!(provenance_before);
    let graph_before = json!(node.correlation_graph(&done.correlation_id).await.unwrap());
    let of_action = TimelineQuery { action_id: Some(finished[3].to_string()), ..everything() };
    let action_events_before = store.timeline(&of_action).unwrap();
    assert!(action_events_before.len() >= 3, "{action_events_before:?}");
    let before = store.timeline(&everything()).unwrap();
    let last_old = before.last().unwrap().seq;
    assert_eq!(store.retained_floor().unwrap(), 1);

    // Past the retention: everything recorded so far is older than it.
    clock.advance(RETENTION * 2);
    let later = turn(&node, Trust::Normal).await;
    let fresh = submit(&node, &later, "search.web", ok_args()).await;
    terminal(&node, &fresh.id).await;
    until("the old events expire", || store.retained_floor().unwrap() > last_old).await;

    // Gone from the replicated state, every old event is in the archive.
    let archive = store.archive().expect("the node keeps an archive").clone();
    let size = archive.size();
    let newest = size.newest_seq.expect("archived events");
    assert!(newest >= last_old && size.oldest_seq == Some(1) && size.events == newest, "{size:?}");
    assert!(size.segments >= newest / BATCH, "{size:?}");
    assert!(hot.timeline(&everything()).unwrap().iter().all(|e| e.seq > last_old));
    for id in &finished {
        assert_eq!(hot.action(id).unwrap(), None, "finished action {id} expired");
        assert_eq!(store.action(id).unwrap().expect("read through").state, ActionState::Succeeded);
    }
    assert_eq!(hot.turn(&done.id).unwrap(), None, "a turn of finished work expires");
    assert_eq!(store.turn(&done.id).unwrap().unwrap().id, done.id);

    // Unfinished work stays: the waiting action, the dead-lettered one, their turn.
    assert_eq!(hot.action(&waiting.id).unwrap().unwrap().state, ActionState::AwaitingConfirmation);
    assert!(hot.action(&doomed.id).unwrap().is_some());
    assert!(hot.turn(&open.id).unwrap().is_some());

    // The timeline from the start: the archived events, then the retained
    // ones, in log order, as they were.
    let after = store.timeline(&everything()).unwrap();
    assert_eq!(after[..before.len()], before[..]);
    let seqs: Vec<u64> = after.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in log order: {seqs:?}");
    assert!(after.len() > before.len());
    // A filtered query and a window over archived time answer the same too.
    assert_eq!(store.timeline(&of_action).unwrap(), action_events_before);
    let old_window = TimelineQuery { to_ms: Some(before.last().unwrap().ts + 1), ..everything() };
    assert_eq!(store.timeline(&old_window).unwrap(), before);
    // A page cursor that crosses from the archive into the retained events.
    let first = store.timeline_page(&TimelineQuery { limit: Some(5), ..everything() }).unwrap();
    let rest = store.timeline(&TimelineQuery { after_seq: first.next_after, ..everything() }).unwrap();
    assert_eq!([first.events, rest].concat(), after);

    // The graph of an archived turn's correlation, and the DLQ entry's
    // provenance back to its (archived) turn.opened, resolve as before.
    assert_eq!(json!(node.correlation_graph(&done.correlation_id).await.unwrap()), graph_before);
    let provenance = node.provenance_of(&entry.id).await.unwrap();
    assert!(provenance.complete, "{provenance:?}");
    assert_eq!(json!(provenance), provenance_before);

    // The waiting action still runs once confirmed.
    node.confirm(&waiting.id, true, "alice").await.unwrap();
    assert_eq!(terminal(&node, &waiting.id).await.state, ActionState::Succeeded);

    // Replaying the log, as a replica applies it, gives the same state.
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = Arc::new(open_database(&copy_dir.path().join("copy.redb")).unwrap());
    let (index, digest) = store.digest_at().unwrap();
    assert_eq!(replay_log(&store, &copy).unwrap(), index);
    assert_eq!(Store::new(copy).state_digest().unwrap(), digest);
    drop((store, hot));
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_archive_survives_a_restart_and_exports_a_window() {
    let dir = tempfile::tempdir().unwrap();
    let (node, clock) = start_with_retention(&dir).await;
    let t = turn(&node, Trust::Normal).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(submit(&node, &t, "notes.write", json!({"note": i})).await.id);
    }
    for id in &ids {
        terminal(&node, id).await;
    }
    let before = node.store().timeline(&everything()).unwrap();
    let last_old = before.last().unwrap().seq;
    clock.advance(RETENTION * 2);
    let store = node.store().clone();
    until("the old events expire", || store.retained_floor().unwrap() > last_old).await;
    drop(store);
    node.shutdown().await.unwrap();

    // Restarted, the node reads its archive again.
    let (node, _clock) = start_with_retention(&dir).await;
    let store = node.store();
    assert_eq!(store.timeline(&everything()).unwrap()[..before.len()], before[..]);
    assert_eq!(store.action(&ids[0]).unwrap().unwrap().state, ActionState::Succeeded);

    // The export copies the window's segments: an archive of their own.
    let out = tempfile::tempdir().unwrap();
    let archive = store.archive().unwrap();
    let (from, to) = (before[0].ts, before.last().unwrap().ts + 1);
    let copied = archive.export(from, to, out.path()).unwrap();
    assert_eq!(copied.len() as u64, archive.size().segments);
    let copy = warden_actors::store::Archive::open(out.path()).unwrap();
    assert_eq!(copy.events_between(0, u64::MAX, usize::MAX).unwrap(), before);
    // A window with nothing in it copies nothing.
    assert!(archive.export(0, from, &out.path().join("none")).unwrap().is_empty());
    let kinds: BTreeSet<_> = before.iter().map(|e| e.kind().as_str()).collect();
    assert!(kinds.contains("action.succeeded"), "{kinds:?}");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_idle_session_expires_after_its_turns_and_a_low_trust_one_never_does() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(wall_ms());
    let mut config = config(&dir);
    config.clock = clock.clone();
    let sessions = RETENTION * 24;
    config.retention = RetentionConfig {
        events: Some(RETENTION),
        sessions: Some(sessions),
        every: Duration::from_secs(60),
        batch: BATCH,
    };
    let node = Node::start(config).await.expect("node starts");
    let hot = Store::new(node.store().database().clone());
    let idle = turn(&node, Trust::Normal).await;
    let low = turn(&node, Trust::Low).await;

    // Past the events' retention: the turns go, the sessions are not idle long enough.
    clock.advance(RETENTION * 2);
    until("the turns expire", || hot.turn(&idle.id).unwrap().is_none() && hot.turn(&low.id).unwrap().is_none()).await;
    assert!(hot.session(&idle.session_id).unwrap().is_some());

    // Past the sessions' retention: the idle one goes; the low-trust one stays.
    clock.advance(sessions);
    until("the idle session expires", || hot.session(&idle.session_id).unwrap().is_none()).await;
    assert_eq!(hot.session(&low.session_id).unwrap().map(|s| s.trust), Some(Trust::Low));
    // Reopened, the expired session starts again.
    let again = OpenTurnRequest { session_id: Some(idle.session_id.clone()), ..Default::default() };
    let reopened = node.open_turn(again).await.expect("the session opens again");
    assert_eq!(hot.session(&reopened.session_id).unwrap().map(|s| s.turns), Some(1));
    drop(hot);
    node.shutdown().await.unwrap();
}

/// Three `warden node` processes with a retention of 1.5 s: every replica
/// removes the same records (one state digest), writes the same segments
/// (one SHA-256 per segment on every node), and answers for what expired
/// from its own archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_expire_the_same_records_and_write_the_same_archive() {
    use common::cluster::{post, Cluster, CLUSTER_WAIT};
    use serde_json::Value;
    const CONFIG: &str = r#"
[retention]
events_ms = 1500
every_ms = 100
batch = 64

[storage]
size_every_ms = 100

[[capability]]
name = "quick.tool"
tier = 0
executor = { kind = "sim", latency_ms = 0, jitter_ms = 0, fail_rate = 0.0 }
"#;
    let _serial = serial::one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3, CONFIG);
    cluster.settled().await;
    let turn = cluster.open_turn(0, "s1").await;
    let mut ids = Vec::new();
    for n in 0..30 {
        let body =
            json!({"turn_id": turn, "capability": "quick.tool", "args": {"n": n}, "idempotency_key": format!("k{n}")});
        let (status, accepted) = post(format!("{}/v1/actions", cluster.url(n % 3)), body).await;
        assert_eq!(status, 202, "{accepted}");
        ids.push(accepted["action_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        let done = cluster.get(0, &format!("/v1/actions/{id}?wait_ms=10000")).await.expect("the action");
        assert_eq!(done["state"], "succeeded", "{done}");
    }
    let before = cluster.timeline(0).await;
    let last = before.last().unwrap()["seq"].as_u64().unwrap();

    // Each node reports (every 100 ms) an archive reaching past those events.
    let deadline = tokio::time::Instant::now() + CLUSTER_WAIT;
    for i in cluster.all() {
        loop {
            let health = cluster.get(i, "/v1/health").await.unwrap_or_default();
            let newest = health["storage"]["size"]["archive"]["newest_seq"].as_u64();
            if newest.is_some_and(|n| n >= last) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "node {i} did not archive seq {last}: {health}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    cluster.converged(&cluster.all()).await;

    // The same segments, byte for byte, on every node.
    let segments = |name: &str| -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = std::fs::read_dir(dir.path().join(name).join("archive"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .map(|p| {
                let info: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                (p.file_name().unwrap().to_string_lossy().into_owned(), info["sha256"].as_str().unwrap().to_owned())
            })
            .collect();
        out.sort();
        out
    };
    let (a, b, c) = (segments("a"), segments("b"), segments("c"));
    assert!(!a.is_empty());
    // A node may be a command behind the others in writing: compare what all have.
    let common = a.len().min(b.len()).min(c.len());
    assert_eq!((&a[..common], &b[..common]), (&c[..common], &c[..common]));

    // Every node answers for the expired events and actions from its archive.
    for i in cluster.all() {
        let timeline = cluster.timeline(i).await;
        assert_eq!(timeline[..before.len()], before[..], "node {i}");
        let action = cluster.get(i, &format!("/v1/actions/{}", ids[7])).await.expect("read through");
        assert_eq!(action["state"], "succeeded");
    }
}

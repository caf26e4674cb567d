//! The timeline: every event of a turn is reachable from its correlation id
//! and linked to its cause; a DLQ entry traces back to its turn.

mod common;

use common::*;
use serde_json::json;
use std::collections::HashMap;
use warden_actors::domain::*;
use warden_actors::ids::ActionId;
use warden_actors::memory::PutRequest;
use warden_actors::sessions::ModelCallRequest;
use warden_actors::store::{RecallQuery, TimelineQuery};

#[tokio::test]
async fn every_event_of_a_turn_is_reachable_from_its_correlation_id_and_linked_to_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    let t = turn(&node, Trust::Normal).await;

    let call = ModelCallRequest {
        turn_id: t.id.clone(),
        model: "gpt-x".into(),
        latency_ms: 120,
        ok: true,
        prompt_tokens: Some(10),
        completion_tokens: Some(20),
    };
    node.record_model_call(call).await.unwrap();
    let put = PutRequest {
        ns: "agent".into(),
        key: "plan".into(),
        value: json!({"step": 1}),
        tags: vec!["plan".into()],
        turn_id: Some(t.id.clone()),
        correlation_id: t.correlation_id.clone(),
    };
    node.put_memory(put).await.unwrap();
    let hits = node.recall("agent", RecallQuery { tag: Some("plan".into()), ..Default::default() }, Some(t.id.clone()));
    assert_eq!(hits.await.unwrap().len(), 1);
    let email = submit(&node, &t, "email.send", json!({})).await;
    node.confirm(&email.id, true, "alice").await.unwrap();
    terminal(&node, &email.id).await;
    let failing = submit(&node, &t, "flaky.api", json!({"_sim": {"fail": true}})).await;
    terminal(&node, &failing.id).await;
    let entry = node.dlq(true, None).unwrap().pop().unwrap();
    let replay = node.replay_dlq(&entry.id, None).await.unwrap();
    terminal(&node, &replay.id).await;

    let graph = node.correlation_graph(&t.correlation_id).await.unwrap();
    let by_seq: HashMap<u64, &Event> = graph.nodes.iter().map(|e| (e.seq, e)).collect();
    let roots: Vec<&Event> = graph.nodes.iter().filter(|e| e.causation_seq.is_none()).collect();
    assert_eq!(roots.len(), 1, "one root: {:?}", kinds(&graph.nodes));
    assert_eq!(roots[0].kind(), EventKind::TurnOpened);
    for e in &graph.nodes {
        assert_eq!(e.correlation_id, t.correlation_id);
        assert_eq!(e.turn_id.as_ref(), Some(&t.id));
        if let Some(cause) = e.causation_seq {
            let parent = by_seq.get(&cause).unwrap_or_else(|| panic!("{} has a cause outside the graph", e.seq));
            assert!(parent.seq < e.seq, "causes come first in the log");
        }
    }
    assert_eq!(graph.root, Some(roots[0].seq));
    for e in graph.nodes.iter().filter(|e| e.causation_seq.is_some()) {
        let tree: Vec<_> = graph.edges.iter().filter(|x| x.to == e.seq && Some(x.from) == e.causation_seq).collect();
        assert_eq!(tree.len(), 1, "event {} has one edge from its cause", e.seq);
        assert!(!tree[0].inferred);
    }
    assert!(graph.edges.iter().all(|x| !x.inferred), "every event of a turn has a recorded cause");
    let typed: std::collections::BTreeSet<&str> = graph.edges.iter().map(|x| x.kind).collect();
    for kind in ["caused", "decided_by", "confirmed_by", "attempt_of", "replayed_as"] {
        assert!(typed.contains(kind), "no {kind} edge in {typed:?}");
    }
    let seen = kinds(&graph.nodes);
    for kind in [
        "turn.opened",
        "model.call",
        "memory.write",
        "memory.recall",
        "action.submitted",
        "policy.decided",
        "confirmation.requested",
        "confirmation.given",
        "action.dispatched",
        "action.attempt",
        "action.succeeded",
        "action.failed",
        "dlq.entered",
        "dlq.replayed",
    ] {
        assert!(seen.contains(&kind), "{kind} missing from {seen:?}");
    }
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_dlq_entry_traces_back_to_its_originating_turn() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    let mut entries = Vec::new();
    for _ in 0..5 {
        let t = turn(&node, Trust::Normal).await;
        let a = submit(&node, &t, "flaky.api", json!({"_sim": {"fail": true}})).await;
        terminal(&node, &a.id).await;
        entries.push((t, a));
    }
    let dlq = node.dlq(true, None).unwrap();
    assert_eq!(dlq.len(), entries.len());
    for entry in dlq {
        let chain = node.provenance(&entry.id).await.unwrap();
        let (t, a) = entries.iter().find(|(_, a)| a.id == entry.action_id).unwrap();
        assert_eq!(chain.first().unwrap().kind(), EventKind::TurnOpened);
        assert_eq!(chain.first().unwrap().turn_id.as_ref(), Some(&t.id));
        assert_eq!(chain.last().unwrap().kind(), EventKind::DlqEntered);
        assert!(chain.windows(2).all(|w| w[1].causation_seq == Some(w[0].seq)), "an unbroken chain");
        assert!(kinds(&chain).contains(&"action.submitted"));
        assert!(chain.iter().skip(1).all(|e| e.action_id.as_ref() == Some(&a.id)));
    }
    assert_eq!(
        node.provenance(&warden_actors::ids::DlqId("dlq_nope".into())).await.unwrap_err().code(),
        "unknown_dlq_entry"
    );
    node.shutdown().await.unwrap();
}

/// Waits until the wall clock (which stamps entries) is past `ts`, so the
/// next event gets a later millisecond than every event so far.
async fn clock_past(ts: u64) {
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    while now() <= ts {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn timeline_queries_return_events_in_log_order_by_seq_and_by_window() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    let t = turn(&node, Trust::Normal).await;
    let everything = || node.timeline(TimelineQuery { limit: Some(10_000), ..Default::default() });
    // Three phases of actions, each phase in later milliseconds than the one before.
    let mut phases: Vec<Vec<ActionId>> = Vec::new();
    for n in [4, 4, 2] {
        let mut ids = Vec::new();
        for _ in 0..n {
            let a = submit(&node, &t, "search.web", ok_args()).await;
            terminal(&node, &a.id).await;
            ids.push(a.id);
        }
        phases.push(ids);
        clock_past(everything().await.unwrap().last().unwrap().ts).await;
    }
    let all = everything().await.unwrap();
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(all.windows(2).all(|w| w[0].ts <= w[1].ts), "time is non-decreasing in seq");
    let last_seq = all.last().unwrap().seq;
    assert_eq!(all.len() as u64, last_seq, "seqs are dense from 1");

    let page = node.timeline(TimelineQuery { after_seq: Some(5), limit: Some(3), ..Default::default() }).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [6, 7, 8]);

    // The window is exactly the middle phase's time span.
    let of_phase = |p: usize| -> Vec<&Event> {
        all.iter().filter(|e| e.action_id.as_ref().is_some_and(|id| phases[p].contains(id))).collect()
    };
    let middle = of_phase(1);
    let from = middle.iter().map(|e| e.ts).min().unwrap();
    let to = middle.iter().map(|e| e.ts).max().unwrap() + 1;
    let window = node.timeline(TimelineQuery {
        from_ms: Some(from),
        to_ms: Some(to),
        limit: Some(10_000),
        ..Default::default()
    });
    let window: Vec<u64> = window.await.unwrap().iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = all.iter().filter(|e| e.ts >= from && e.ts < to).map(|e| e.seq).collect();
    assert_eq!(window, expected);
    for e in &middle {
        assert!(window.contains(&e.seq), "event {} of the middle phase missing from the window", e.seq);
    }
    for e in of_phase(0).into_iter().chain(of_phase(2)) {
        assert!(!window.contains(&e.seq), "event {} of another phase inside the window", e.seq);
    }
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn memory_recall_filters_by_prefix_tag_and_substring() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    let cid = warden_actors::ids::CorrelationId::generate();
    for (key, value, tag) in
        [("user.name", "Ada", "profile"), ("user.city", "Paris", "profile"), ("task.1", "buy milk", "todo")]
    {
        let put = PutRequest {
            ns: "agent".into(),
            key: key.into(),
            value: json!(value),
            tags: vec![tag.into()],
            turn_id: None,
            correlation_id: cid.clone(),
        };
        node.put_memory(put).await.unwrap();
    }
    let keys = |items: Vec<MemoryItem>| {
        let mut k: Vec<String> = items.into_iter().map(|i| i.key).collect();
        k.sort();
        k
    };
    let q = |prefix: Option<&str>, tag: Option<&str>, text: Option<&str>| RecallQuery {
        prefix: prefix.map(Into::into),
        tag: tag.map(Into::into),
        text: text.map(Into::into),
        limit: None,
    };
    assert_eq!(
        keys(node.recall("agent", q(Some("user."), None, None), None).await.unwrap()),
        ["user.city", "user.name"]
    );
    assert_eq!(keys(node.recall("agent", q(None, Some("todo"), None), None).await.unwrap()), ["task.1"]);
    assert_eq!(keys(node.recall("agent", q(None, None, Some("PARIS")), None).await.unwrap()), ["user.city"]);
    let limited = RecallQuery { limit: Some(1), ..Default::default() };
    assert_eq!(node.recall("agent", limited, None).await.unwrap().len(), 1);
    assert!(node.recall("other", q(None, None, None), None).await.unwrap().is_empty());
    // Versions count writes.
    let put = PutRequest {
        ns: "agent".into(),
        key: "user.name".into(),
        value: json!("Ada L."),
        tags: vec![],
        turn_id: None,
        correlation_id: cid,
    };
    assert_eq!(node.put_memory(put).await.unwrap().version, 2);
    let bad = PutRequest {
        ns: "".into(),
        key: "k".into(),
        value: json!(1),
        tags: vec![],
        turn_id: None,
        correlation_id: warden_actors::ids::CorrelationId::generate(),
    };
    assert_eq!(node.put_memory(bad).await.unwrap_err().code(), "bad_input");
    node.shutdown().await.unwrap();
}

// ---- The incident timeline over a generated three-node history -------------

use common::history::{History, Mix, NODES};
use std::collections::{BTreeSet, HashSet};
use warden_actors::domain::alert::{changes_of, AlertChange};
use warden_actors::store::{Store, TimelinePage};
use warden_actors::timeline;

const MIX: Mix = Mix { dead_one_in: 3, takeover_one_in: 4, confirm_one_in: 4, replays: 2, node_event_one_in: 5 };

fn history(dir: &tempfile::TempDir, turns: u32, mix: Mix) -> History {
    let mut h = History::create(&dir.path().join("history.redb"), 7, 1_700_000_000_000);
    for i in 0..turns {
        h.turn(mix);
        if i % 200 == 199 {
            h.commit();
        }
    }
    h.commit();
    h
}

/// Every page of `q` from its start, following the `next` cursor; checks
/// that pages are in log order and never overlap.
fn all_pages(store: &Store, q: &TimelineQuery) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    let mut q = q.clone();
    loop {
        let TimelinePage { events, next_after } = store.timeline_page(&q).unwrap();
        assert!(events.windows(2).all(|w| w[0].seq < w[1].seq), "a page is in log order");
        if let (Some(last), Some(first)) = (out.last(), events.first()) {
            assert!(last.seq < first.seq, "pages do not overlap");
        }
        out.extend(events);
        match next_after {
            Some(next) if Some(next) != q.after_seq => q.after_seq = Some(next),
            _ => return out,
        }
    }
}

/// The filters, decided from the event itself and the stored actions (not
/// from the index).
fn oracle(store: &Store, q: &TimelineQuery, e: &Event) -> bool {
    let data = e.data.to_json().unwrap();
    let field = |k: &str| data.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let lo = q.after_seq.unwrap_or(0);
    if e.seq <= lo || q.from_ms.is_some_and(|f| e.ts < f) || q.to_ms.is_some_and(|t| e.ts >= t) {
        return false;
    }
    if let Some(k) = &q.kind {
        if !e.kind().as_str().starts_with(k.as_str()) {
            return false;
        }
    }
    if let Some(n) = &q.node {
        let about = ["node", "from", "to", "by", "leader", "previous"].iter().any(|k| field(k).as_ref() == Some(n));
        if e.node != *n && !about {
            return false;
        }
    }
    if let Some(c) = &q.capability {
        let own = field("capability");
        let of_action = e.action_id.as_ref().and_then(|a| store.action(a).unwrap()).map(|a| a.capability);
        if own.or(of_action).as_ref() != Some(c) {
            return false;
        }
    }
    if let Some(s) = &q.session_id {
        if e.session_id.as_ref().map(|s| s.as_str()) != Some(s.as_str()) {
            return false;
        }
    }
    if let Some(a) = &q.action_id {
        let replayed = matches!(e.kind(), EventKind::DlqReplayed) && field("action_id").as_ref() == Some(a);
        if e.action_id.as_ref().map(|x| x.as_str()) != Some(a.as_str()) && !replayed {
            return false;
        }
    }
    if let Some(sev) = &q.severity {
        let raised = changes_of(e).into_iter().find_map(|c| match c {
            AlertChange::Raise(spec) => Some(spec.severity.as_str().to_owned()),
            AlertChange::Resolve { .. } => None,
        });
        let of_event = raised.or_else(|| field("severity").filter(|_| e.kind() == EventKind::AlertRaised));
        if of_event.as_ref() != Some(sev) {
            return false;
        }
    }
    true
}

#[test]
fn timeline_filters_and_cursors_return_exactly_what_a_scan_of_the_whole_log_finds() {
    let dir = tempfile::tempdir().unwrap();
    let h = history(&dir, 600, MIX);
    let store = &h.store;
    let everything = all_pages(store, &TimelineQuery { limit: Some(1_000), ..Default::default() });
    assert_eq!(everything.len() as u64, h.events(), "paging walks the whole log");
    let mid = everything[everything.len() / 3].ts;
    let late = everything[everything.len() * 2 / 3].ts;
    let q = |f: &dyn Fn(&mut TimelineQuery)| {
        let mut q = TimelineQuery { limit: Some(37), ..Default::default() };
        f(&mut q);
        q
    };
    let queries = [
        q(&|q| q.kind = Some("action.".into())),
        q(&|q| q.kind = Some("alert.".into())),
        q(&|q| q.kind = Some("dlq.replayed".into())),
        q(&|q| q.node = Some("n2".into())),
        q(&|q| q.capability = Some("flaky.api".into())),
        q(&|q| q.session_id = Some("sess_5".into())),
        q(&|q| q.action_id = Some("act_9".into())),
        q(&|q| q.action_id = Some(h.records.iter().find(|r| r.actions.len() > 2).unwrap().actions[1].to_string())),
        q(&|q| q.severity = Some("page".into())),
        q(&|q| {
            q.node = Some("n3".into());
            q.kind = Some("action.attempt".into());
        }),
        q(&|q| {
            q.capability = Some("email.send".into());
            q.kind = Some("confirmation.".into());
            q.from_ms = Some(mid);
            q.to_ms = Some(late);
        }),
        q(&|q| {
            q.kind = Some("node.".into());
            q.after_seq = Some(everything.len() as u64 / 2);
        }),
        q(&|q| {
            q.from_ms = Some(mid);
            q.to_ms = Some(late);
        }),
    ];
    for query in &queries {
        let got: Vec<u64> = all_pages(store, query).iter().map(|e| e.seq).collect();
        let want: Vec<u64> = everything.iter().filter(|e| oracle(store, query, e)).map(|e| e.seq).collect();
        assert!(!want.is_empty(), "{query:?} finds nothing: a vacuous check");
        assert_eq!(got, want, "{query:?}");
    }
    // Node-level events are part of the timeline.
    for kind in ["node.down", "node.joined", "leader.changed", "breaker.changed", "alert.raised", "actor.restarted"] {
        assert!(everything.iter().any(|e| e.kind().as_str() == kind), "no {kind} in the history");
    }
    // A bounded window ends: its last page has no cursor.
    let bounded = store.timeline_page(&TimelineQuery {
        from_ms: Some(mid),
        to_ms: Some(late),
        limit: Some(10_000),
        ..Default::default()
    });
    assert_eq!(bounded.unwrap().next_after, None);
}

#[test]
fn the_index_is_built_from_the_events_when_a_snapshot_is_installed() {
    let dir = tempfile::tempdir().unwrap();
    let h = history(&dir, 150, MIX);
    let snapshot = {
        let txn = h.store.database().begin_read().unwrap();
        warden_actors::store::StateSnapshot::capture(&txn).unwrap()
    };
    let other = std::sync::Arc::new(warden_actors::store::open_database(&dir.path().join("other.redb")).unwrap());
    let txn = other.begin_write().unwrap();
    snapshot.restore(&txn).unwrap();
    txn.commit().unwrap();
    let index = warden_actors::store::EventIndex::open(&dir.path().join("other-index.redb")).unwrap();
    let restored = Store::with_index(other, std::sync::Arc::new(index));
    let caught = restored.index_catch_up(usize::MAX).unwrap().unwrap();
    assert_eq!(caught.through, h.events(), "every restored event indexed");
    assert_eq!(restored.state_digest().unwrap(), h.store.state_digest().unwrap());
    for query in [
        TimelineQuery { capability: Some("db.query".into()), ..Default::default() },
        TimelineQuery { node: Some("n1".into()), kind: Some("action.".into()), ..Default::default() },
        TimelineQuery { severity: Some("page".into()), ..Default::default() },
        TimelineQuery { incidents_only: true, ..Default::default() },
    ] {
        let q = TimelineQuery { limit: Some(10_000), ..query };
        let want = h.store.timeline(&q).unwrap();
        assert!(!want.is_empty());
        assert_eq!(restored.timeline(&q).unwrap(), want, "{q:?}");
    }
}

#[test]
fn an_incident_window_holds_the_node_level_events_and_every_failure_with_its_causes() {
    let dir = tempfile::tempdir().unwrap();
    let h = history(&dir, 300, MIX);
    let all = h.store.timeline(&TimelineQuery { limit: Some(10_000), ..Default::default() }).unwrap();
    assert_eq!(all.len() as u64, h.events());
    let (from, to) = (all[all.len() / 4].ts, all[all.len() * 3 / 4].ts);
    let q = TimelineQuery { from_ms: Some(from), to_ms: Some(to), limit: Some(10_000), ..Default::default() };
    let incidents = h.store.incidents(&q).unwrap();
    assert_eq!(incidents.next_after, None, "one page holds the window");
    let seqs: Vec<u64> = incidents.events.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "one ordered stream, each event once");
    let by_seq: HashMap<u64, &Event> = incidents.events.iter().map(|e| (e.seq, e)).collect();
    let in_window = |e: &&Event| e.ts >= from && e.ts < to;
    let mut failures = 0;
    for e in all.iter().filter(in_window) {
        let incident = warden_actors::store::index::is_incident(e.kind());
        if !incident {
            if by_seq.contains_key(&e.seq) {
                assert!(
                    incidents.causes.values().any(|c| c.contains(&e.seq)),
                    "{} is neither incident nor cause",
                    e.seq
                );
            }
            continue;
        }
        assert!(by_seq.contains_key(&e.seq), "{} {} missing", e.seq, e.kind().as_str());
        if matches!(e.kind(), EventKind::ActionFailed | EventKind::DlqEntered) {
            failures += 1;
            let chain = &incidents.causes[&e.seq];
            let root = by_seq[&chain[0]];
            assert_eq!(root.kind(), EventKind::TurnOpened, "a failure's causes start at its turn");
            assert_eq!(root.turn_id, e.turn_id);
            let mut steps: Vec<u64> = chain.clone();
            steps.push(e.seq);
            for w in steps.windows(2) {
                assert_eq!(by_seq[&w[1]].causation_seq, Some(w[0]), "an unbroken chain of causes");
            }
            assert!(chain.iter().any(|s| by_seq[s].kind() == EventKind::PolicyDecided));
        }
        if e.kind() == EventKind::AlertRaised {
            let cause = by_seq[incidents.causes[&e.seq].last().unwrap()];
            assert!(changes_of(cause).iter().any(|c| matches!(c, AlertChange::Raise(_))), "an alert's cause raises it");
        }
    }
    assert!(failures >= 20, "only {failures} failures in the window");
    let kinds: BTreeSet<&str> = incidents.events.iter().map(|e| e.kind().as_str()).collect();
    for kind in ["node.down", "alert.raised", "action.failed", "dlq.entered", "action.takeover", "turn.opened"] {
        assert!(kinds.contains(kind), "no {kind} in {kinds:?}");
    }
}

#[test]
fn a_thousand_dead_letters_across_three_nodes_each_resolve_to_their_turn() {
    let dir = tempfile::tempdir().unwrap();
    let mix = Mix { dead_one_in: 2, takeover_one_in: 3, confirm_one_in: 3, replays: 2, node_event_one_in: 7 };
    let h = history(&dir, 720, mix);
    let store = &h.store;
    let entries = store.dlq_entries(false, Some(10_000)).unwrap();
    assert!(entries.len() >= 1_000, "only {} dead letters", entries.len());
    let expected: usize = h.records.iter().map(|r| r.dead.len()).sum();
    assert_eq!(entries.len(), expected);
    let (mut resolved, mut takeovers, mut replays_of_replays) = (0, 0, 0);
    let mut nodes = BTreeSet::new();
    for record in &h.records {
        for (depth, dlq_id) in record.dead.iter().enumerate() {
            let p = timeline::provenance_of(store, dlq_id).unwrap();
            assert!(p.complete, "{dlq_id} does not resolve");
            // entry → action → turn → session
            assert_eq!(p.entry.id, *dlq_id);
            assert_eq!(p.action.id, record.actions[depth]);
            assert_eq!(p.turn.id, record.turn_id);
            assert_eq!(p.session.as_ref().map(|s| &s.id), Some(&record.session_id));
            assert_eq!(p.chain.first().map(|e| e.seq), Some(p.turn.opened_seq));
            assert_eq!(p.chain.last().map(|e| e.kind()), Some(EventKind::DlqEntered));
            assert!(p.chain.windows(2).all(|w| w[1].causation_seq == Some(w[0].seq)), "an unbroken chain");
            // attempts: node and outcome of each; takeovers name where they came from
            assert_eq!(p.attempts.len(), p.action.attempts.len());
            assert!(p.attempts.iter().all(|a| NODES.contains(&a.node.as_str()) && a.outcome.is_some()));
            for a in p.attempts.iter().filter(|a| a.takeover) {
                takeovers += 1;
                let from = a.took_over_from.as_deref().expect("a takeover names the node it left");
                assert_ne!(from, a.node);
                assert!(a.takeover_reason.as_deref().is_some_and(|r| r.contains(from)));
            }
            nodes.extend(p.attempts.iter().map(|a| a.node.clone()));
            // decision and confirmation
            assert_eq!(p.decision.policy_hash, "p1");
            assert!(!p.decision.reasons.is_empty());
            if depth == 0 && record.confirmed {
                assert_eq!(p.decision.tier, Tier::Confirm);
                let c = p.confirmation.as_ref().expect("the confirmation's principal");
                assert_eq!((c.principal.as_str(), c.approve), ("alice", true));
            } else {
                assert!(p.confirmation.is_none());
            }
            // the turn's model calls and memory recalls
            assert_eq!(p.model_calls.len(), 1);
            assert_eq!(p.memory_recalls.len(), 1);
            // replays: backwards to every ancestor, forwards to the replay
            let ancestors: Vec<&warden_actors::ids::DlqId> = p.replay_of.iter().map(|l| &l.dlq_id).collect();
            let want: Vec<&warden_actors::ids::DlqId> = record.dead[..depth].iter().rev().collect();
            assert_eq!(ancestors, want, "{dlq_id}: every entry it re-ran, nearest first");
            if depth >= 2 {
                replays_of_replays += 1;
            }
            match record.dead.get(depth + 1) {
                Some(next) => {
                    assert_eq!(p.replays.len(), 1);
                    assert_eq!(p.replays[0].action_id, record.actions[depth + 1]);
                    assert_eq!(p.replays[0].dlq_id.as_ref(), Some(next));
                }
                None => assert!(p.replays.is_empty()),
            }
            resolved += 1;
        }
    }
    assert_eq!(resolved, entries.len(), "100 % resolve to their turn");
    assert!(takeovers >= 100, "only {takeovers} takeovers");
    assert!(replays_of_replays >= 100, "only {replays_of_replays} replays of replays");
    assert_eq!(nodes.len(), 3, "attempts ran on {nodes:?}");
}

/// Every node of `g` is reachable from its root along its edges.
fn reachable_from_root(g: &timeline::CorrelationGraph) -> HashSet<u64> {
    let mut seen = HashSet::new();
    let mut stack: Vec<u64> = g.root.into_iter().collect();
    while let Some(seq) = stack.pop() {
        if seen.insert(seq) {
            stack.extend(g.edges.iter().filter(|e| e.from == seq).map(|e| e.to));
        }
    }
    seen
}

#[test]
fn every_event_of_a_correlation_is_in_its_graph_connected_to_the_turn_root() {
    let dir = tempfile::tempdir().unwrap();
    let h = history(&dir, 400, MIX);
    let store = &h.store;
    let all = store.timeline(&TimelineQuery { limit: Some(10_000), ..Default::default() }).unwrap();
    let mut rng = common::history::Rng::new(11);
    let mut kinds = BTreeSet::new();
    for _ in 0..100 {
        let record = &h.records[rng.below(h.records.len() as u64) as usize];
        let g = timeline::graph(store, &record.correlation_id).unwrap();
        let nodes: HashSet<u64> = g.nodes.iter().map(|e| e.seq).collect();
        for e in all.iter().filter(|e| e.correlation_id == record.correlation_id) {
            assert!(nodes.contains(&e.seq), "{} of {} missing", e.seq, record.correlation_id);
        }
        let root = g.nodes.iter().find(|e| Some(e.seq) == g.root).unwrap();
        assert_eq!((root.kind(), root.turn_id.as_ref()), (EventKind::TurnOpened, Some(&record.turn_id)));
        assert_eq!(reachable_from_root(&g), nodes, "{}: every event connected to the root", record.correlation_id);
        assert!(g.edges.iter().all(|e| e.from < e.to), "a DAG: edges run forward in the log");
        assert!(g.edges.iter().all(|e| !e.inferred), "every edge recorded");
        kinds.extend(g.edges.iter().map(|e| e.kind));
        if record.took_over {
            assert!(g.edges.iter().any(|e| e.kind == "took_over"));
        }
        if record.dead.len() > 1 {
            assert!(g.edges.iter().filter(|e| e.kind == "replayed_as").count() >= 2 * (record.dead.len() - 1));
        }
    }
    for kind in ["caused", "decided_by", "confirmed_by", "attempt_of", "took_over", "replayed_as"] {
        assert!(kinds.contains(kind), "no {kind} edge in 100 graphs: {kinds:?}");
    }
    // A node's correlation: its node.down events and the alerts they raised.
    let g = timeline::graph(store, &warden_actors::ids::CorrelationId("node:n2".into())).unwrap();
    let alerted: Vec<_> = g.edges.iter().filter(|e| e.kind == "alerted").collect();
    assert!(!alerted.is_empty(), "node.down raised alerts");
    assert_eq!(reachable_from_root(&g).len(), g.nodes.len());
    // The OTLP export: one trace, one span per event, parents inside it.
    let otlp = timeline::otlp_json(&timeline::graph(store, &h.records[0].correlation_id).unwrap());
    let spans = otlp["resourceSpans"][0]["scopeSpans"][0]["spans"].as_array().unwrap();
    let ids: HashSet<&str> = spans.iter().map(|s| s["spanId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), spans.len());
    let roots = spans.iter().filter(|s| s["parentSpanId"] == "").count();
    assert_eq!(roots, 1, "one root span");
    assert!(spans.iter().all(|s| s["parentSpanId"] == "" || ids.contains(s["parentSpanId"].as_str().unwrap())));
    let traces: HashSet<&str> = spans.iter().map(|s| s["traceId"].as_str().unwrap()).collect();
    assert_eq!(traces.len(), 1);
    assert_eq!(traces.iter().next().unwrap().len(), 32);
}

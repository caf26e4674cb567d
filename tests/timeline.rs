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
    assert_eq!(graph.edges.len(), graph.nodes.len() - 1, "a tree: every event but the root has one edge");
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

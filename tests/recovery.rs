//! Restarting a node on the same data dir loses nothing that was
//! acknowledged, and finishes the actions that were in flight.

mod common;

use common::*;
use serde_json::json;
use warden_actors::domain::*;
use warden_actors::memory::PutRequest;
use warden_actors::store::TimelineQuery;

#[tokio::test]
async fn a_restarted_node_has_lost_no_acknowledged_action_memory_item_or_event() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    let t = turn(&node, Trust::Normal).await;
    let mut actions = Vec::new();
    for i in 0..40 {
        let cap = ["search.web", "notes.write", "email.send", "db.drop"][i % 4];
        actions.push(submit(&node, &t, cap, json!({"i": i})).await);
    }
    for i in 0..25 {
        let put = PutRequest {
            ns: "agent".into(),
            key: format!("k{i}"),
            value: json!({"i": i}),
            tags: vec![],
            turn_id: Some(t.id.clone()),
            correlation_id: t.correlation_id.clone(),
        };
        node.put_memory(put).await.unwrap();
    }
    let events_before = node.timeline(TimelineQuery { limit: Some(10_000), ..Default::default() }).await.unwrap();
    node.shutdown().await.unwrap();

    let node = start(&dir).await;
    for a in &actions {
        let after = node.action(&a.id).expect("acknowledged action survives");
        assert_eq!(after.id, a.id);
        assert_eq!(after.decision, a.decision);
    }
    for i in 0..25 {
        let item = node.get_memory("agent", &format!("k{i}")).await.unwrap().expect("memory survives");
        assert_eq!(item.value, json!({"i": i}));
    }
    // An acknowledged write after the restart: its event must continue the sequence.
    let t2 = turn(&node, Trust::Normal).await;
    let events_after = node.timeline(TimelineQuery { limit: Some(10_000), ..Default::default() }).await.unwrap();
    assert_eq!(&events_after[..events_before.len()], &events_before[..], "every event, unchanged, in order");
    let last_before = events_before.last().expect("events before the restart").seq;
    let new = &events_after[events_before.len()..];
    assert!(new.iter().any(|e| e.kind() == EventKind::TurnOpened && e.turn_id.as_ref() == Some(&t2.id)), "{new:?}");
    // New events continue the sequence: no gap, no reuse.
    let seqs: Vec<u64> = new.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (last_before + 1..=last_before + new.len() as u64).collect::<Vec<_>>());
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn in_flight_actions_finish_after_a_restart_with_the_same_idempotency_key() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    let t = turn(&node, Trust::Normal).await;
    let mut events = node.subscribe();
    // Attempt 1 would take 10 minutes: the node stops while it runs.
    let slow = json!({"_sim": {"latency_ms": 600_000, "latency_attempts": 1}});
    let a = submit(&node, &t, "notes.write", slow).await;
    next_event(&mut events, |e| e.kind() == EventKind::ActionDispatched && e.action_id.as_ref() == Some(&a.id)).await;
    let waiting = submit(&node, &t, "email.send", json!({})).await;
    node.shutdown().await.unwrap();

    let node = start(&dir).await;
    let done = terminal(&node, &a.id).await;
    assert_eq!(done.state, ActionState::Succeeded);
    assert_eq!(done.attempts.len(), 2);
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::Interrupted));
    assert_eq!(done.idempotency_key, a.idempotency_key);
    let dispatches: Vec<_> = node
        .correlation_graph(&t.correlation_id)
        .await
        .unwrap()
        .nodes
        .into_iter()
        .filter(|e| e.kind() == EventKind::ActionDispatched && e.action_id.as_ref() == Some(&a.id))
        .collect();
    assert_eq!(dispatches.len(), 2);
    assert!(matches!(dispatches[1].data, EventData::ActionDispatched { takeover: true, .. }), "{:?}", dispatches[1]);

    // A confirmation that was pending survives too, and can still be given.
    assert_eq!(node.action(&waiting.id).unwrap().state, ActionState::AwaitingConfirmation);
    node.confirm(&waiting.id, true, "alice").await.unwrap();
    assert_eq!(terminal(&node, &waiting.id).await.state, ActionState::Succeeded);
    node.shutdown().await.unwrap();
}

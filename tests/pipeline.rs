//! The action pipeline end to end on one node, driven by actor messages:
//! authorization by tier, confirmation, retries, the breaker, the DLQ.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;
use warden_actors::breaker::BreakerState;
use warden_actors::domain::*;
use warden_actors::ids::*;
use warden_actors::WardenError;

#[tokio::test]
async fn tier_0_and_1_actions_are_allowed_and_executed() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    let t = turn(&node, Trust::Normal).await;
    for (cap, tier) in [("search.web", Tier::Observe), ("notes.write", Tier::Reversible)] {
        let a = submit(&node, &t, cap, ok_args()).await;
        assert_eq!(a.decision.decision, Verdict::Allow);
        assert_eq!(a.decision.tier, tier);
        let done = terminal(&node, &a.id).await;
        assert_eq!(done.state, ActionState::Succeeded);
        assert_eq!(done.attempts.len(), 1);
        assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::OK));
    }
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn tier_2_waits_for_confirmation_and_runs_after_approve() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    let t = turn(&node, Trust::Normal).await;
    let a = submit(&node, &t, "email.send", json!({"to": "ops@example.com"})).await;
    assert_eq!(a.state, ActionState::AwaitingConfirmation);
    assert!(a.confirm_deadline_ms.is_some());
    // Nothing runs while it waits.
    let still = node.wait_action(&a.id, Duration::from_millis(100)).await.unwrap();
    assert_eq!(still.state, ActionState::AwaitingConfirmation);
    assert!(still.attempts.is_empty());

    let confirmed = node.confirm(&a.id, true, "alice").await.unwrap();
    assert_eq!(confirmed.confirmed_by.as_deref(), Some("alice"));
    let done = terminal(&node, &a.id).await;
    assert_eq!(done.state, ActionState::Succeeded);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn tier_2_is_rejected_on_reject_and_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    let t = turn(&node, Trust::Normal).await;
    let a = submit(&node, &t, "email.send", json!({})).await;
    let rejected = node.confirm(&a.id, false, "bob").await.unwrap();
    assert_eq!(rejected.state, ActionState::Rejected);
    let done = terminal(&node, &a.id).await;
    assert_eq!(done.state, ActionState::Rejected);
    assert!(done.attempts.is_empty());
    // A second answer is a wrong-state error, and changes nothing.
    let err = node.confirm(&a.id, true, "bob").await.unwrap_err();
    assert!(matches!(err, WardenError::NotAwaitingConfirmation { .. }), "{err:?}");
    assert_eq!(node.action(&a.id).unwrap().state, ActionState::Rejected);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn tier_2_expires_after_its_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.confirm_ttl_ms = 150;
    let node = warden_actors::Node::start(config).await.unwrap();
    let t = turn(&node, Trust::Normal).await;
    let a = submit(&node, &t, "email.send", json!({})).await;
    let done = terminal(&node, &a.id).await;
    assert_eq!(done.state, ActionState::Expired);
    assert!(done.attempts.is_empty());
    let err = node.confirm(&a.id, true, "late").await.unwrap_err();
    assert!(matches!(err, WardenError::NotAwaitingConfirmation { .. }), "{err:?}");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn tier_3_is_denied_and_never_executed() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    let t = turn(&node, Trust::Normal).await;
    let a = submit(&node, &t, "db.drop", json!({"table": "users"})).await;
    assert_eq!(a.state, ActionState::Denied);
    assert_eq!(a.decision.decision, Verdict::Deny);
    assert!(!a.decision.policy_hash.is_empty());
    let done = terminal(&node, &a.id).await;
    assert!(done.attempts.is_empty());
    let dispatched = node
        .correlation_graph(&t.correlation_id)
        .await
        .unwrap()
        .nodes
        .iter()
        .any(|e| e.kind() == EventKind::ActionDispatched);
    assert!(!dispatched, "a denied action was dispatched");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn tiers_escalate_by_amount_and_by_low_trust_session() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    let normal = turn(&node, Trust::Normal).await;
    let small = submit(&node, &normal, "payments.send", json!({"amount": 50})).await;
    assert_eq!((small.decision.tier, small.state), (Tier::Reversible, ActionState::Pending));
    let large = submit(&node, &normal, "payments.send", json!({"amount": 500})).await;
    assert_eq!((large.decision.tier, large.state), (Tier::Confirm, ActionState::AwaitingConfirmation));

    let low = turn(&node, Trust::Low).await;
    let notes = submit(&node, &low, "notes.write", json!({})).await;
    assert_eq!(notes.decision.decision, Verdict::Confirm);
    let search = submit(&node, &low, "search.web", json!({})).await;
    assert_eq!(search.decision.decision, Verdict::Allow, "tier 0 does not escalate");
    let both = submit(&node, &low, "payments.send", json!({"amount": 500})).await;
    assert_eq!((both.decision.tier, both.state), (Tier::Forbidden, ActionState::Denied));
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn retryable_failures_retry_up_to_max_attempts_then_dead_letter_with_history() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    let t = turn(&node, Trust::Normal).await;

    let recovers = submit(&node, &t, "flaky.api", json!({"_sim": {"fail_attempts": 2}})).await;
    let done = terminal(&node, &recovers.id).await;
    assert_eq!(done.state, ActionState::Succeeded);
    assert_eq!(done.attempts.len(), 3);

    let a = submit(&node, &t, "flaky.api", json!({"_sim": {"fail": true}})).await;
    let done = terminal(&node, &a.id).await;
    assert_eq!(done.state, ActionState::DeadLettered);
    assert_eq!(done.attempts.len(), 3, "max_attempts is 3");
    assert!(done.attempts.iter().all(|at| matches!(at.outcome, Some(AttemptOutcome::Retryable { .. }))));

    let dlq = node.dlq(true, None).unwrap();
    let entry = dlq.iter().find(|e| e.action_id == a.id).expect("in the DLQ");
    assert_eq!(entry.attempts, done.attempts, "the DLQ keeps the whole attempt history");
    assert_eq!(entry.idempotency_key, done.idempotency_key);
    assert!(entry.last_error.as_deref().unwrap().contains("simulated"));
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn permanent_failure_fails_without_retry() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    let t = turn(&node, Trust::Normal).await;
    let a = submit(&node, &t, "flaky.api", json!({"_sim": {"fail": "permanent"}})).await;
    let done = terminal(&node, &a.id).await;
    assert_eq!(done.state, ActionState::Failed);
    assert_eq!(done.attempts.len(), 1);
    assert!(node.dlq(false, None).unwrap().is_empty());
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn breaker_opens_after_threshold_fails_fast_half_opens_and_closes() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    let t = turn(&node, Trust::Normal).await;
    let breaker_state = || async { node.breakers().await.unwrap().into_iter().find(|b| b.capability == "fragile.api") };

    for _ in 0..3 {
        let a = submit(&node, &t, "fragile.api", json!({"_sim": {"fail": true}})).await;
        assert_eq!(terminal(&node, &a.id).await.state, ActionState::DeadLettered);
    }
    assert_eq!(breaker_state().await.unwrap().state, BreakerState::Open);

    // Open: fails fast, without calling the tool.
    let fast = submit(&node, &t, "fragile.api", ok_args()).await;
    let done = terminal(&node, &fast.id).await;
    assert_eq!(done.state, ActionState::DeadLettered);
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::BreakerOpen));
    assert!(breaker_state().await.unwrap().rejected >= 1);

    // After open_ms, one probe goes through; its success closes the breaker.
    // The open interval itself is what is under test here, so this waits it out.
    tokio::time::sleep(Duration::from_millis(350)).await;
    let mut events = node.subscribe();
    let probe = submit(&node, &t, "fragile.api", ok_args()).await;
    assert_eq!(terminal(&node, &probe.id).await.state, ActionState::Succeeded);
    next_event(&mut events, |e| matches!(e.data, EventData::BreakerChanged { state: BreakerState::Closed, .. })).await;
    assert_eq!(breaker_state().await.unwrap().state, BreakerState::Closed);

    let changes: Vec<BreakerState> = node
        .timeline(Default::default())
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.data {
            EventData::BreakerChanged { state, .. } => Some(state),
            _ => None,
        })
        .collect();
    assert_eq!(changes, [BreakerState::Open, BreakerState::HalfOpen, BreakerState::Closed]);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn dlq_replay_reuses_the_idempotency_key() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    let t = turn(&node, Trust::Normal).await;
    let mut req = submit_req(&t, "flaky.api", json!({"_sim": {"fail_attempts": 3}}));
    req.idempotency_key = Some(IdempotencyKey("order-42".into()));
    let a = node.submit(req).await.unwrap();
    assert_eq!(terminal(&node, &a.id).await.state, ActionState::DeadLettered);
    let entry = node.dlq(true, None).unwrap().into_iter().find(|e| e.action_id == a.id).unwrap();

    // The replay's attempts are numbered from 1 again, so `fail_attempts: 3` fails it once more;
    // what matters here is the key it carries and the link back to the entry.
    let replay = node.replay_dlq(&entry.id, None).await.unwrap();
    assert_ne!(replay.id, a.id);
    assert_eq!(replay.idempotency_key, IdempotencyKey("order-42".into()));
    assert_eq!(replay.replay_of.as_ref(), Some(&entry.id));
    assert_eq!(replay.correlation_id, a.correlation_id);
    terminal(&node, &replay.id).await;
    let entry = node.store().dlq_entry(&entry.id).unwrap().unwrap();
    assert_eq!(entry.replays, vec![replay.id.clone()]);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn resubmitting_an_idempotency_key_returns_the_existing_action() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    let t = turn(&node, Trust::Normal).await;
    let mut req = submit_req(&t, "notes.write", ok_args());
    req.idempotency_key = Some(IdempotencyKey("note-1".into()));
    let first = node.submit(req.clone()).await.unwrap();
    let second = node.submit(req).await.unwrap();
    assert_eq!(first.id, second.id);
    assert_eq!(terminal(&node, &first.id).await.attempts.len(), 1);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_input_gets_typed_errors_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    let t = turn(&node, Trust::Normal).await;

    let err = node.submit(submit_req(&t, "no.such.tool", ok_args())).await.unwrap_err();
    assert_eq!(err.code(), "unknown_capability");
    let err = node.submit(submit_req(&t, "notes.write", json!([1, 2]))).await.unwrap_err();
    assert_eq!(err.code(), "bad_input");
    let big = json!({"blob": "x".repeat(warden_actors::limits::MAX_ARGS_BYTES + 1)});
    assert_eq!(node.submit(submit_req(&t, "notes.write", big)).await.unwrap_err().code(), "bad_input");
    let mut ghost = t.clone();
    ghost.id = TurnId("turn_missing".into());
    assert_eq!(node.submit(submit_req(&ghost, "notes.write", ok_args())).await.unwrap_err().code(), "unknown_turn");

    let allowed = submit(&node, &t, "notes.write", ok_args()).await;
    terminal(&node, &allowed.id).await;
    let err = node.confirm(&allowed.id, true, "alice").await.unwrap_err();
    assert_eq!(err.code(), "not_awaiting_confirmation");
    let err = node.confirm(&ActionId("act_missing".into()), true, "alice").await.unwrap_err();
    assert_eq!(err.code(), "unknown_action");
    let err = node.replay_dlq(&DlqId("dlq_missing".into()), None).await.unwrap_err();
    assert_eq!(err.code(), "unknown_dlq_entry");

    // Still serving, nothing restarted.
    let after = submit(&node, &t, "search.web", ok_args()).await;
    assert_eq!(terminal(&node, &after.id).await.state, ActionState::Succeeded);
    let health = node.health().unwrap();
    assert_eq!(health.status, "ok");
    assert!(health.actors.iter().all(|a| a.restarts == 0), "{:?}", health.actors);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_dlq_entry_is_not_replayed_twice_while_its_replay_runs() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    let t = turn(&node, Trust::Normal).await;
    // Every attempt fails after 200 ms: the replay is still running when the second request comes.
    let a = submit(&node, &t, "flaky.api", json!({"_sim": {"fail": true, "latency_ms": 200}})).await;
    assert_eq!(terminal(&node, &a.id).await.state, ActionState::DeadLettered);
    let entry = node.dlq(true, None).unwrap().pop().unwrap();
    let first = node.replay_dlq(&entry.id, None).await.unwrap();
    let err = node.replay_dlq(&entry.id, None).await.unwrap_err();
    assert_eq!(err.code(), "wrong_state", "{err}");
    // Once that replay has failed too, another one is allowed.
    assert_eq!(terminal(&node, &first.id).await.state, ActionState::DeadLettered);
    let second = node.replay_dlq(&entry.id, None).await.unwrap();
    assert_ne!(second.id, first.id);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn crash_injection_through_args_needs_the_node_to_allow_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.fault_injection = false;
    let node = warden_actors::Node::start(config).await.unwrap();
    let t = turn(&node, Trust::Normal).await;
    let a = submit(&node, &t, "flaky.api", json!({"_sim": {"panic_attempts": 5}})).await;
    let done = terminal(&node, &a.id).await;
    assert_eq!((done.state, done.attempts.len()), (ActionState::Succeeded, 1));
    assert!(node.health().unwrap().actors.iter().all(|x| x.restarts == 0));
    node.shutdown().await.unwrap();
}

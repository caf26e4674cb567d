//! Supervision: a crashing actor is restarted and the node keeps serving;
//! a crash loop exhausts the restart intensity and is reported.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;
use warden_actors::directory::ChildState;
use warden_actors::domain::*;
use warden_actors::executor;
use warden_actors::supervisor::SupervisorConfig;

#[tokio::test]
async fn a_panicking_actor_is_restarted_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    let t = turn(&node, Trust::Normal).await;
    let mut events = node.subscribe();

    // Attempt 1 makes the Executors actor panic mid-call; the retry runs on its restarted instance.
    let a = submit(&node, &t, "flaky.api", json!({"_sim": {"panic_attempts": 1}})).await;
    let restarted = next_event(&mut events, |e| e.kind() == EventKind::ActorRestarted).await;
    assert!(
        matches!(&restarted.data, EventData::ActorRestarted { actor, .. } if actor == executor::NAME.as_str()),
        "{restarted:?}"
    );
    let done = terminal(&node, &a.id).await;
    assert_eq!(done.state, ActionState::Succeeded);
    assert_eq!(done.attempts.len(), 2);
    assert!(
        matches!(&done.attempts[0].outcome, Some(AttemptOutcome::Retryable { error }) if error.contains("executor"))
    );

    let health = node.health().unwrap();
    let executors = health.actors.iter().find(|a| a.name == executor::NAME.as_str()).unwrap();
    assert_eq!((executors.state, executors.restarts), (ChildState::Running, 1));
    assert!(executors.last_error.as_deref().unwrap().contains("simulated executor crash"));
    assert_eq!(health.status, "ok");

    // Other actions keep flowing.
    let b = submit(&node, &t, "search.web", ok_args()).await;
    assert_eq!(terminal(&node, &b.id).await.state, ActionState::Succeeded);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_crash_loop_exceeds_the_restart_intensity_and_is_reported_failed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.supervisor = SupervisorConfig {
        max_restarts: 2,
        window: Duration::from_secs(60),
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
    };
    let node = warden_actors::Node::start(config).await.unwrap();
    let t = turn(&node, Trust::Normal).await;
    // Each attempt crashes the executor; three crashes exceed max_restarts = 2.
    let mut events = node.subscribe();
    submit(&node, &t, "flaky.api", json!({"_sim": {"panic_attempts": 10}})).await;
    for _ in 0..2 {
        next_event(&mut events, |e| e.kind() == EventKind::ActorRestarted).await;
    }
    let failed = tokio::time::timeout(WAIT, async {
        loop {
            let health = node.health().unwrap();
            if health.status == "failed" {
                return health;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the node reports the crash loop");
    let executors = failed.actors.iter().find(|x| x.name == executor::NAME.as_str()).unwrap();
    assert_eq!(executors.state, ChildState::Failed);
    assert_eq!(executors.restarts, 2);
    let _ = node.shutdown().await;
}

/// The state of alert `name` in `/v1/alerts`, if it is listed.
async fn alert_state(node: &warden_actors::Node, name: &str) -> Option<String> {
    let view = node.alerts().await.unwrap();
    let alerts = view["alerts"].as_array().unwrap();
    alerts.iter().find(|a| a["name"] == name).map(|a| a["state"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_restart_loop_raises_an_alert_that_a_quiet_window_on_the_clock_resolves() {
    use warden_actors::clock::{wall_ms, Clock};
    use warden_actors::domain::alert::{RESTART_LOOP, RESTART_LOOP_AT};
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(wall_ms());
    let mut config = config(&dir);
    config.clock = clock.clone();
    let window = config.supervisor.window;
    let node = warden_actors::Node::start(config).await.unwrap();
    let t = turn(&node, Trust::Normal).await;
    let mut events = node.subscribe();

    // Each action's first attempt crashes the executor: one restart each.
    for n in 1..=RESTART_LOOP_AT {
        submit(&node, &t, "flaky.api", json!({"_sim": {"panic_attempts": 1}})).await;
        let restarted = next_event(&mut events, |e| e.kind() == EventKind::ActorRestarted).await;
        assert!(matches!(restarted.data, EventData::ActorRestarted { recent_restarts, .. } if recent_restarts == n));
        if n < RESTART_LOOP_AT {
            assert_eq!(alert_state(&node, RESTART_LOOP).await, None, "{n} restarts are not a loop");
        }
    }
    let raised = next_event(&mut events, |e| e.kind() == EventKind::AlertRaised).await;
    assert!(matches!(&raised.data, EventData::AlertRaised { name, .. } if name == RESTART_LOOP), "{raised:?}");
    assert_eq!(alert_state(&node, RESTART_LOOP).await.as_deref(), Some("firing"));

    // Nothing settles while the clock stands; a whole quiet window later the loop is over.
    clock.advance(window - Duration::from_millis(1));
    assert_eq!(alert_state(&node, RESTART_LOOP).await.as_deref(), Some("firing"));
    clock.advance(Duration::from_millis(2));
    let settled = next_event(&mut events, |e| e.kind() == EventKind::ActorsSettled).await;
    assert!(matches!(settled.data, EventData::ActorsSettled { quiet_ms } if quiet_ms == window.as_millis() as u64));
    let resolved = next_event(&mut events, |e| e.kind() == EventKind::AlertResolved).await;
    assert!(matches!(&resolved.data, EventData::AlertResolved { name, .. } if name == RESTART_LOOP), "{resolved:?}");
    assert_eq!(alert_state(&node, RESTART_LOOP).await.as_deref(), Some("resolved"));
    node.shutdown().await.unwrap();
}

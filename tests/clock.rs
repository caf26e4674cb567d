//! Time-based behaviour driven by the node's clock: each test starts a node
//! on a manual clock and moves time by advancing it, so windows of minutes
//! pass at once and nothing here sleeps for them.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;
use tempfile::TempDir;
use warden_actors::breaker::BreakerState;
use warden_actors::clock::{wall_ms, Clock};
use warden_actors::domain::*;
use warden_actors::limits::MAX_QUERY_LIMIT;
use warden_actors::store::TimelineQuery;
use warden_actors::{Node, NodeConfig};

/// A node on a manual clock that stands at the current wall time.
async fn start_on_manual_clock(dir: &TempDir, tune: impl FnOnce(&mut NodeConfig)) -> (Node, Clock) {
    let clock = Clock::manual(wall_ms());
    let mut config = config(dir);
    config.clock = clock.clone();
    tune(&mut config);
    (Node::start(config).await.expect("node starts"), clock)
}

/// Polls `probe` until it yields, failing the test after `WAIT`.
async fn until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn failing() -> serde_json::Value {
    json!({"_sim": {"fail": true}})
}

#[tokio::test]
async fn a_confirmation_expires_when_the_clock_passes_its_deadline_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    // The default TTL: five minutes, which this test never waits for.
    let (node, clock) = start_on_manual_clock(&dir, |_| {}).await;
    let ttl = Duration::from_millis(warden_actors::config::DEFAULT_CONFIRM_TTL_MS);
    let t = turn(&node, Trust::Normal).await;
    let early = submit(&node, &t, "email.send", json!({"to": "a@example.com"})).await;
    clock.advance(ttl / 2);
    let late = submit(&node, &t, "email.send", json!({"to": "b@example.com"})).await;
    assert_eq!(late.confirm_deadline_ms, Some(clock.now_ms() + ttl.as_millis() as u64));

    // Past the first deadline, not the second.
    clock.advance(ttl / 2 + Duration::from_millis(1));
    let expired = terminal(&node, &early.id).await;
    assert_eq!(expired.state, ActionState::Expired);
    assert!(expired.attempts.is_empty());
    let confirmed = node.confirm(&late.id, true, "alice").await.expect("still awaiting its confirmation");
    assert_eq!(confirmed.state, ActionState::Pending);
    assert_eq!(terminal(&node, &late.id).await.state, ActionState::Succeeded);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_open_breaker_half_opens_only_once_its_window_has_passed_on_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let open_for = Duration::from_secs(60);
    let (node, clock) = start_on_manual_clock(&dir, |c| {
        let mut fragile = Capability::new("fragile.api", Tier::Observe);
        fragile.max_attempts = 1;
        fragile.breaker = BreakerSpec { failure_threshold: 2, open_ms: open_for.as_millis() as u64 };
        c.capabilities = vec![fragile];
    })
    .await;
    let t = turn(&node, Trust::Normal).await;
    for _ in 0..2 {
        let a = submit(&node, &t, "fragile.api", failing()).await;
        assert_eq!(terminal(&node, &a.id).await.state, ActionState::DeadLettered);
    }
    let state = |views: Vec<warden_actors::breaker::BreakerView>| views[0].state;
    assert_eq!(state(node.breakers().await.unwrap()), BreakerState::Open);

    // Inside the window the breaker fails the call fast: the tool is not called.
    clock.advance(open_for - Duration::from_millis(1));
    let fast = submit(&node, &t, "fragile.api", ok_args()).await;
    let fast = terminal(&node, &fast.id).await;
    assert_eq!(fast.attempts[0].outcome, Some(AttemptOutcome::BreakerOpen));

    // At the end of the window one probe goes through, and its success closes the breaker.
    clock.advance(Duration::from_millis(1));
    let probe = submit(&node, &t, "fragile.api", ok_args()).await;
    assert_eq!(terminal(&node, &probe.id).await.state, ActionState::Succeeded);
    assert_eq!(state(node.breakers().await.unwrap()), BreakerState::Closed);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn dlq_growth_counts_only_entries_within_the_health_window_on_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let window = Duration::from_secs(600);
    let (node, clock) = start_on_manual_clock(&dir, |c| {
        c.health.dlq_window = window;
        c.health.report_every = Duration::from_millis(10);
    })
    .await;
    let t = turn(&node, Trust::Normal).await;
    let a = submit(&node, &t, "fragile.api", failing()).await;
    assert_eq!(terminal(&node, &a.id).await.state, ActionState::DeadLettered);
    let report = until("a report showing the new DLQ entry", || {
        let r = node.report();
        (r.dlq_depth == 1).then_some(r)
    })
    .await;
    assert_eq!(report.dlq_growth, 1);

    // Ten minutes later the entry is still there, but no longer growth.
    clock.advance(window + Duration::from_secs(1));
    let later = until("a report after the window", || {
        let r = node.report();
        (r.at_ms >= clock.now_ms()).then_some(r)
    })
    .await;
    assert_eq!((later.dlq_depth, later.dlq_growth), (1, 0));
    node.shutdown().await.unwrap();
}

/// The SloMonitor on the node's clock: attempts reach it from the Worker, its
/// evaluation runs at every slot the manual clock passes, and a latency ramp
/// is recorded as one `slo.trend` episode before it breaches.
#[tokio::test]
async fn a_latency_ramp_on_the_manual_clock_is_recorded_as_one_trend_advisory_before_the_breach() {
    use warden_actors::slo::{self, Sample, SloMsg};
    // The two ramps drive thousands of actions each: under `cargo test` (this
    // binary's tests as threads of one process) they take turns, so neither
    // runs its waits on half the machine (CI once failed this binary so).
    let _one = serial::one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let (node, clock) = start_on_manual_clock(&dir, |_| {}).await;
    // An attempt run by the Worker is counted in the node's windows.
    let t = turn(&node, Trust::Normal).await;
    let done = terminal(&node, &submit(&node, &t, "search.web", json!({})).await.id).await;
    assert_eq!(done.state, ActionState::Succeeded);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let view = node.slo(true).await.unwrap();
        let c = view.capabilities.iter().find(|c| c.capability == "search.web").unwrap();
        if c.windows[0].count == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the attempt never reached the SloMonitor");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // search.web's SLO: p95 1000 ms. 40 minutes flat at 600 ms, then +10 ms/min: breach at 80 min.
    let monitor = node.actor(slo::NAME).unwrap();
    let start = clock.now_ms();
    let breach_at = start + 80 * 60_000;
    let mut rng = fastrand::Rng::with_seed(5);
    while clock.now_ms() < breach_at {
        let minutes = (clock.now_ms() - start) as f64 / 60_000.0;
        let p95 = 600.0 + 10.0 * (minutes - 40.0).max(0.0);
        for _ in 0..50 {
            // Uniform on [0.5, 1.05] × p95 / 1.0: its 95th percentile is p95.
            let latency = (p95 * (0.5 + 0.5 * rng.f64() / 0.9090909)) as u64;
            let sample =
                Sample { capability: "search.web".into(), at_ms: clock.now_ms(), latency_ms: latency, ok: true };
            monitor.cast(SloMsg::Record(sample)).unwrap();
        }
        clock.advance(Duration::from_secs(10));
        // Let the ticker cast this slot's evaluation before the next samples.
        node.slo(true).await.unwrap();
    }
    let trends = until("slo.trend is recorded", || {
        let q = TimelineQuery { kind: Some("slo.trend".into()), limit: Some(MAX_QUERY_LIMIT), ..Default::default() };
        let trends: Vec<Event> = node.store().timeline(&q).ok()?;
        (!trends.is_empty()).then_some(trends)
    })
    .await;
    assert_eq!(trends.len(), 1, "one episode: {trends:?}");
    let trend = &trends[0];
    assert_eq!(trend.correlation_id.as_str(), "slo:search.web:trend:1");
    assert!(trend.ts + 10 * 60_000 <= breach_at, "announced {} ms before the breach", breach_at - trend.ts);
    let view = node.slo(true).await.unwrap();
    let c = view.capabilities.iter().find(|c| c.capability == "search.web").unwrap();
    assert!(c.advisories.iter().any(|a| a.advisory == "trend" && a.open), "{:?}", c.advisories);
}

/// Error ramps through the whole node (the sim tool failing more each
/// minute of the manual clock, one attempt per simulated second): on each
/// slope, `slo.burn` is recorded before the breaker's `breaker.changed` → open.
#[tokio::test]
async fn error_budget_burn_is_recorded_before_the_breaker_opens_on_error_ramps() {
    // One ramp test at a time (see the latency ramp's).
    let _one = serial::one_cluster_at_a_time().await;
    // Failure-rate growth per minute, after 500 clean attempts (enough for a 2 % budget).
    for slope in [0.02, 0.04, 0.08] {
        let dir = tempfile::tempdir().unwrap();
        let (node, clock) = start_on_manual_clock(&dir, |config| {
            let mut c = Capability::new("ramped", Tier::Observe);
            c.max_attempts = 1;
            c.slo = SloSpec { p95_ms: 1_000, error_budget: 0.02, windows: Vec::new() };
            c.executor = ExecutorSpec::Sim {
                latency_ms: 0,
                jitter_ms: 0,
                fail_rate: 0.0,
                ramp: SimRamp { latency_ms_per_min: 0.0, fail_per_min: slope, after_ms: 500_000 },
            };
            config.capabilities = vec![c];
        })
        .await;
        let t = turn(&node, Trust::Normal).await;
        // One attempt per second of the clock, four at a time (then four
        // seconds pass), so the slow slopes' thousands of attempts share commits.
        let one = || async { terminal(&node, &submit(&node, &t, "ramped", json!({})).await.id).await };
        let mut attempts = 0;
        loop {
            let (a, b, c, d) = tokio::join!(one(), one(), one(), one());
            attempts += 4;
            let refused = |done: &Action| {
                done.attempts.last().and_then(|a| a.outcome.clone()) == Some(AttemptOutcome::BreakerOpen)
            };
            if [a, b, c, d].iter().any(refused) {
                break;
            }
            assert!(attempts < 20_000, "slope {slope}: the breaker never opened");
            clock.advance(Duration::from_secs(4));
        }
        // By kind: the run's events outnumber a page (10,000) when the breaker is slow to open.
        let (burn, opened) = until("the breaker's opening is recorded", || {
            let first = |kind: &str, f: &dyn Fn(&EventData) -> bool| {
                let q = TimelineQuery { kind: Some(kind.into()), limit: Some(MAX_QUERY_LIMIT), ..Default::default() };
                let events = node.store().timeline(&q).ok()?;
                events.iter().find(|e| f(&e.data)).map(|e| e.seq)
            };
            let opened = first("breaker.changed", &|d| {
                matches!(d, EventData::BreakerChanged { state: BreakerState::Open, .. })
            })?;
            Some((first("slo.burn", &|d| matches!(d, EventData::SloBurn { .. })), opened))
        })
        .await;
        eprintln!("slope {slope}/min: breaker open after {attempts} attempts; slo.burn seq {burn:?}, breaker.changed seq {opened}");
        assert!(
            burn.is_some_and(|b| b < opened),
            "slope {slope}: slo.burn {burn:?} must precede the breaker ({opened})"
        );
        node.shutdown().await.unwrap();
    }
}

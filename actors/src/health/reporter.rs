//! The task that refreshes this node's `NodeReport`: each actor's state and
//! recent restarts, breakers not closed, queue depths, Raft position, disk
//! use, and the DLQ's depth and its growth over the DLQ window. Windows are
//! measured on the node's clock.

use crate::breaker::{self, BreakerMsg, BreakerState};
use crate::config::HealthConfig;
use crate::directory::{call, ChildState};
use crate::domain::ActionState;
use crate::pipeline::ATTEMPT_TASK_PREFIX;
use crate::report::{ActorReport, BreakerReport, NodeReport};
use crate::runtime::Runtime;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn actor_state(s: ChildState) -> &'static str {
    match s {
        ChildState::Running => "running",
        ChildState::Restarting => "restarting",
        ChildState::Failed => "failed",
    }
}

fn disk_use(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_use(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The DLQ's depth over the DLQ window: samples (time, depth), oldest first,
/// keeping the newest sample at or before the window's start.
#[derive(Debug, Default)]
pub struct DlqTrend {
    samples: VecDeque<(u64, u64)>,
}

impl DlqTrend {
    /// Records `depth` at `now_ms`; returns how much it grew over the last `window_ms`.
    pub fn observe(&mut self, now_ms: u64, depth: u64, window_ms: u64) -> i64 {
        self.samples.push_back((now_ms, depth));
        let horizon = now_ms.saturating_sub(window_ms);
        while self.samples.len() > 1 && self.samples.get(1).is_some_and(|(t, _)| *t <= horizon) {
            self.samples.pop_front();
        }
        let oldest = self.samples.front().map_or(depth, |(_, d)| *d);
        depth as i64 - oldest as i64
    }
}

/// Refreshes the node's report slot every `report_every`, for as long as the node runs.
pub fn spawn_reporter(rt: &Arc<Runtime>, data_dir: PathBuf) {
    let rt = rt.clone();
    let tasks = rt.tasks.clone();
    tasks.spawn_unique("health:report".into(), async move {
        let mut dlq = DlqTrend::default();
        let mut tick = tokio::time::interval(rt.config.health.report_every);
        loop {
            tick.tick().await;
            let report = build(&rt, &rt.config.health, &data_dir, &mut dlq).await;
            *rt.report.write() = report;
        }
    });
}

async fn build(rt: &Runtime, config: &HealthConfig, dir: &Path, dlq: &mut DlqTrend) -> NodeReport {
    let now = rt.clock.now_ms();
    let window = config.restart_window.as_millis() as u64;
    let actors = rt
        .directory
        .statuses()
        .into_iter()
        .map(|s| ActorReport {
            name: s.name.to_owned(),
            state: actor_state(s.state).to_owned(),
            restarts: s.restarts,
            recent_restarts: s.restarted_at_ms.iter().filter(|t| now.saturating_sub(**t) <= window).count() as u32,
            last_error: s.last_error,
        })
        .collect();
    let breakers = match rt.directory.get(breaker::NAME) {
        Ok(b) => call(&b, BreakerMsg::Snapshot).await.unwrap_or_default(),
        Err(_) => Vec::new(),
    }
    .into_iter()
    .filter(|b| b.state != BreakerState::Closed)
    .map(|b| BreakerReport {
        capability: b.capability,
        state: serde_json::to_value(b.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
    })
    .collect();
    let raft = rt.ledger.consensus().status();
    let depth = rt.store.dlq_depth().map_or(0, |d| d as u64);
    let pending_actions =
        rt.store.active_summaries().map_or(0, |a| a.iter().filter(|a| a.state == ActionState::Pending).count());
    let dlq_growth = dlq.observe(now, depth, config.dlq_window.as_millis() as u64);
    let dir = dir.to_owned();
    let disk_bytes = tokio::task::spawn_blocking(move || disk_use(&dir)).await.unwrap_or(0);
    NodeReport {
        node: rt.node.clone(),
        at_ms: now,
        actors,
        breakers,
        active_tasks: rt.tasks.len(),
        running_attempts: rt.tasks.count_prefix(ATTEMPT_TASK_PREFIX),
        proposal_queue: rt.ledger.consensus().proposer().queued(),
        pending_actions,
        policy_hash: rt.policy.hash(),
        raft_role: raft.role.to_owned(),
        term: raft.term,
        applied_index: raft.applied_index.unwrap_or(0),
        disk_bytes,
        dlq_depth: depth,
        dlq_growth,
        draining: rt.store.draining().is_ok_and(|d| d.contains(&rt.node)),
        restart_window_ms: window,
        storage: rt.ledger.consensus().storage().report(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use std::time::Duration;

    #[test]
    fn dlq_growth_is_measured_over_the_window_on_the_nodes_clock() {
        let clock = Clock::manual(1_000_000);
        let window = Duration::from_secs(60).as_millis() as u64;
        let mut trend = DlqTrend::default();
        assert_eq!(trend.observe(clock.now_ms(), 0, window), 0);
        clock.advance(Duration::from_secs(10));
        assert_eq!(trend.observe(clock.now_ms(), 3, window), 3, "three entries within the window");
        clock.advance(Duration::from_secs(40));
        assert_eq!(trend.observe(clock.now_ms(), 4, window), 4);
        // The sample of depth 0 leaves the window: growth counts from depth 3.
        clock.advance(Duration::from_secs(20));
        assert_eq!(trend.observe(clock.now_ms(), 4, window), 1);
        // Nothing new for a whole window: no growth.
        clock.advance(Duration::from_secs(61));
        assert_eq!(trend.observe(clock.now_ms(), 4, window), 0);
    }
}

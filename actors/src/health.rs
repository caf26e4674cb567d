//! Health supervision. Every node keeps a `NodeReport` of itself — its
//! supervision tree (each actor's state, restarts, last error), breakers not
//! closed, background tasks, Raft role and applied index, disk use of its
//! data dir, the DLQ's depth and growth — refreshed every `report_every` and
//! sent with each Registry heartbeat. Any node can therefore judge the whole
//! cluster from its own Registry table (`verdict`), with no fan-out: ok,
//! degraded or critical, with a reason per finding.

use crate::breaker::{BreakerMsg, BreakerState};
use crate::consensus::RaftStatus;
use crate::directory::{call, ChildState};
use crate::node::BREAKERS;
use crate::registry::{PeerHealth, PeerState};
use crate::runtime::Runtime;
use crate::store::now_ms;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What counts as unhealthy.
#[derive(Clone, Debug)]
pub struct HealthConfig {
    /// Restarts are counted over this window…
    pub restart_window: Duration,
    /// …and this many in it make a restart loop.
    pub restart_loop: u32,
    /// A node this many entries behind the most advanced one is lagging.
    pub lag_entries: u64,
    /// The DLQ is growing when it is deeper than this long ago.
    pub dlq_window: Duration,
    pub report_every: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            restart_window: Duration::from_secs(60),
            restart_loop: 3,
            lag_entries: 1_000,
            dlq_window: Duration::from_secs(60),
            report_every: Duration::from_millis(500),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ActorReport {
    pub name: String,
    pub state: String,
    pub restarts: u32,
    /// Restarts within the restart window.
    pub recent_restarts: u32,
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BreakerReport {
    pub capability: String,
    pub state: String,
}

/// One node's health, as it reports itself.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeReport {
    pub node: String,
    pub at_ms: u64,
    pub actors: Vec<ActorReport>,
    /// Breakers that are open or half-open.
    pub breakers: Vec<BreakerReport>,
    /// Background tasks: running attempts, timers, proposals under way.
    pub active_tasks: usize,
    /// Attempts this node's Worker is running.
    pub running_attempts: usize,
    /// Commands waiting in this node's proposal queue.
    pub proposal_queue: usize,
    /// Actions waiting for the leader to place them (cluster-wide).
    pub pending_actions: usize,
    pub raft_role: String,
    pub term: u64,
    pub applied_index: u64,
    pub disk_bytes: u64,
    pub dlq_depth: u64,
    /// Change of the DLQ depth over the DLQ window.
    pub dlq_growth: i64,
    pub draining: bool,
    pub restart_window_ms: u64,
}

/// The latest report of this node, shared with the Registry.
pub type ReportSlot = Arc<RwLock<NodeReport>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Degraded,
    Critical,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Degraded,
    Critical,
}

/// One finding behind a verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Reason {
    pub severity: Severity,
    /// A stable name: no_leader, no_quorum, node_down, node_suspect,
    /// actor_failed, restart_loop, actor_restarting, breaker_open, lagging,
    /// dlq_growing, draining.
    pub kind: &'static str,
    pub node: Option<String>,
    pub message: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct NodeView {
    pub name: String,
    pub state: PeerState,
    pub voter: Option<bool>,
    pub report: Option<NodeReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClusterHealth {
    pub verdict: Verdict,
    pub reasons: Vec<Reason>,
    pub leader: Option<String>,
    pub term: u64,
    /// Judged by this node, from its own Registry's view.
    pub observer: String,
    pub nodes: Vec<NodeView>,
}

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

/// Refreshes `slot` every `config.report_every`, for as long as the node runs.
pub fn spawn_reporter(rt: &Arc<Runtime>, config: HealthConfig, data_dir: PathBuf, slot: ReportSlot) {
    let rt = rt.clone();
    let tasks = rt.tasks.clone();
    tasks.spawn_unique("health:report".into(), async move {
        let mut dlq_samples: VecDeque<(u64, u64)> = VecDeque::new();
        let mut tick = tokio::time::interval(config.report_every);
        loop {
            tick.tick().await;
            let report = build(&rt, &config, &data_dir, &mut dlq_samples).await;
            *slot.write() = report;
        }
    });
}

async fn build(rt: &Runtime, config: &HealthConfig, dir: &Path, dlq: &mut VecDeque<(u64, u64)>) -> NodeReport {
    let now = now_ms();
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
    let breakers = match rt.directory.get::<BreakerMsg>(BREAKERS) {
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
    let pending_actions = rt
        .store
        .active_summaries()
        .map_or(0, |a| a.iter().filter(|a| a.state == crate::domain::ActionState::Pending).count());
    dlq.push_back((now, depth));
    let horizon = now.saturating_sub(config.dlq_window.as_millis() as u64);
    while dlq.len() > 1 && dlq.get(1).is_some_and(|(t, _)| *t <= horizon) {
        dlq.pop_front();
    }
    let oldest = dlq.front().map_or(depth, |(_, d)| *d);
    let dir = dir.to_owned();
    let disk_bytes = tokio::task::spawn_blocking(move || disk_use(&dir)).await.unwrap_or(0);
    NodeReport {
        node: rt.node.clone(),
        at_ms: now,
        actors,
        breakers,
        active_tasks: rt.tasks.len(),
        running_attempts: rt.tasks.count_prefix(crate::pipeline::ATTEMPT_TASK_PREFIX),
        proposal_queue: rt.ledger.consensus().proposer().queued(),
        pending_actions,
        raft_role: raft.role.to_owned(),
        term: raft.term,
        applied_index: raft.applied_index.unwrap_or(0),
        disk_bytes,
        dlq_depth: depth,
        dlq_growth: depth as i64 - oldest as i64,
        draining: rt.store.draining().is_ok_and(|d| d.contains(&rt.node)),
        restart_window_ms: window,
    }
}

/// Judges the cluster from this node's view: its own report, its peers (with
/// the reports their heartbeats carried) and its Raft status.
pub fn verdict(me: &NodeReport, peers: &[PeerHealth], raft: &RaftStatus, config: &HealthConfig) -> ClusterHealth {
    let mut reasons = Vec::new();
    let mut say = |severity, kind, node: Option<&str>, message: String| {
        reasons.push(Reason { severity, kind, node: node.map(str::to_owned), message });
    };
    let voter = |name: &str| raft.members.iter().find(|m| m.name == name).map(|m| m.voter);
    if raft.leader.is_none() {
        say(Severity::Critical, "no_leader", None, "no Raft leader: writes are refused".into());
    }
    let voters = raft.members.iter().filter(|m| m.voter).count();
    let live_voters = raft
        .members
        .iter()
        .filter(|m| m.voter)
        .filter(|m| m.name == me.node || peers.iter().any(|p| p.name == m.name && p.state != PeerState::Down))
        .count();
    if voters > 0 && live_voters * 2 <= voters {
        say(Severity::Critical, "no_quorum", None, format!("only {live_voters} of {voters} voters are up"));
    }
    let mut nodes = vec![NodeView {
        name: me.node.clone(),
        state: PeerState::Up,
        voter: voter(&me.node),
        report: Some(me.clone()),
    }];
    for p in peers {
        let member = voter(&p.name).is_some();
        match p.state {
            PeerState::Down if member => say(
                Severity::Degraded,
                "node_down",
                Some(&p.name),
                format!("{} is down ({} ms silent)", p.name, p.silence_ms),
            ),
            PeerState::Suspect if member => say(
                Severity::Degraded,
                "node_suspect",
                Some(&p.name),
                format!("{} is suspect ({} ms silent)", p.name, p.silence_ms),
            ),
            _ => {}
        }
        nodes.push(NodeView { name: p.name.clone(), state: p.state, voter: voter(&p.name), report: p.report.clone() });
    }
    let live_reports: Vec<&NodeReport> =
        nodes.iter().filter(|n| n.state != PeerState::Down).filter_map(|n| n.report.as_ref()).collect();
    let most_applied = live_reports.iter().map(|r| r.applied_index).max().unwrap_or(0);
    let window_s = config.restart_window.as_secs();
    for r in &live_reports {
        let node = Some(r.node.as_str());
        for a in &r.actors {
            if a.state == "failed" {
                let error = a.last_error.as_deref().unwrap_or("unknown error");
                say(
                    Severity::Critical,
                    "actor_failed",
                    node,
                    format!("actor {} on {} failed: {error}", a.name, r.node),
                );
            } else if a.recent_restarts >= config.restart_loop {
                let error = a.last_error.as_deref().unwrap_or("unknown error");
                let message = format!(
                    "actor {} on {} restarted {} times in the last {window_s} s (restart loop; last error: {error})",
                    a.name, r.node, a.recent_restarts
                );
                say(Severity::Degraded, "restart_loop", node, message);
            } else if a.state == "restarting" {
                say(
                    Severity::Degraded,
                    "actor_restarting",
                    node,
                    format!("actor {} on {} is restarting", a.name, r.node),
                );
            }
        }
        for b in &r.breakers {
            say(
                Severity::Degraded,
                "breaker_open",
                node,
                format!("breaker of {} on {} is {}", b.capability, r.node, b.state),
            );
        }
        let behind = most_applied.saturating_sub(r.applied_index);
        if behind > config.lag_entries {
            say(Severity::Degraded, "lagging", node, format!("{} is {behind} log entries behind", r.node));
        }
        if r.draining {
            say(Severity::Info, "draining", node, format!("{} is draining: nothing new is placed on it", r.node));
        }
    }
    if me.dlq_growth > 0 {
        let message = format!(
            "the DLQ grew by {} to {} in the last {} s",
            me.dlq_growth,
            me.dlq_depth,
            config.dlq_window.as_secs()
        );
        say(Severity::Degraded, "dlq_growing", None, message);
    }
    let verdict = match reasons.iter().map(|r| r.severity).max() {
        Some(Severity::Critical) => Verdict::Critical,
        Some(Severity::Degraded) => Verdict::Degraded,
        _ => Verdict::Ok,
    };
    ClusterHealth { verdict, reasons, leader: raft.leader.clone(), term: raft.term, observer: me.node.clone(), nodes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::MemberStatus;

    fn report(node: &str, applied: u64) -> NodeReport {
        let actor = |name: &str| ActorReport {
            name: name.into(),
            state: "running".into(),
            restarts: 0,
            recent_restarts: 0,
            last_error: None,
        };
        NodeReport {
            node: node.into(),
            actors: vec![actor("executors"), actor("pipeline")],
            applied_index: applied,
            ..NodeReport::default()
        }
    }

    fn peer(name: &str, state: PeerState, report: NodeReport) -> PeerHealth {
        PeerHealth {
            name: name.into(),
            state,
            last_heartbeat_ms: 0,
            silence_ms: 0,
            rejoins: 0,
            joinable: false,
            report: Some(report),
        }
    }

    fn raft(leader: Option<&str>) -> RaftStatus {
        let member = |name: &str| MemberStatus { name: name.into(), voter: true, matched: None, lag: None };
        RaftStatus {
            node: "a".into(),
            role: "leader",
            term: 2,
            leader: leader.map(str::to_owned),
            last_log_index: None,
            applied_index: None,
            snapshot_index: None,
            purged_index: None,
            millis_since_quorum_ack: None,
            members: vec![member("a"), member("b"), member("c")],
        }
    }

    fn kinds(h: &ClusterHealth) -> Vec<&'static str> {
        h.reasons.iter().map(|r| r.kind).collect()
    }

    #[test]
    fn a_healthy_cluster_is_ok() {
        let peers = [peer("b", PeerState::Up, report("b", 10)), peer("c", PeerState::Up, report("c", 10))];
        let h = verdict(&report("a", 10), &peers, &raft(Some("a")), &HealthConfig::default());
        assert_eq!((h.verdict, kinds(&h)), (Verdict::Ok, vec![]));
    }

    #[test]
    fn a_restart_loop_degrades_and_names_the_actor_and_node() {
        let mut b = report("b", 10);
        b.actors[0].recent_restarts = 3;
        b.actors[0].last_error = Some("boom".into());
        let peers = [peer("b", PeerState::Up, b), peer("c", PeerState::Up, report("c", 10))];
        let h = verdict(&report("a", 10), &peers, &raft(Some("a")), &HealthConfig::default());
        assert_eq!((h.verdict, kinds(&h)), (Verdict::Degraded, vec!["restart_loop"]));
        assert_eq!(h.reasons[0].node.as_deref(), Some("b"));
        assert!(h.reasons[0].message.contains("executors") && h.reasons[0].message.contains("boom"));
    }

    #[test]
    fn lost_quorum_or_leader_is_critical_and_a_down_node_degraded() {
        let down = [peer("b", PeerState::Down, report("b", 10)), peer("c", PeerState::Up, report("c", 10))];
        let h = verdict(&report("a", 10), &down, &raft(Some("a")), &HealthConfig::default());
        assert_eq!((h.verdict, kinds(&h)), (Verdict::Degraded, vec!["node_down"]));
        let both = [peer("b", PeerState::Down, report("b", 10)), peer("c", PeerState::Down, report("c", 10))];
        let h = verdict(&report("a", 10), &both, &raft(None), &HealthConfig::default());
        assert_eq!(h.verdict, Verdict::Critical);
        assert!(kinds(&h).contains(&"no_leader") && kinds(&h).contains(&"no_quorum"), "{:?}", kinds(&h));
    }

    #[test]
    fn lag_open_breakers_and_a_growing_dlq_degrade_while_draining_is_only_noted() {
        let mut b = report("b", 10);
        b.breakers.push(BreakerReport { capability: "crm".into(), state: "open".into() });
        let mut c = report("c", 10);
        c.draining = true;
        let mut a = report("a", 5_000);
        a.dlq_growth = 2;
        a.dlq_depth = 7;
        let peers = [peer("b", PeerState::Up, b), peer("c", PeerState::Up, c)];
        let h = verdict(&a, &peers, &raft(Some("a")), &HealthConfig::default());
        let mut k = kinds(&h);
        k.sort_unstable();
        assert_eq!(k, ["breaker_open", "dlq_growing", "draining", "lagging", "lagging"]);
        assert_eq!(h.verdict, Verdict::Degraded);
        let c_only = [peer("b", PeerState::Up, report("b", 10)), peer("c", PeerState::Up, report("c", 10))];
        let mut c = report("a", 10);
        c.draining = true;
        assert_eq!(verdict(&c, &c_only, &raft(Some("a")), &HealthConfig::default()).verdict, Verdict::Ok);
    }
}

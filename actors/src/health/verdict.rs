//! The cluster's health judged from one node's view: pure, so every rule is
//! unit-tested.

use crate::config::HealthConfig;
use crate::consensus::RaftStatus;
use crate::disk::{StorageReport, StorageState};
use crate::registry::{PeerHealth, PeerState};
use crate::report::NodeReport;
use serde::Serialize;

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
    /// dlq_growing, draining, storage_full, storage_failed.
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

/// The findings behind a verdict, as they are found.
#[derive(Default)]
struct Findings(Vec<Reason>);

impl Findings {
    fn say(&mut self, severity: Severity, kind: &'static str, node: Option<&str>, message: String) {
        self.0.push(Reason { severity, kind, node: node.map(str::to_owned), message });
    }
}

/// Judges the cluster from this node's view: its own report, its peers (with
/// the reports their heartbeats carried) and its Raft status.
pub fn verdict(me: &NodeReport, peers: &[PeerHealth], raft: &RaftStatus, config: &HealthConfig) -> ClusterHealth {
    let mut found = Findings::default();
    judge_quorum(&mut found, me, peers, raft);
    let voter = |name: &str| raft.members.iter().find(|m| m.name == name).map(|m| m.voter);
    let mut nodes = vec![NodeView {
        name: me.node.clone(),
        state: PeerState::Up,
        voter: voter(&me.node),
        report: Some(me.clone()),
    }];
    for p in peers {
        judge_peer(&mut found, p, voter(&p.name).is_some());
        nodes.push(NodeView { name: p.name.clone(), state: p.state, voter: voter(&p.name), report: p.report.clone() });
    }
    let live_reports: Vec<&NodeReport> =
        nodes.iter().filter(|n| n.state != PeerState::Down).filter_map(|n| n.report.as_ref()).collect();
    let most_applied = live_reports.iter().map(|r| r.applied_index).max().unwrap_or(0);
    for r in &live_reports {
        judge_report(&mut found, r, most_applied, config);
    }
    if me.dlq_growth > 0 {
        let window_s = config.dlq_window.as_secs();
        let message = format!("the DLQ grew by {} to {} in the last {window_s} s", me.dlq_growth, me.dlq_depth);
        found.say(Severity::Degraded, "dlq_growing", None, message);
    }
    let reasons = found.0;
    let verdict = match reasons.iter().map(|r| r.severity).max() {
        Some(Severity::Critical) => Verdict::Critical,
        Some(Severity::Degraded) => Verdict::Degraded,
        _ => Verdict::Ok,
    };
    ClusterHealth { verdict, reasons, leader: raft.leader.clone(), term: raft.term, observer: me.node.clone(), nodes }
}

/// A leader, and a majority of voters up.
fn judge_quorum(found: &mut Findings, me: &NodeReport, peers: &[PeerHealth], raft: &RaftStatus) {
    if raft.leader.is_none() {
        found.say(Severity::Critical, "no_leader", None, "no Raft leader: writes are refused".into());
    }
    let voters = raft.members.iter().filter(|m| m.voter).count();
    let live_voters = raft
        .members
        .iter()
        .filter(|m| m.voter)
        .filter(|m| m.name == me.node || peers.iter().any(|p| p.name == m.name && p.state != PeerState::Down))
        .count();
    if voters > 0 && live_voters * 2 <= voters {
        found.say(Severity::Critical, "no_quorum", None, format!("only {live_voters} of {voters} voters are up"));
    }
}

/// A member the failure detector does not see up.
fn judge_peer(found: &mut Findings, p: &PeerHealth, member: bool) {
    let (kind, what) = match p.state {
        PeerState::Down if member => ("node_down", "down"),
        PeerState::Suspect if member => ("node_suspect", "suspect"),
        _ => return,
    };
    let message = format!("{} is {what} ({} ms silent)", p.name, p.silence_ms);
    found.say(Severity::Degraded, kind, Some(&p.name), message);
}

/// What one live node's report shows: its actors, breakers, lag, drain.
fn judge_report(found: &mut Findings, r: &NodeReport, most_applied: u64, config: &HealthConfig) {
    let node = Some(r.node.as_str());
    let window_s = config.restart_window.as_secs();
    for a in &r.actors {
        let error = a.last_error.as_deref().unwrap_or("unknown error");
        if a.state == "failed" {
            let message = format!("actor {} on {} failed: {error}", a.name, r.node);
            found.say(Severity::Critical, "actor_failed", node, message);
        } else if a.recent_restarts >= config.restart_loop {
            let message = format!(
                "actor {} on {} restarted {} times in the last {window_s} s (restart loop; last error: {error})",
                a.name, r.node, a.recent_restarts
            );
            found.say(Severity::Degraded, "restart_loop", node, message);
        } else if a.state == "restarting" {
            let message = format!("actor {} on {} is restarting", a.name, r.node);
            found.say(Severity::Degraded, "actor_restarting", node, message);
        }
    }
    for b in &r.breakers {
        let message = format!("breaker of {} on {} is {}", b.capability, r.node, b.state);
        found.say(Severity::Degraded, "breaker_open", node, message);
    }
    let behind = most_applied.saturating_sub(r.applied_index);
    if behind > config.lag_entries {
        found.say(Severity::Degraded, "lagging", node, format!("{} is {behind} log entries behind", r.node));
    }
    judge_storage(found, r);
    if r.draining {
        let message = format!("{} is draining: nothing new is placed on it", r.node);
        found.say(Severity::Info, "draining", node, message);
    }
}

/// A node whose data dir is under its watermark refuses new work; one whose
/// storage failed may not be able to record anything.
fn judge_storage(found: &mut Findings, r: &NodeReport) {
    found.0.extend(storage_reasons(&r.node, &r.storage));
}

/// What a node's storage report shows: nothing, `storage_full` or
/// `storage_failed` (critical both). Also this node's own `/v1/health`.
pub fn storage_reasons(node: &str, s: &StorageReport) -> Vec<Reason> {
    let (kind, message) = match s.state {
        StorageState::Ok => return Vec::new(),
        StorageState::Full => (
            "storage_full",
            format!(
                "{node} has {} bytes free on its data dir, under its {}-byte low watermark: new work is refused",
                s.free_bytes, s.watermark_bytes
            ),
        ),
        StorageState::Failed => {
            let error = s.error.as_deref().unwrap_or("unknown error");
            ("storage_failed", format!("storage of {node} failed: {error}"))
        }
    };
    vec![Reason { severity: Severity::Critical, kind, node: Some(node.to_owned()), message }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::MemberStatus;
    use crate::report::{ActorReport, BreakerReport};

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
            version: crate::version::WIRE,
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
    fn a_full_or_failed_data_dir_is_critical_and_names_the_node() {
        let mut b = report("b", 10);
        b.storage.state = StorageState::Full;
        b.storage.free_bytes = 1_000;
        b.storage.watermark_bytes = 5_000;
        let mut c = report("c", 10);
        c.storage.state = StorageState::Failed;
        c.storage.error = Some("No space left on device".into());
        let peers = [peer("b", PeerState::Up, b), peer("c", PeerState::Up, c)];
        let h = verdict(&report("a", 10), &peers, &raft(Some("a")), &HealthConfig::default());
        assert_eq!((h.verdict, kinds(&h)), (Verdict::Critical, vec!["storage_full", "storage_failed"]));
        assert_eq!(h.reasons[0].node.as_deref(), Some("b"));
        assert!(h.reasons[1].message.contains("No space left"), "{}", h.reasons[1].message);
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

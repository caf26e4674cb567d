//! This node's view of the Raft group, as `GET /v1/cluster` and the health
//! report show it.

use super::{node_id, Consensus};
use crate::version::{Version, WIRE};
use openraft::ServerState;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One member as the Raft status reports it.
#[derive(Clone, Debug, Serialize)]
pub struct MemberStatus {
    pub name: String,
    pub voter: bool,
    /// Last log index known replicated to it (the leader knows; others say null).
    pub matched: Option<u64>,
    /// How far it is behind the leader's last log index.
    pub lag: Option<u64>,
}

/// This node's view of the Raft group.
#[derive(Clone, Debug, Serialize)]
pub struct RaftStatus {
    pub node: String,
    pub role: &'static str,
    pub term: u64,
    pub leader: Option<String>,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    /// Milliseconds since a quorum last acknowledged this leader (leaders only).
    pub millis_since_quorum_ack: Option<u64>,
    pub members: Vec<MemberStatus>,
}

impl Consensus {
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// Leads in its current state: unlike `is_leader`, false for a node that
    /// just restarted with a persisted vote naming itself (it has not won
    /// this term yet). What a sender of side effects outside the log checks.
    pub fn leads(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    pub fn status(&self) -> RaftStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let last = m.last_log_index.unwrap_or(0);
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let matched = m.replication.as_ref().map(|r| r.get(id).and_then(|l| l.map(|l| l.index)).unwrap_or(0));
                MemberStatus {
                    name: node.name.clone(),
                    voter: voters.contains(id),
                    matched,
                    lag: matched.map(|x| last.saturating_sub(x)),
                }
            })
            .collect();
        RaftStatus {
            node: self.name.clone(),
            role: match m.state {
                ServerState::Leader => "leader",
                ServerState::Candidate => "candidate",
                ServerState::Follower => "follower",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            },
            term: m.current_term,
            leader: m.current_leader.and_then(|id| membership.get_node(&id).map(|n| n.name.clone())),
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            millis_since_quorum_ack: m.millis_since_quorum_ack,
            members,
        }
    }

    /// Whether this node has no log yet: it founded no cluster and no leader
    /// has added it, so a leader may add it without conflicting logs.
    pub fn joinable(&self) -> bool {
        self.raft.metrics().borrow().last_log_index.is_none()
    }

    /// Records the wire version `peer` announced (from its heartbeats).
    pub fn heard_version(&self, peer: &str, version: Version) {
        if self.peer_versions.read().get(peer) != Some(&version) {
            self.peer_versions.write().insert(peer.to_owned(), version);
        }
    }

    /// Each member's wire version as this node knows it: its own, and what
    /// its peers last announced (`None` for a member not heard from).
    pub fn member_versions(&self) -> BTreeMap<String, Option<Version>> {
        let members: Vec<String> = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            metrics.membership_config.membership().nodes().map(|(_, m)| m.name.clone()).collect()
        };
        let heard = self.peer_versions.read();
        let version = |name: &str| if name == self.name { Some(WIRE) } else { heard.get(name).copied() };
        members
            .into_iter()
            .map(|name| {
                let v = version(&name);
                (name, v)
            })
            .collect()
    }

    /// The cluster's effective wire version: the lowest of its members'
    /// (`Version::cluster`). What needs a later version is not proposed.
    pub fn cluster_version(&self) -> Version {
        Version::cluster(self.member_versions().into_values())
    }

    /// Whether `name` is a member (voter or learner).
    pub fn is_member(&self, name: &str) -> bool {
        self.raft.metrics().borrow().membership_config.membership().get_node(&node_id(name)).is_some()
    }
}

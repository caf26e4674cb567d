//! Leadership as the rest of the node sees it: `leader.changed` recorded by
//! each new leader, and an election called at once when the leader's
//! process is gone.

use super::{node_id, Consensus};
use crate::command::{Command, Entry};
use crate::domain::EventData;
use crate::ids::CorrelationId;
use openraft::ServerState;
use std::sync::Arc;

impl Consensus {
    /// Records `leader.changed` whenever this node becomes leader (with its
    /// term), and runs until the Raft stops.
    /// The event goes straight into this node's own proposal queue, never
    /// forwarded: a node that only believed it led (a restarted old leader
    /// with a stale term) cannot commit it, so every recorded term is real.
    pub fn watch_leadership(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let mut metrics = self.raft.metrics();
        tokio::spawn(async move {
            let mut seen: Option<(u64, u64)> = None;
            let mut previous: Option<String> = None;
            while metrics.changed().await.is_ok() {
                let Some(consensus) = me.upgrade() else { return };
                let (leader, term, state) = {
                    let m = metrics.borrow();
                    (m.current_leader, m.current_term, m.state)
                };
                let Some(leader) = leader else { continue };
                if seen == Some((leader, term)) {
                    continue;
                }
                seen = Some((leader, term));
                let name = consensus.member_name(leader);
                tracing::info!(node = %consensus.name, leader = ?name, term, "raft leader");
                if state == ServerState::Leader && leader == consensus.id {
                    let data =
                        EventData::LeaderChanged { leader: consensus.name.clone(), term, previous: previous.clone() };
                    let cmd = Command::RecordEvent { correlation_id: CorrelationId("raft:leader".into()), data };
                    let entry = Entry { at_ms: consensus.clock.now_ms(), node: consensus.name.clone(), cmd };
                    let proposer = consensus.proposer.clone();
                    tokio::spawn(async move {
                        if let Err(e) = proposer.write(entry).await {
                            tracing::info!(term, error = ?e, "leadership ended before leader.changed was committed");
                        }
                    });
                }
                previous = name;
            }
        });
    }

    /// The transport lost its session with `peer`. If it was the leader (a
    /// crashed process closes its sockets at once), start an election now
    /// instead of waiting out the leader lease and election timeout. Only an
    /// optimisation: a silent partition is still found by the silence watch
    /// and the timeouts. Both followers elect at once, and that rarely splits:
    /// as candidates they grant each other's vote of the same term by node id,
    /// and openraft's lease check applies only to a follower's committed vote.
    pub fn peer_lost(&self, peer: &str) {
        let m = self.raft.metrics().borrow().clone();
        let was_leader = m.current_leader.is_some_and(|l| l != self.id && l == node_id(peer));
        if was_leader && m.membership_config.membership().voter_ids().any(|v| v == self.id) {
            tracing::info!(node = %self.name, leader = peer, "lost the leader's session; calling an election");
            let raft = self.raft.clone();
            tokio::spawn(async move {
                let _ = raft.trigger().elect().await;
            });
        }
    }

    /// The term in which this node knows `leader` as the leader, waiting up
    /// to `within` for it to learn of a change it asked for (a follower hears
    /// of a new leader, and its term, only at its next heartbeat). After
    /// `within`, the term this node knows.
    pub async fn term_under(&self, leader: &str, within: std::time::Duration) -> u64 {
        let id = node_id(leader);
        match self.raft.wait(Some(within)).metrics(|m| m.current_leader == Some(id), "that leader").await {
            Ok(m) => m.current_term,
            Err(_) => self.raft.metrics().borrow().current_term,
        }
    }
}

//! Topology changes the leader executes: adding a member, and handing
//! leadership to a named voter, and removing a member.
//!
//! openraft 0.9 has no leadership-transfer call, and its followers refuse
//! votes while the leader's lease (the longest election timeout) runs. So the
//! leader makes room for the target: it holds new proposals, waits until the
//! target has everything appended, stops its heartbeats and asks the target
//! to call an election — again once the other voters' leases have run out,
//! before their own election timers or silence watches can fire. Proposals held meanwhile
//! then meet "not leader" and are forwarded to the new leader like any write
//! that reaches a follower.

use super::network::{self, Reply, Request};
use super::proposer::Proposer;
use super::{node_id, unavailable, Consensus, Member, TypeConfig};
use crate::error::WardenError;
use openraft::{ChangeMembers, Raft};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How long the target gets to catch up before a transfer gives up.
const CATCH_UP: Duration = Duration::from_secs(2);
/// How long a transfer waits for the new leader after the second election call.
const ELECTION_BOUND: Duration = Duration::from_secs(3);

/// On the leader: adds `name` as a learner, waits for it to catch up, then
/// makes it a voter. A member already is refused.
pub(crate) async fn add_from(raft: &Raft<TypeConfig>, name: &str) -> crate::Result<()> {
    let id = node_id(name);
    if raft.metrics().borrow().membership_config.membership().get_node(&id).is_some() {
        return Err(WardenError::Conflict(format!("{name} is already a member")));
    }
    let member = Member { name: name.to_owned() };
    raft.add_learner(id, member, true).await.map_err(|e| unavailable(format!("adding {name}: {e}")))?;
    let change = ChangeMembers::AddVoterIds([id].into_iter().collect());
    raft.change_membership(change, false).await.map_err(|e| unavailable(format!("promoting {name}: {e}")))?;
    tracing::info!(member = name, "added a voter");
    Ok(())
}

/// On the leader: hands leadership to voter `target`; returns the new leader.
pub(crate) async fn transfer_from(raft: &Raft<TypeConfig>, proposer: &Proposer, target: &str) -> crate::Result<String> {
    let id = node_id(target);
    let (me, voter, known) = {
        let m = raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        (m.id, membership.voter_ids().any(|v| v == id), membership.get_node(&id).is_some())
    };
    if !known {
        return Err(WardenError::UnknownNode(target.to_owned()));
    }
    if !voter {
        return Err(WardenError::Conflict(format!("{target} is a learner: only a voter can lead")));
    }
    if id == me {
        return Ok(target.to_owned());
    }
    proposer.pause(true);
    let result = hand_over(raft, me, id, target).await;
    raft.runtime_config().heartbeat(true);
    proposer.pause(false);
    result
}

async fn hand_over(raft: &Raft<TypeConfig>, me: u64, id: u64, target: &str) -> crate::Result<String> {
    let last = raft.metrics().borrow().last_log_index.unwrap_or(0);
    let caught_up = raft
        .wait(Some(CATCH_UP))
        .metrics(
            |m| m.replication.as_ref().and_then(|r| r.get(&id).copied().flatten()).is_some_and(|l| l.index >= last),
            "the target caught up",
        )
        .await;
    if caught_up.is_err() {
        return Err(unavailable(format!("{target} did not catch up within {CATCH_UP:?}; leadership stays")));
    }
    // Heartbeats stop only now: the target campaigns at once, so the other
    // followers' silence watch, asking it, finds an election under way.
    raft.runtime_config().heartbeat(false);
    let lease = Duration::from_millis(raft.config().election_timeout_max);
    let started = Instant::now();
    ask_to_elect(target).await?;
    if !stepped_down(raft, me, lease + Duration::from_millis(50)).await {
        // The first call met the other voters' leases; theirs have run out now.
        ask_to_elect(target).await?;
        if !stepped_down(raft, me, ELECTION_BOUND).await {
            return Err(unavailable(format!("no new leader {:?} after asking {target} to lead", started.elapsed())));
        }
    }
    let m = raft
        .wait(Some(ELECTION_BOUND))
        .metrics(|m| m.current_leader.is_some_and(|l| l != me), "a known new leader")
        .await
        .map_err(|_| unavailable("leadership left this node, but no new leader is known yet"))?;
    let leader = m.current_leader.expect("waited for a leader");
    let name = m.membership_config.membership().get_node(&leader).map(|n| n.name.clone()).unwrap_or_default();
    tracing::info!(to = %name, took = ?started.elapsed(), "leadership transferred");
    Ok(name)
}

/// Whether this node (`me`) stopped leading within `within`.
async fn stepped_down(raft: &Raft<TypeConfig>, me: u64, within: Duration) -> bool {
    raft.wait(Some(within)).metrics(|m| m.current_leader != Some(me), "a new leader").await.is_ok()
}

async fn ask_to_elect(target: &str) -> crate::Result<()> {
    match network::call(target, &Request::Elect, Duration::from_secs(1)).await {
        Ok(Reply::Elect(Ok(()))) => Ok(()),
        Ok(Reply::Elect(Err(e))) => Err(unavailable(format!("{target} could not call an election: {e}"))),
        Ok(_) => Err(unavailable("unexpected reply to an election call")),
        Err(e) => Err(unavailable(format!("asking {target} to lead: {e}"))),
    }
}

/// On the leader: removes `name` (voter or learner) from the group, refusing
/// to remove the last voter. The removed node applies the new membership
/// like any follower, and openraft lets only voters call elections.
pub(crate) async fn remove_from(raft: &Raft<TypeConfig>, name: &str) -> crate::Result<()> {
    let id = node_id(name);
    let (known, voters) = {
        let metrics = raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        (membership.get_node(&id).is_some(), membership.voter_ids().collect::<BTreeSet<u64>>())
    };
    if !known {
        return Err(WardenError::UnknownNode(name.to_owned()));
    }
    let change = if voters.contains(&id) {
        if voters.len() == 1 {
            return Err(WardenError::LastVoter(name.to_owned()));
        }
        ChangeMembers::RemoveVoters([id].into_iter().collect())
    } else {
        ChangeMembers::RemoveNodes([id].into_iter().collect())
    };
    raft.change_membership(change, false).await.map_err(|e| unavailable(format!("removing {name}: {e}")))?;
    tracing::info!(member = name, "removed from the raft group");
    Ok(())
}

impl Consensus {
    /// Adds `name` as a learner, waits for it to catch up, then makes it a
    /// voter. Only the leader can; others get `Unavailable`.
    pub async fn add_voter(&self, name: &str) -> crate::Result<()> {
        self::add_from(&self.raft, name).await
    }

    /// Adds `name` as a voter, through the leader.
    pub async fn add_member(&self, name: &str) -> crate::Result<()> {
        let request = Request::Add(name.to_owned());
        let local = || self::add_from(&self.raft, name);
        self.at_leader(request, "adding a member", local, |r| match r {
            Reply::Add(done) => Some(done),
            _ => None,
        })
        .await
    }

    /// Removes `name` from the group (voter or learner), through the leader.
    pub async fn remove_member(&self, name: &str) -> crate::Result<()> {
        let request = Request::Remove(name.to_owned());
        let local = || remove_from(&self.raft, name);
        self.at_leader(request, "removing a member", local, |r| match r {
            Reply::Remove(done) => Some(done),
            _ => None,
        })
        .await
    }

    /// Hands leadership to voter `name` (the leader does it); returns the new leader.
    pub async fn transfer_leadership(&self, name: &str) -> crate::Result<String> {
        let request = Request::Transfer(name.to_owned());
        let local = || self::transfer_from(&self.raft, &self.proposer, name);
        self.at_leader(request, "transferring leadership", local, |r| match r {
            Reply::Transfer(done) => Some(done),
            _ => None,
        })
        .await
    }
}

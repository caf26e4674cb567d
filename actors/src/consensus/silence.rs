//! A silent leader — a frozen process, a partition: its sockets stay open,
//! so nothing tells the followers it is gone — replaced sooner than
//! openraft 0.9's own timer would (its leader lease, the longest election
//! timeout, plus a random election timeout: 0.6–0.7 s with the defaults).
//!
//! Every voter notes when it last heard an append from its leader
//! (`Heard`). A follower that has heard nothing for the lease plus a margin
//! set by its rank among the followers (`due`; the stagger keeps two
//! followers from splitting the vote) asks the other voters how long *they*
//! have not heard the leader — a pre-vote. It calls the election only when a
//! majority, itself included, has not heard the leader for a whole lease:
//! exactly when their votes can be granted. A follower cut off alone from a
//! healthy leader therefore never raises its term through this path, and a
//! granted vote follows within the same round trip.

use super::network::{self, Reply, Request};
use super::Consensus;
use crate::clock::Clock;
use crate::version::{Version, WIRE_SCHEMA};
use openraft::ServerState;
use std::sync::Arc;

/// The first wire version that serves the pre-vote (`Request::Silence`).
const PRE_VOTE_SINCE: Version = Version { major: WIRE_SCHEMA, minor: 1 };
/// How often a follower looks at its leader's silence.
pub(super) const POLL_MS: u64 = 10;
/// Past the lease, before the first-ranked follower asks for votes: the
/// spread between the followers' last heartbeats, so that their leases
/// have run out too when the request arrives.
pub(super) const MARGIN_MS: u64 = 25;
/// Between one follower's turn and the next one's.
pub(super) const STAGGER_MS: u64 = 75;

/// When this node last heard an append from a leader, on the node's clock.
#[derive(Debug)]
pub struct Heard {
    clock: Clock,
    last: parking_lot::Mutex<Option<(u64, u64)>>,
}

impl Heard {
    pub fn new(clock: Clock) -> Self {
        Self { clock, last: parking_lot::Mutex::new(None) }
    }

    /// An append from `leader` arrived now.
    pub fn note(&self, leader: u64) {
        *self.last.lock() = Some((leader, self.clock.now_ms()));
    }

    /// Milliseconds since this node last heard `leader`; `None` if it has not
    /// heard it since it started.
    pub fn silent_ms(&self, leader: u64) -> Option<u64> {
        let last = *self.last.lock();
        match last {
            Some((from, at)) if from == leader => Some(self.clock.now_ms().saturating_sub(at)),
            _ => None,
        }
    }
}

/// Whether a follower of `rank` (0 first) that has not heard its leader for
/// `silent_ms` should ask for votes, with a leader lease of `lease_ms`.
pub(super) fn due(silent_ms: u64, lease_ms: u64, rank: usize) -> bool {
    silent_ms >= lease_ms + MARGIN_MS + rank as u64 * STAGGER_MS
}

/// Whether `agreeing` voters (this node among them) out of `voters` are a majority.
pub(super) fn majority(voters: usize, agreeing: usize) -> bool {
    agreeing * 2 > voters
}

/// This follower's rank among the voters other than `leader`, by id.
pub(super) fn rank(voters: &[u64], leader: u64, me: u64) -> Option<usize> {
    let mut others: Vec<u64> = voters.iter().copied().filter(|&v| v != leader).collect();
    others.sort_unstable();
    others.iter().position(|&v| v == me)
}

/// A silent leader this node may replace: the leader, its term, the voters.
struct Silence {
    leader: u64,
    term: u64,
    voters: Vec<u64>,
}

impl Consensus {
    /// Watches the leader's silence while this node follows, and calls an
    /// election once a majority agrees the leader is gone (see the module
    /// doc). Runs until the Raft stops.
    pub fn watch_silence(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let clock = self.clock.clone();
        tokio::spawn(async move {
            // The (leader, term) this node already called an election against.
            let mut called: Option<(u64, u64)> = None;
            loop {
                let mut next = clock.now_ms() + POLL_MS;
                {
                    let Some(consensus) = me.upgrade() else { return };
                    if consensus.raft.metrics().borrow().running_state.is_err() {
                        return;
                    }
                    if let Some(silence) = consensus.silent_leader() {
                        if called != Some((silence.leader, silence.term)) {
                            if consensus.pre_vote(&silence).await {
                                tracing::warn!(
                                    node = %consensus.name,
                                    leader = ?consensus.member_name(silence.leader),
                                    term = silence.term,
                                    "the leader has been silent past its lease for a majority; calling an election"
                                );
                                called = Some((silence.leader, silence.term));
                                let _ = consensus.raft.trigger().elect().await;
                            } else {
                                // Not yet a majority: ask again after a heartbeat, not every poll.
                                next = clock.now_ms() + consensus.settings.heartbeat.as_millis() as u64;
                            }
                        }
                    }
                }
                clock.sleep_until(next).await;
            }
        });
    }

    /// The leader this voter follows, if its silence is due for this node's rank.
    fn silent_leader(&self) -> Option<Silence> {
        let (leader, term, voters) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            if m.state != ServerState::Follower {
                return None;
            }
            let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
            (m.current_leader?, m.current_term, voters)
        };
        if leader == self.id {
            return None;
        }
        let rank = rank(&voters, leader, self.id)?;
        let silent = self.heard.silent_ms(leader)?;
        due(silent, self.lease_ms(), rank).then_some(Silence { leader, term, voters })
    }

    /// Whether a majority of the voters, this one included, has not heard
    /// `silence.leader` for a whole lease. A peer that does not answer
    /// within a heartbeat does not agree.
    async fn pre_vote(&self, silence: &Silence) -> bool {
        let ttl = self.settings.heartbeat;
        let lease = self.lease_ms();
        let mut asks = tokio::task::JoinSet::new();
        for &v in silence.voters.iter().filter(|&&v| v != self.id && v != silence.leader) {
            let Some(name) = self.member_name(v) else { continue };
            if self.peer_versions.read().get(&name).is_none_or(|&speaks| speaks < PRE_VOTE_SINCE) {
                continue; // it could not read the question: it does not agree
            }
            let request = Request::Silence(silence.leader);
            asks.spawn(async move {
                matches!(network::call(&name, &request, ttl).await, Ok(Reply::Silence(ms)) if ms >= lease)
            });
        }
        let mut agreeing = 1;
        while let Some(answer) = asks.join_next().await {
            agreeing += usize::from(answer.unwrap_or(false));
        }
        majority(silence.voters.len(), agreeing)
    }

    fn lease_ms(&self) -> u64 {
        self.settings.election_timeout.1.as_millis() as u64
    }
}

/// The answer to a peer's pre-vote about `leader`: how long this node has not
/// heard it — 0 while this node leads or campaigns itself (an election is
/// under way: a leadership transfer's target, or a follower ranked before
/// the asker); how long it has not heard the other leader it follows, if
/// any; `u64::MAX` if it never heard the one it is asked about.
pub(super) fn silence_of(raft: &openraft::Raft<super::TypeConfig>, heard: &Heard, leader: u64, me: u64) -> u64 {
    let (state, current) = {
        let m = raft.metrics();
        let m = m.borrow();
        (m.state, m.current_leader)
    };
    match (state, current) {
        (ServerState::Leader | ServerState::Candidate, _) => 0,
        (ServerState::Follower, Some(l)) if l != leader && l != me => heard.silent_ms(l).unwrap_or(u64::MAX),
        _ => heard.silent_ms(leader).unwrap_or(u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn followers_take_turns_after_the_lease() {
        let lease = 400;
        assert!(!due(lease + MARGIN_MS - 1, lease, 0));
        assert!(due(lease + MARGIN_MS, lease, 0));
        assert!(!due(lease + MARGIN_MS + STAGGER_MS - 1, lease, 1));
        assert!(due(lease + MARGIN_MS + STAGGER_MS, lease, 1));
    }

    #[test]
    fn ranks_leave_the_leader_out_and_follow_ids() {
        let voters = [30, 10, 20];
        assert_eq!(rank(&voters, 10, 20), Some(0));
        assert_eq!(rank(&voters, 10, 30), Some(1));
        assert_eq!(rank(&voters, 20, 10), Some(0));
        assert_eq!(rank(&voters, 10, 99), None, "a learner has no rank");
    }

    #[test]
    fn a_majority_counts_this_node() {
        assert!(!majority(3, 1), "alone of three: a follower cut off from a healthy leader");
        assert!(majority(3, 2));
        assert!(!majority(4, 2));
        assert!(majority(5, 3));
    }

    #[test]
    fn silence_is_counted_from_the_last_append_of_that_leader() {
        let clock = Clock::manual(1_000);
        let heard = Heard::new(clock.clone());
        assert_eq!(heard.silent_ms(7), None);
        heard.note(7);
        clock.advance(Duration::from_millis(420));
        assert_eq!(heard.silent_ms(7), Some(420));
        assert_eq!(heard.silent_ms(8), None, "another leader was never heard");
        heard.note(8);
        assert_eq!(heard.silent_ms(8), Some(0));
        assert_eq!(heard.silent_ms(7), None);
    }
}

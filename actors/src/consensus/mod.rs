//! Replicated state: the deterministic state machine behind openraft's log.
//!
//! - `log_store`: openraft's log in redb (group commit by a writer thread).
//! - `state_machine`: committed entries → `StateMachine::apply`; snapshots.
//! - `network`: Raft RPCs and forwarded writes over the cluster transport.
//!
//! `Consensus` is what the rest of warden sees: `propose` a command on any
//! node (a follower forwards it to the leader) and get its outcome once it
//! is committed by a majority and applied here; `read_barrier` for reads
//! that must be fresh; membership changes; and the Raft status.

mod log_store;
mod network;
mod proposer;
mod state_machine;
mod topology;

pub use log_store::LogStore;
pub use network::{rpc_actor_name, RaftRpc, RaftRpcArgs, RaftRpcMsg, RAFT_GROUP};
pub use proposer::{Proposer, Refused};
pub use state_machine::StateStore;

use crate::command::{Command, Entry, Response};
use crate::domain::{Action, Event, EventData};
use crate::error::WardenError;
use crate::ids::{ActionId, CorrelationId};
use crate::limits::{EVENT_BROADCAST_CAPACITY, SNAPSHOT_CHUNK_BYTES};
use crate::store::{now_ms, Applied, Durability};
use network::{Forwarded, Reply, Request};
use openraft::error::RaftError;
use openraft::{ChangeMembers, Raft, ServerState, SnapshotPolicy};
use parking_lot::Mutex;
use redb::Database;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, oneshot, watch};

/// What applying one command produced, as the proposer receives it.
pub type Outcome = Result<Response, WardenError>;

/// A Raft member: the node's name (its id is derived from it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
}

openraft::declare_raft_types!(
    /// warden's Raft: batches of commands in (see `proposer`), their outcomes out, members named.
    pub TypeConfig:
        D = Vec<Entry>,
        R = Vec<Outcome>,
        NodeId = u64,
        Node = Member,
);

pub type RaftEntry = openraft::Entry<TypeConfig>;

/// A node's Raft id: the first 8 bytes of the SHA-256 of its name, so every
/// node derives every other node's id without coordination.
pub fn node_id(name: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(name.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 digest has 32 bytes"))
}

fn io_error(msg: &str) -> std::io::Error {
    std::io::Error::other(msg.to_owned())
}

fn read_error(e: WardenError) -> openraft::StorageError<u64> {
    openraft::StorageError::IO { source: openraft::StorageIOError::read(&e) }
}

fn write_error(e: WardenError) -> openraft::StorageError<u64> {
    openraft::StorageError::IO { source: openraft::StorageIOError::write(&e) }
}

/// Raft timing and bootstrap. openraft lets a follower elect only after the
/// leader lease (the longest election timeout) plus a random election
/// timeout without heartbeats: 0.9–1.2 s with the defaults, when a leader
/// goes silent. (openraft also bounds each AppendEntries RPC by the
/// heartbeat interval, so a heartbeat much under 100 ms times out appends
/// on a loaded machine.) A leader whose process dies closes its sessions, and the
/// followers then call an election at once (`peer_lost`): about one election
/// timeout. etcd's reference: 100 ms heartbeat, 1 s election timeout.
#[derive(Clone, Debug)]
pub struct RaftSettings {
    /// The initial voters of a new cluster, by name. `None`: this node does
    /// not found a cluster, it waits to be added by the leader of one.
    /// `Some(empty)` founds a cluster of this node alone.
    pub bootstrap: Option<Vec<String>>,
    pub heartbeat: Duration,
    pub election_timeout: (Duration, Duration),
    /// A snapshot is built after this many entries since the last one. It
    /// copies the whole state, so it should be rare next to the state's size.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot, for followers slightly behind.
    pub keep_behind_snapshot: u64,
    /// How long a proposal may wait for a leader and its commit.
    pub write_timeout: Duration,
    /// The leader adds any node of the transport that is up and not a member.
    pub auto_join: bool,
}

impl Default for RaftSettings {
    fn default() -> Self {
        Self {
            bootstrap: Some(Vec::new()),
            heartbeat: Duration::from_millis(100),
            election_timeout: (Duration::from_millis(300), Duration::from_millis(600)),
            snapshot_every: 50_000,
            keep_behind_snapshot: 1_000,
            write_timeout: Duration::from_secs(5),
            auto_join: true,
        }
    }
}

type Waiters = Mutex<HashMap<ActionId, Vec<oneshot::Sender<Action>>>>;

/// Where applied entries are announced on this node: committed events for
/// live subscribers, actions that became terminal for their waiters, and the
/// applied log index for proposers waiting to read their own write.
pub struct Hub {
    events: broadcast::Sender<Arc<Event>>,
    waiters: Waiters,
    applied: watch::Sender<u64>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            events: broadcast::channel(EVENT_BROADCAST_CAPACITY).0,
            waiters: Waiters::default(),
            applied: watch::channel(0).0,
        }
    }
}

impl Hub {
    fn publish(&self, applied: Applied) {
        if self.events.receiver_count() > 0 {
            for event in applied.events {
                let _ = self.events.send(Arc::new(event));
            }
        }
        if let Some(action) = applied.terminal {
            for tx in self.waiters.lock().remove(&action.id).unwrap_or_default() {
                let _ = tx.send(action.clone());
            }
        }
    }

    fn applied_to(&self, index: u64) {
        self.applied.send_replace(index);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    pub fn watch_terminal(&self, id: &ActionId) -> oneshot::Receiver<Action> {
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().entry(id.clone()).or_default().push(tx);
        rx
    }

    pub fn forget_waiters(&self, id: &ActionId) {
        let mut waiters = self.waiters.lock();
        if let Some(list) = waiters.get_mut(id) {
            list.retain(|tx| !tx.is_closed());
            if list.is_empty() {
                waiters.remove(id);
            }
        }
    }

    /// Waits until this node has applied the log up to `index`.
    async fn applied_at_least(&self, index: u64, within: Duration) -> Result<(), WardenError> {
        let mut rx = self.applied.subscribe();
        let reached =
            tokio::time::timeout(within, rx.wait_for(|applied| *applied >= index)).await.is_ok_and(|r| r.is_ok());
        match reached {
            true => Ok(()),
            false => Err(WardenError::Unavailable(format!(
                "committed at log index {index}, but this node has not applied it within {within:?}"
            ))),
        }
    }
}

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

/// Where a request that needs the leader is served.
enum Route {
    Here,
    Leader { id: u64, name: String },
}

pub struct Consensus {
    raft: Raft<TypeConfig>,
    proposer: Proposer,
    name: String,
    id: u64,
    hub: Arc<Hub>,
    log: LogStore,
    settings: RaftSettings,
}

fn unavailable(e: impl std::fmt::Display) -> WardenError {
    WardenError::Unavailable(e.to_string())
}

impl Consensus {
    /// Opens the log and state machine in `db` and starts this node's Raft.
    pub async fn start(
        db: Arc<Database>,
        name: &str,
        durability: Durability,
        settings: RaftSettings,
    ) -> crate::Result<Arc<Self>> {
        let hub = Arc::new(Hub::default());
        let log = LogStore::open(db.clone(), name, durability)?;
        let machine = StateStore::open(db, log.clone(), hub.clone())?;
        let config = openraft::Config {
            cluster_name: "warden".into(),
            heartbeat_interval: settings.heartbeat.as_millis() as u64,
            election_timeout_min: settings.election_timeout.0.as_millis() as u64,
            election_timeout_max: settings.election_timeout.1.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_every),
            max_in_snapshot_log_to_keep: settings.keep_behind_snapshot,
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
            max_payload_entries: 512,
            ..openraft::Config::default()
        };
        let config = Arc::new(config.validate().map_err(|e| WardenError::BadInput(format!("raft settings: {e}")))?);
        let id = node_id(name);
        let raft = Raft::new(id, config, network::Network, log.clone(), machine)
            .await
            .map_err(|e| unavailable(format!("raft did not start: {e}")))?;
        let proposer = Proposer::start(raft.clone());
        let consensus = Arc::new(Self { raft, proposer, name: name.to_owned(), id, hub, log, settings });
        consensus.bootstrap().await?;
        Ok(consensus)
    }

    async fn bootstrap(&self) -> crate::Result<()> {
        let Some(voters) = &self.settings.bootstrap else { return Ok(()) };
        if self.raft.is_initialized().await.map_err(unavailable)? {
            return Ok(());
        }
        let mut names: BTreeSet<String> = voters.iter().cloned().collect();
        if names.is_empty() {
            names.insert(self.name.clone());
        }
        if !names.contains(&self.name) {
            return Err(WardenError::BadInput(format!(
                "bootstrap voters {names:?} do not include this node ({})",
                self.name
            )));
        }
        let members: BTreeMap<u64, Member> = names.into_iter().map(|n| (node_id(&n), Member { name: n })).collect();
        tracing::info!(node = %self.name, voters = ?members.values().map(|m| &m.name).collect::<Vec<_>>(), "founding a raft cluster");
        match self.raft.initialize(members).await {
            // Every founder calls this with the same voters; a vote from another may already have started it.
            Ok(()) | Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(unavailable(format!("raft bootstrap failed: {e}"))),
        }
    }

    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    pub fn proposer(&self) -> &Proposer {
        &self.proposer
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn settings(&self) -> &RaftSettings {
        &self.settings
    }

    /// The name of the member with Raft id `id`.
    fn member_name(&self, id: u64) -> Option<String> {
        let metrics = self.raft.metrics();
        let name = metrics.borrow().membership_config.membership().get_node(&id).map(|m| m.name.clone());
        name
    }

    /// Where a request that needs the leader goes, waiting for a leader
    /// (and for its name to be known) until `deadline`.
    async fn route(&self, deadline: Instant) -> crate::Result<Route> {
        loop {
            let leader = self.leader(deadline).await?;
            if leader == self.id {
                return Ok(Route::Here);
            }
            match self.member_name(leader) {
                Some(name) => return Ok(Route::Leader { id: leader, name }),
                None => self.await_leader_change(leader, deadline).await?,
            }
        }
    }

    /// The current leader, waiting for one until `deadline`.
    async fn leader(&self, deadline: Instant) -> crate::Result<u64> {
        let within = deadline.saturating_duration_since(Instant::now());
        let metrics = self
            .raft
            .wait(Some(within))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
            .map_err(|_| unavailable(format!("no raft leader within {within:?} (is a majority of nodes up?)")))?;
        Ok(metrics.current_leader.expect("waited for a leader"))
    }

    /// Appends `entry` through the leader and returns its outcome once it is
    /// committed and applied on this node. An error means it was not
    /// acknowledged: either it was surely not appended, or (timeouts) its
    /// fate is unknown; it is never reported as done when it was not.
    pub async fn propose(&self, entry: Entry) -> crate::Result<Response> {
        let deadline = Instant::now() + self.settings.write_timeout;
        loop {
            let route = self.route(deadline).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            let (leader, target) = match route {
                Route::Here => {
                    self.refuse_without_quorum()?;
                    match tokio::time::timeout(left, self.proposer.write(entry.clone())).await {
                        Ok(Ok((outcome, _))) => return outcome,
                        Ok(Err(Refused::NotLeader)) => {
                            self.await_leader_change(self.id, deadline).await?;
                            continue;
                        }
                        Ok(Err(Refused::Failed(e))) => return Err(unavailable(format!("write failed: {e}"))),
                        Err(_) => return Err(self.not_committed(left)),
                    }
                }
                Route::Leader { id, name } => (id, name),
            };
            match network::call(&target, &Request::Forward(entry.clone()), left).await {
                Ok(Reply::Forward(Forwarded::Committed { outcome, index })) => {
                    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
                    self.hub.applied_at_least(index, left).await?;
                    return outcome;
                }
                Ok(Reply::Forward(Forwarded::NotLeader)) | Err(network::CallError::NoRoute(_)) => {
                    // Nothing was appended: try again once the leader is known anew.
                    self.await_leader_change(leader, deadline).await?;
                }
                Ok(Reply::Forward(Forwarded::Failed(e))) => {
                    return Err(unavailable(format!("write failed on the leader: {e}")))
                }
                Ok(_) => return Err(unavailable("the leader sent an unexpected reply")),
                Err(network::CallError::Timeout(..)) => return Err(self.not_committed(left)),
                Err(network::CallError::Lost(_)) => {
                    return Err(unavailable(
                        "the session to the leader closed before it answered (the write may still commit)",
                    ))
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
    }

    fn not_committed(&self, waited: Duration) -> WardenError {
        unavailable(format!(
            "the write was not committed within {waited:?}: no quorum reachable? (it may still commit later)"
        ))
    }

    /// A leader that has not heard from a quorum for an election timeout is
    /// probably cut off: refuse at once rather than time out.
    fn refuse_without_quorum(&self) -> crate::Result<()> {
        let since = self.raft.metrics().borrow().millis_since_quorum_ack;
        // Twice the longest election timeout: past it, the others may have elected a new leader.
        let limit = 2 * self.settings.election_timeout.1.as_millis() as u64;
        match since {
            Some(ms) if ms > limit => Err(unavailable(format!(
                "this node leads but no quorum has acknowledged it for {ms} ms (partitioned?)"
            ))),
            _ => Ok(()),
        }
    }

    /// Waits (briefly) until the known leader is no longer `old`.
    async fn await_leader_change(&self, old: u64, deadline: Instant) -> crate::Result<()> {
        let within = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(200));
        let _ = self.raft.wait(Some(within)).metrics(|m| m.current_leader != Some(old), "a new leader").await;
        if Instant::now() >= deadline {
            return Err(unavailable("no reachable raft leader (is a majority of nodes up?)"));
        }
        Ok(())
    }

    /// Makes the reads that follow linearizable: waits until this node has
    /// applied everything the leader had committed when asked.
    pub async fn read_barrier(&self) -> crate::Result<()> {
        let deadline = Instant::now() + self.settings.write_timeout;
        loop {
            let route = self.route(deadline).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            let Route::Leader { id, name } = route else {
                return match tokio::time::timeout(left, self.raft.ensure_linearizable()).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(unavailable(format!("read barrier: {e}"))),
                    Err(_) => Err(unavailable("read barrier: the leader could not confirm its leadership")),
                };
            };
            match network::call(&name, &Request::ReadIndex, left).await {
                Ok(Reply::ReadIndex(Ok(index))) => {
                    return self.hub.applied_at_least(index, left.max(Duration::from_secs(1))).await
                }
                // Asking again changes nothing: retry while the leader is not reachable or not leading.
                Ok(Reply::ReadIndex(Err(_))) | Err(network::CallError::NoRoute(_) | network::CallError::Lost(_)) => {
                    self.await_leader_change(id, deadline).await?
                }
                Ok(_) => return Err(unavailable("the leader sent an unexpected reply")),
                Err(e) => return Err(unavailable(format!("read barrier: {e}"))),
            }
        }
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
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

    /// Whether `name` is a member (voter or learner).
    pub fn is_member(&self, name: &str) -> bool {
        self.raft.metrics().borrow().membership_config.membership().get_node(&node_id(name)).is_some()
    }

    /// Adds `name` as a learner, waits for it to catch up, then makes it a
    /// voter. Only the leader can; others get `Unavailable`.
    pub async fn add_voter(&self, name: &str) -> crate::Result<()> {
        topology::add_from(&self.raft, name).await
    }

    /// Adds `name` as a voter, through the leader.
    pub async fn add_member(&self, name: &str) -> crate::Result<()> {
        let request = Request::Add(name.to_owned());
        let local = || topology::add_from(&self.raft, name);
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
        let local = || topology::transfer_from(&self.raft, &self.proposer, name);
        self.at_leader(request, "transferring leadership", local, |r| match r {
            Reply::Transfer(done) => Some(done),
            _ => None,
        })
        .await
    }

    /// Runs `local` if this node leads, else sends `request` to the leader.
    async fn at_leader<T, F, Fut>(
        &self,
        request: Request,
        what: &str,
        local: F,
        unwrap: fn(Reply) -> Option<crate::Result<T>>,
    ) -> crate::Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = crate::Result<T>>,
    {
        let deadline = Instant::now() + self.settings.write_timeout;
        loop {
            let route = self.route(deadline).await?;
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(10));
            let Route::Leader { id, name: leader } = route else { return local().await };
            match network::call(&leader, &request, left).await {
                Ok(reply) => {
                    return unwrap(reply).unwrap_or_else(|| Err(unavailable("the leader sent an unexpected reply")))
                }
                Err(network::CallError::NoRoute(_)) => self.await_leader_change(id, deadline).await?,
                Err(e) => return Err(unavailable(format!("{what}: {e}"))),
            }
        }
    }

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
                    let entry = Entry { at_ms: now_ms(), node: consensus.name.clone(), cmd };
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
    /// optimisation: a silent partition is still found by the timeouts.
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

    /// Stops Raft and persists what the log writer holds.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not shut down cleanly");
        }
        self.log.close().await;
    }
}

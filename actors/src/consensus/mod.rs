//! Replicated state: the deterministic state machine behind openraft's log.
//!
//! - `types`: openraft's type configuration (`TypeConfig`, `Member`, ids).
//! - `settings`: `RaftSettings` (timing, bootstrap) and `Durability`.
//! - `log_store`: openraft's log in redb (group commit by a writer thread).
//! - `state_machine`: committed entries → `StateMachine::apply`; snapshots.
//! - `hub`: where applied entries are announced (events, terminal actions, applied index).
//! - `proposer`: group commit of client writes into Raft entries.
//! - `routing`: writes and read barriers served by the leader, here or forwarded.
//! - `membership`: add, remove, leadership transfer (executed by the leader).
//! - `leadership`: `leader.changed` events, elections on the leader's loss.
//! - `silence`: a silent (frozen, cut off) leader replaced once its lease is
//!   over for a majority (pre-vote), before openraft's own timer.
//! - `status`: this node's view of the group.
//! - `replay`: rebuilding state from the log (what the determinism test does).
//! - `network`: the client side of Raft RPCs over the cluster transport;
//!   `rpc`: the `RaftRpc` actor that serves them.
//!
//! `Consensus` is what the rest of warden sees: `propose` a command on any
//! node (a follower forwards it to the leader) and get its outcome once it
//! is committed by a majority and applied here; `read_barrier` for reads
//! that must be fresh; membership changes; and the Raft status.

mod hub;
mod leadership;
mod log_store;
mod membership;
mod network;
mod proposer;
mod replay;
mod routing;
mod rpc;
mod settings;
mod silence;
mod state_machine;
mod status;
mod types;

pub use hub::Hub;
pub use log_store::LogStore;
pub use network::RaftRpcMsg;
pub use network::{rpc_actor_name, RAFT_GROUP};
pub use proposer::{Proposer, Refused};
pub use replay::{log_entries, replay_log};
pub use rpc::{child as rpc_child, RaftRpc, RaftRpcArgs};
pub use settings::{Durability, RaftSettings};
pub use state_machine::StateStore;
pub use status::{MemberStatus, RaftStatus};
pub use types::{node_id, Member, Outcome, RaftEntry, TypeConfig};

use crate::clock::Clock;
use crate::disk::StorageGate;
use crate::error::WardenError;
use crate::limits::SNAPSHOT_CHUNK_BYTES;
use openraft::error::RaftError;
use openraft::{Raft, SnapshotPolicy};
use redb::Database;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use types::{io_error, read_error, unavailable, write_error};

pub struct Consensus {
    raft: Raft<TypeConfig>,
    proposer: Proposer,
    name: String,
    id: u64,
    hub: Arc<Hub>,
    log: LogStore,
    settings: RaftSettings,
    clock: Clock,
    /// This node's storage condition: admission asks it, the log writer reports to it.
    storage: Arc<StorageGate>,
    /// The wire version each peer last announced in its heartbeats (Registry).
    peer_versions: parking_lot::RwLock<BTreeMap<String, crate::version::Version>>,
    /// When an append from a leader last arrived (`RaftRpc` notes it).
    heard: Arc<silence::Heard>,
}

impl Consensus {
    /// Opens the log and state machine in `db` and starts this node's Raft.
    pub async fn start(
        db: Arc<Database>,
        name: &str,
        durability: Durability,
        settings: RaftSettings,
        clock: Clock,
        archive: Arc<crate::store::Archive>,
    ) -> crate::Result<Arc<Self>> {
        let hub = Arc::new(Hub::default());
        let storage = Arc::new(StorageGate::new(clock.clone()));
        let log = LogStore::open(db.clone(), name, durability, storage.clone())?;
        let machine = StateStore::open(db, log.clone(), hub.clone(), storage.clone(), archive)?;
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
        let consensus = Arc::new(Self {
            raft,
            proposer,
            name: name.to_owned(),
            id,
            hub,
            log,
            settings,
            heard: Arc::new(silence::Heard::new(clock.clone())),
            clock,
            storage,
            peer_versions: Default::default(),
        });
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

    /// This node's storage condition (free space against the watermark, failures).
    pub fn storage(&self) -> &Arc<StorageGate> {
        &self.storage
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

    /// Stops Raft and persists what the log writer holds.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not shut down cleanly");
        }
        self.log.close().await;
    }
}

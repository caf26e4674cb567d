//! What a node says of its own health: plain data, refreshed by the
//! reporter and carried by every Registry heartbeat.

use crate::disk::StorageReport;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

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
    /// The data dir's free space against its watermark, and storage failures.
    #[serde(default)]
    pub storage: StorageReport,
    /// The hash of the policy this node decides with.
    #[serde(default)]
    pub policy_hash: String,
}

/// The latest report of this node, shared with the Registry.
pub type ReportSlot = Arc<RwLock<NodeReport>>;

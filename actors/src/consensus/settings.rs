//! How this node's Raft runs: timing, bootstrap, and whether commits wait for fsync.

use std::time::Duration;

/// Whether a commit waits for fsync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync before acknowledging (the default).
    #[default]
    Durable,
    /// Acknowledge after the in-memory commit; for benchmarks of the fsync cost.
    Volatile,
}

/// Raft timing and bootstrap. openraft lets a follower elect on its own only
/// after the leader lease (the longest election timeout) plus a random
/// election timeout without heartbeats: 0.6–0.7 s with the defaults. Before
/// that, the silence watch (`silence`) calls an election once a majority has
/// not heard the leader for the lease: about 0.4 s after a leader freezes.
/// (openraft also bounds each AppendEntries RPC by the heartbeat interval,
/// so a heartbeat much under 100 ms times out appends on a loaded machine.)
/// A leader whose process dies closes its sessions, and the followers then
/// call an election at once (`peer_lost`). etcd's reference: 100 ms
/// heartbeat, 1 s election timeout.
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
            election_timeout: (Duration::from_millis(250), Duration::from_millis(350)),
            snapshot_every: 50_000,
            keep_behind_snapshot: 1_000,
            write_timeout: Duration::from_secs(5),
            auto_join: true,
        }
    }
}

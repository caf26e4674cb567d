//! Every bound warden enforces, in one place, so none is a magic number.

/// Most attempts a capability may configure.
pub const MAX_ATTEMPTS: u32 = 20;
/// Log operations written (and fsync'd) in one transaction at most, and
/// commands gathered into one Raft entry at most.
pub const MAX_COMMIT_BATCH: usize = 2_048;
/// A Raft entry stops gathering commands past this many encoded bytes.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Proposals waiting for the next Raft entry before proposers wait.
pub const PROPOSAL_QUEUE: usize = 16_384;
/// Non-terminal actions in the cluster before submissions are refused.
pub const MAX_ACTIVE_ACTIONS: u64 = 50_000;
/// Attempts the dispatcher keeps running on one executor node at a time;
/// further pending actions wait at the leader (back-pressure).
pub const MAX_INFLIGHT_PER_EXECUTOR: usize = 1_024;
/// Largest serialized args an action may carry.
pub const MAX_ARGS_BYTES: usize = 256 * 1024;
/// Largest serialized tool result an attempt keeps (an MCP tool's result,
/// replicated with the attempt so any node can hand it back).
pub const MAX_RESULT_BYTES: usize = 256 * 1024;
/// Largest serialized memory value.
pub const MAX_MEMORY_VALUE_BYTES: usize = 256 * 1024;
/// Most tags on one memory item.
pub const MAX_TAGS: usize = 32;
/// Most items one recall or timeline query returns.
pub const MAX_QUERY_LIMIT: usize = 10_000;
/// Default page size of recall and timeline queries.
pub const DEFAULT_QUERY_LIMIT: usize = 100;
/// Committed events buffered for live subscribers before slow ones lag.
pub const EVENT_BROADCAST_CAPACITY: usize = 8_192;
/// Longest backoff between retries, whatever the capability says.
pub const MAX_BACKOFF_MS: u64 = 60_000;
/// How long a caller waits on an actor before calling it unavailable.
pub const ACTOR_CALL_TIMEOUT_MS: u64 = 10_000;
/// Largest encoded Raft RPC sent in one cluster frame (ractor_cluster drops
/// a session on a frame over 16 MiB); larger append batches are split.
pub const MAX_RPC_PAYLOAD_BYTES: usize = 8 * 1024 * 1024;
/// Snapshot chunk size of Raft's InstallSnapshot RPC.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1024 * 1024;

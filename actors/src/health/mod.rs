//! Health supervision. Every node keeps a `NodeReport` of itself — its
//! supervision tree (each actor's state, restarts, last error), breakers not
//! closed, background tasks, Raft role and applied index, disk use of its
//! data dir, the DLQ's depth and growth — refreshed every `report_every` and
//! sent with each Registry heartbeat. Any node can therefore judge the whole
//! cluster from its own Registry table (`verdict`), with no fan-out: ok,
//! degraded or critical, with a reason per finding.
//!
//! `NodeReport`, what a node says of itself, is plain data in `crate::report`
//! (the runtime and the Registry hold it without depending on this module).
//!
//! - `reporter`: the task that refreshes this node's report.
//! - `storage`: the task that checks the data dir's free space against its
//!   low watermark (`disk::StorageGate`).
//! - `verdict`: the pure judgement of the cluster from one node's view.

mod reporter;
mod storage;
mod verdict;

pub use crate::config::HealthConfig;
pub use crate::report::{ActorReport, BreakerReport, NodeReport, ReportSlot};
pub use reporter::{spawn_reporter, DlqTrend};
pub use storage::spawn_storage_watch;
pub use verdict::{storage_reasons, verdict, ClusterHealth, NodeView, Reason, Severity, Verdict};

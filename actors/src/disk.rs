//! The data dir's storage as an expected condition: free space against a
//! low watermark, and the failures redb reports. `StorageGate` is the one
//! place that knows both; admission asks it before new work is proposed
//! (`admit`), the health reporter shows it (`report`), and a writer that
//! fails tells it (`failed`) and logs only when it says so — one line per
//! distinct failure per `FAILURE_LOG_INTERVAL_MS`, not one per batch.
//!
//! Below the watermark a node refuses new work (turns, model calls, memory
//! writes, actions, DLQ replays) with `storage_full` while it still records
//! what already-admitted work needs: confirmations, dispatches, attempt
//! results, expiries, node-level events. That work is bounded
//! (`MAX_ACTIVE_ACTIONS`), so the headroom the watermark keeps absorbs it.

use crate::clock::Clock;
use crate::command::Command;
use crate::error::{Result, WardenError};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// A distinct storage failure is logged at most once in this long.
pub const FAILURE_LOG_INTERVAL_MS: u64 = 60_000;
/// Once below the watermark, admission resumes only when free space is this
/// share (in percent) of the watermark above it, so a node near the line
/// does not flap between refusing and admitting.
pub const RECOVERY_MARGIN_PERCENT: u64 = 10;
/// The state's size (rows and bytes per table) is measured this often
/// unless `[storage] size_every_ms` says otherwise.
pub const DEFAULT_STATE_SIZE_EVERY_MS: u64 = 30_000;

/// The free-space low watermark of the data dir's file system: the smaller
/// of `min_free_bytes` and `min_free_percent` of the file system's size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watermark {
    pub min_free_bytes: u64,
    pub min_free_percent: u64,
}

impl Default for Watermark {
    /// 1 GiB or 5 %, whichever is smaller (docs/operations.md, "Disk full").
    fn default() -> Self {
        Self { min_free_bytes: 1 << 30, min_free_percent: 5 }
    }
}

impl Watermark {
    /// The free bytes under which a file system of `total_bytes` refuses new work.
    pub fn threshold(&self, total_bytes: u64) -> u64 {
        let share = (total_bytes as u128 * self.min_free_percent.min(100) as u128 / 100) as u64;
        share.min(self.min_free_bytes)
    }
}

/// What statvfs says of a file system, as an unprivileged process may use it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FreeSpace {
    /// Bytes available to this process (`f_bavail`: without the root reserve).
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// Free space of the file system holding `path`.
pub fn free_space(path: &Path) -> std::io::Result<FreeSpace> {
    let s = rustix::fs::statvfs(path)?;
    Ok(FreeSpace {
        free_bytes: s.f_bavail.saturating_mul(s.f_frsize),
        total_bytes: s.f_blocks.saturating_mul(s.f_frsize),
    })
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageState {
    #[default]
    Ok,
    /// Free space is below the watermark: new work is refused.
    Full,
    /// A Raft log write failed (redb reported an I/O error): nothing is
    /// proposed until the node is restarted.
    Failed,
}

/// One table of the data dir's redb file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSize {
    pub table: String,
    pub rows: u64,
    /// What its rows, its branch pages and its fragmentation take in the file.
    pub bytes: u64,
}

/// How much a node's archive holds (`store::archive`; `/v1/health`, `/metrics`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveSize {
    pub segments: u64,
    pub bytes: u64,
    pub events: u64,
    /// The oldest archived event, if any.
    pub oldest_seq: Option<u64>,
    pub oldest_ts: Option<u64>,
    /// The newest archived event: the retained timeline starts after it.
    pub newest_seq: Option<u64>,
}

/// The state's size, measured every `[storage] size_every_ms` (walking
/// every table costs a read of the file, so not at every report).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSize {
    pub tables: Vec<TableSize>,
    /// Time of the oldest event still held (the timeline's start).
    pub oldest_event_ms: Option<u64>,
    /// Its seq: those before it expired (and are in the archive).
    #[serde(default)]
    pub oldest_event_seq: Option<u64>,
    /// What this node's archive holds.
    #[serde(default)]
    pub archive: ArchiveSize,
    /// When it was measured, on the node's clock.
    pub at_ms: u64,
}

/// The last Raft snapshot this node built.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStats {
    /// The encoded state it carries.
    pub bytes: u64,
    /// Capture, encoding and the durable write.
    pub build_ms: u64,
    /// Log index it covers.
    pub last_index: u64,
    pub at_ms: u64,
}

/// What a node says of its storage (part of its `NodeReport`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageReport {
    pub state: StorageState,
    pub free_bytes: u64,
    pub total_bytes: u64,
    pub watermark_bytes: u64,
    /// The last storage failure, while `state` is `failed`.
    pub error: Option<String>,
    #[serde(default)]
    pub size: StateSize,
    #[serde(default)]
    pub last_snapshot: Option<SnapshotStats>,
}

/// What changed when free space was observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Unchanged,
    /// Free space fell below the watermark.
    BecameFull,
    /// Free space is back above the watermark and its margin.
    Recovered,
}

#[derive(Default)]
struct GateState {
    size: StateSize,
    last_snapshot: Option<SnapshotStats>,
    full: bool,
    space: FreeSpace,
    watermark_bytes: u64,
    failure: Option<String>,
    /// When each distinct failure was last logged.
    logged_at: HashMap<String, u64>,
}

/// This node's storage condition, shared by admission, the writers and the
/// health reporter.
pub struct StorageGate {
    state: Mutex<GateState>,
    clock: Clock,
}

impl StorageGate {
    pub fn new(clock: Clock) -> Self {
        Self { state: Mutex::new(GateState::default()), clock }
    }

    /// Records a free-space reading against `watermark`.
    pub fn observe(&self, space: FreeSpace, watermark: &Watermark) -> Transition {
        let mut s = self.state.lock();
        let threshold = watermark.threshold(space.total_bytes);
        let resume_at = threshold.saturating_add(threshold / 100 * RECOVERY_MARGIN_PERCENT);
        s.space = space;
        s.watermark_bytes = threshold;
        match (s.full, space.free_bytes < threshold, space.free_bytes >= resume_at) {
            (false, true, _) => {
                s.full = true;
                Transition::BecameFull
            }
            (true, _, true) => {
                s.full = false;
                Transition::Recovered
            }
            _ => Transition::Unchanged,
        }
    }

    /// Records a storage failure; true when it should be logged now (the
    /// first time, or once `FAILURE_LOG_INTERVAL_MS` has passed since this
    /// same failure was last logged).
    pub fn failed(&self, error: &str) -> bool {
        let now = self.clock.now_ms();
        let mut s = self.state.lock();
        s.failure = Some(error.to_owned());
        s.logged_at.retain(|_, at| now.saturating_sub(*at) < FAILURE_LOG_INTERVAL_MS);
        if s.logged_at.contains_key(error) {
            return false;
        }
        s.logged_at.insert(error.to_owned(), now);
        true
    }

    /// Records the state's size as just measured.
    pub fn measured(&self, size: StateSize) {
        let at_ms = self.clock.now_ms();
        self.state.lock().size = StateSize { at_ms, ..size };
    }

    /// Records a snapshot just built and persisted.
    pub fn snapshot_built(&self, bytes: u64, build_ms: u64, last_index: u64) {
        let at_ms = self.clock.now_ms();
        self.state.lock().last_snapshot = Some(SnapshotStats { bytes, build_ms, last_index, at_ms });
    }

    /// A write succeeded: a failure is over. Returns the failure it ends, if any.
    pub fn succeeded(&self) -> Option<String> {
        let mut s = self.state.lock();
        s.failure.take()
    }

    /// Whether `cmd` may be proposed now. Under the watermark new work is
    /// refused and what already-admitted work needs is not. After a failed
    /// log write everything is refused: redb wants the database re-opened
    /// and openraft has stopped this node's Raft, so a proposal could only
    /// fail later, and each would log its failure again.
    pub fn admit(&self, cmd: &Command) -> Result<()> {
        let s = self.state.lock();
        if let Some(error) = &s.failure {
            return Err(WardenError::StorageFailed(format!(
                "the data dir's storage failed ({error}): this node writes nothing until it is restarted"
            )));
        }
        if !cmd.is_new_work() {
            return Ok(());
        }
        if s.full {
            return Err(WardenError::StorageFull(format!(
                "{} bytes free on the data dir's file system, under the {}-byte low watermark: new work is refused \
                 until space is freed",
                s.space.free_bytes, s.watermark_bytes
            )));
        }
        Ok(())
    }

    pub fn report(&self) -> StorageReport {
        let s = self.state.lock();
        let state = match (&s.failure, s.full) {
            (Some(_), _) => StorageState::Failed,
            (None, true) => StorageState::Full,
            (None, false) => StorageState::Ok,
        };
        StorageReport {
            state,
            free_bytes: s.space.free_bytes,
            total_bytes: s.space.total_bytes,
            watermark_bytes: s.watermark_bytes,
            error: s.failure.clone(),
            size: s.size.clone(),
            last_snapshot: s.last_snapshot.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ActionId, CorrelationId, TurnId};
    use std::time::Duration;

    const MIB: u64 = 1 << 20;

    fn submit() -> Command {
        Command::OpenTurn {
            turn_id: TurnId::generate(),
            session_id: crate::ids::SessionId("s".into()),
            correlation_id: CorrelationId("c".into()),
            trust: None,
            summary: None,
        }
    }

    fn confirm() -> Command {
        Command::Confirm { action_id: ActionId::generate(), approve: true, by: "op".into() }
    }

    #[test]
    fn the_watermark_is_the_smaller_of_its_bytes_and_its_share() {
        let w = Watermark::default();
        assert_eq!(w.threshold(100 * MIB), 5 * MIB, "a small volume keeps 5 %");
        assert_eq!(w.threshold(1 << 40), 1 << 30, "a large one keeps 1 GiB");
        assert_eq!(Watermark { min_free_bytes: 0, min_free_percent: 5 }.threshold(1 << 40), 0);
    }

    #[test]
    fn below_the_watermark_new_work_is_refused_and_admitted_work_is_not() {
        let gate = StorageGate::new(Clock::manual(0));
        let w = Watermark { min_free_bytes: 10 * MIB, min_free_percent: 100 };
        assert_eq!(gate.observe(FreeSpace { free_bytes: 50 * MIB, total_bytes: 100 * MIB }, &w), Transition::Unchanged);
        assert!(gate.admit(&submit()).is_ok());
        assert_eq!(gate.observe(FreeSpace { free_bytes: 9 * MIB, total_bytes: 100 * MIB }, &w), Transition::BecameFull);
        assert_eq!(gate.admit(&submit()).unwrap_err().code(), "storage_full");
        assert!(gate.admit(&confirm()).is_ok(), "a confirmation of admitted work still goes through");
        assert_eq!(gate.report().state, StorageState::Full);
        // Back over the line but inside the margin: still refusing (no flapping).
        assert_eq!(
            gate.observe(FreeSpace { free_bytes: 10 * MIB + 1, total_bytes: 100 * MIB }, &w),
            Transition::Unchanged
        );
        assert!(gate.admit(&submit()).is_err());
        assert_eq!(gate.observe(FreeSpace { free_bytes: 12 * MIB, total_bytes: 100 * MIB }, &w), Transition::Recovered);
        assert!(gate.admit(&submit()).is_ok());
        assert_eq!(gate.report().state, StorageState::Ok);
    }

    #[test]
    fn a_failure_is_logged_once_per_interval_and_ends_with_a_good_write() {
        let clock = Clock::manual(0);
        let gate = StorageGate::new(clock.clone());
        assert!(gate.failed("No space left on device"), "the first report is logged");
        let repeats = (0..10_000).filter(|_| gate.failed("No space left on device")).count();
        assert_eq!(repeats, 0, "the same failure within the interval is not logged again");
        assert!(gate.failed("Previous I/O error occurred"), "a distinct failure is logged");
        assert_eq!(gate.admit(&submit()).unwrap_err().code(), "storage_failed");
        assert_eq!(gate.admit(&confirm()).unwrap_err().code(), "storage_failed", "nothing is written after a failure");
        assert_eq!(gate.report().state, StorageState::Failed);
        clock.advance(Duration::from_millis(FAILURE_LOG_INTERVAL_MS));
        assert!(gate.failed("No space left on device"), "logged again once the interval has passed");
        assert_eq!(gate.succeeded().as_deref(), Some("No space left on device"));
        assert_eq!(gate.report().state, StorageState::Ok);
        assert!(gate.admit(&submit()).is_ok());
    }
}

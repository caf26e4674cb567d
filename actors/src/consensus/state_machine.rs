//! openraft's state machine: committed entries reach the deterministic
//! `StateMachine::apply`, a batch per redb transaction. Its commits are not
//! fsync'd by themselves: they share the database with the log, whose next
//! durable commit persists them, and whatever a crash loses is re-applied
//! from the log (never purged past a durable snapshot). Snapshots are the
//! state tables themselves, read from one MVCC view, and are persisted
//! before openraft may purge the log they cover. Every write here (applied
//! batches, snapshot persist and install) runs on the log's writer thread,
//! so one thread owns redb's write lock.

// openraft's trait methods return its StorageError (over 200 bytes); helpers share it.
#![allow(clippy::result_large_err)]

use super::{read_error, write_error, Hub, LogStore, Member, Outcome, RaftEntry, TypeConfig};
use crate::disk::StorageGate;
use crate::store::{decode, encode, Applied, Archive, StateMachine, StateSnapshot, Tables, META, RAFT_META};
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{EntryPayload, LogId, RaftSnapshotBuilder, StorageError, StoredMembership};
use redb::Database;
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::sync::Arc;

type NodeId = u64;
type Result<T> = std::result::Result<T, StorageError<NodeId>>;
pub type Membership = StoredMembership<NodeId, Member>;

const APPLIED: &str = "applied";
const MEMBERSHIP: &str = "membership";
const SNAPSHOT: &str = "snapshot";

/// What the log has been applied up to, persisted with every applied batch.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct AppliedState {
    applied: Option<LogId<NodeId>>,
    membership: Membership,
}

/// A persisted snapshot: its meta and the encoded state.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Member>,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

pub struct StateStore {
    db: Arc<Database>,
    /// Applied batches are written by the log's writer thread (see `LogStore::run_exclusive`).
    log: LogStore,
    machine: StateMachine,
    state: AppliedState,
    hub: Arc<Hub>,
    snapshots_built: u64,
    /// Told the size and build time of every snapshot built here.
    storage: Arc<StorageGate>,
    /// Where what retention removes is written, before the removal commits.
    archive: Arc<Archive>,
}

fn load_state(txn: &redb::ReadTransaction) -> crate::Result<AppliedState> {
    let meta = txn.open_table(RAFT_META)?;
    let get = |k: &str| -> crate::Result<Option<Vec<u8>>> { Ok(meta.get(k)?.map(|g| g.value().to_vec())) };
    Ok(AppliedState {
        applied: get(APPLIED)?.map(|b| decode(&b)).transpose()?.flatten(),
        membership: get(MEMBERSHIP)?.map(|b| decode(&b)).transpose()?.unwrap_or_default(),
    })
}

fn save_state(txn: &redb::WriteTransaction, state: &AppliedState) -> crate::Result<()> {
    let mut meta = txn.open_table(RAFT_META)?;
    meta.insert(APPLIED, encode(&state.applied)?.as_slice())?;
    meta.insert(MEMBERSHIP, encode(&state.membership)?.as_slice())?;
    Ok(())
}

impl StateStore {
    pub fn open(
        db: Arc<Database>,
        log: LogStore,
        hub: Arc<Hub>,
        storage: Arc<StorageGate>,
        archive: Arc<Archive>,
    ) -> crate::Result<Self> {
        let txn = db.begin_read()?;
        let machine = StateMachine::load(&txn.open_table(META)?)?;
        let state = load_state(&txn)?;
        drop(txn);
        Ok(Self { db, log, machine, state, hub, snapshots_built: 0, storage, archive })
    }

    /// Applies `entries` in one transaction; returns each normal entry's
    /// outcome and what it produced (for the events and the waiters). What
    /// the batch expires is archived (and fsync'd) before it commits: a crash
    /// in between applies the batch again and rewrites the same segments.
    fn apply_batch(
        db: &Database,
        archive: &Archive,
        machine: &mut StateMachine,
        state: &mut AppliedState,
        entries: Vec<RaftEntry>,
    ) -> crate::Result<Vec<(Vec<Outcome>, Vec<Applied>)>> {
        let mut txn = db.begin_write()?;
        txn.set_durability(redb::Durability::None);
        let mut out = Vec::with_capacity(entries.len());
        {
            let mut tables = Tables::open(&txn)?;
            for entry in entries {
                let index = entry.log_id.index;
                match entry.payload {
                    EntryPayload::Blank => {
                        machine.skip(index);
                        out.push((Vec::new(), Vec::new()));
                    }
                    EntryPayload::Membership(m) => {
                        machine.skip(index);
                        state.membership = StoredMembership::new(Some(entry.log_id), m);
                        out.push((Vec::new(), Vec::new()));
                    }
                    // A batch of commands: each applied in order, all at this log index.
                    EntryPayload::Normal(commands) => {
                        let mut outcomes = Vec::with_capacity(commands.len());
                        let mut produced = Vec::with_capacity(commands.len());
                        for command in &commands {
                            match machine.apply_at(&mut tables, index, command)? {
                                Ok(mut applied) => {
                                    if let Some(batch) = applied.archived.take() {
                                        archive.write(&batch)?;
                                    }
                                    outcomes.push(Ok(applied.response.clone()));
                                    produced.push(applied);
                                }
                                Err(rejected) => outcomes.push(Err(rejected)),
                            }
                        }
                        out.push((outcomes, produced));
                    }
                }
                state.applied = Some(entry.log_id);
            }
            machine.save(&mut tables)?;
        }
        save_state(&txn, state)?;
        txn.commit()?;
        Ok(out)
    }

    fn persist_snapshot(db: &Database, snapshot: &StoredSnapshot) -> crate::Result<()> {
        // Durable: openraft purges the log up to the snapshot once this returns.
        let txn = db.begin_write()?;
        txn.open_table(RAFT_META)?.insert(SNAPSHOT, encode(snapshot)?.as_slice())?;
        txn.commit()?;
        Ok(())
    }
}

impl RaftStateMachine<TypeConfig> for StateStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, Membership)> {
        Ok((self.state.applied, self.state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Outcome>>>
    where
        I: IntoIterator<Item = RaftEntry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<RaftEntry> = entries.into_iter().collect();
        let (mut machine, mut state) = (self.machine.clone(), self.state.clone());
        let archive = self.archive.clone();
        let (result, machine, state) = self
            .log
            .run_exclusive(move |db| {
                let result = Self::apply_batch(db, &archive, &mut machine, &mut state, entries);
                (result, machine, state)
            })
            .await
            .map_err(write_error)?;
        // A failed batch changed nothing on disk: keep the counters as they were.
        let applied = result.map_err(write_error)?;
        self.machine = machine;
        self.state = state;
        let mut outcomes = Vec::with_capacity(applied.len());
        for (outcome, produced) in applied {
            for p in produced {
                self.hub.publish(p);
            }
            outcomes.push(outcome);
        }
        self.hub.applied_to(self.machine.last_index);
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshots_built += 1;
        SnapshotBuilder {
            db: self.db.clone(),
            log: self.log.clone(),
            view: self.db.begin_read().ok(),
            number: self.snapshots_built,
            storage: self.storage.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<()> {
        let stored = StoredSnapshot { meta: meta.clone(), data: snapshot.into_inner() };
        let installed = self
            .log
            .run_exclusive(move |db| -> crate::Result<(StateMachine, AppliedState)> {
                let state: StateSnapshot = decode(&stored.data)?;
                let txn = db.begin_write()?;
                let machine = state.restore(&txn)?;
                let applied =
                    AppliedState { applied: stored.meta.last_log_id, membership: stored.meta.last_membership.clone() };
                save_state(&txn, &applied)?;
                txn.open_table(RAFT_META)?.insert(SNAPSHOT, encode(&stored)?.as_slice())?;
                txn.commit()?;
                Ok((machine, applied))
            })
            .await
            .and_then(|installed| installed)
            .map_err(write_error)?;
        tracing::info!(last = ?meta.last_log_id, "installed a snapshot");
        (self.machine, self.state) = installed;
        self.hub.policy_changed();
        self.hub.applied_to(self.machine.last_index);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        let db = self.db.clone();
        let read = move || -> crate::Result<Option<StoredSnapshot>> {
            let txn = db.begin_read()?;
            let meta = txn.open_table(RAFT_META)?;
            let stored = meta.get(SNAPSHOT)?;
            stored.map(|g| decode(g.value())).transpose()
        };
        let stored = tokio::task::spawn_blocking(read)
            .await
            .map_err(|e| read_error(crate::WardenError::Storage(e.to_string())))?
            .map_err(read_error)?;
        Ok(stored.map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}

/// Builds a snapshot from the MVCC view taken when it was asked for, so the
/// state matches the applied log id recorded in that same view.
pub struct SnapshotBuilder {
    db: Arc<Database>,
    log: LogStore,
    view: Option<redb::ReadTransaction>,
    number: u64,
    storage: Arc<StorageGate>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        let (db, view, number) = (self.db.clone(), self.view.take(), self.number);
        // A measurement for the operator (visibility), not a decision: wall time is right here.
        let started = std::time::Instant::now();
        let build = move || -> crate::Result<StoredSnapshot> {
            let view = match view {
                Some(v) => v,
                None => db.begin_read()?,
            };
            let state = load_state(&view)?;
            let data = encode(&StateSnapshot::capture(&view)?)?;
            drop(view);
            let last = state.applied;
            let snapshot_id = match last {
                Some(l) => format!("{}-{}-{number}", l.leader_id.term, l.index),
                None => format!("0-0-{number}"),
            };
            let meta = SnapshotMeta { last_log_id: last, last_membership: state.membership, snapshot_id };
            Ok(StoredSnapshot { meta, data })
        };
        // Reading and encoding the state runs beside the writer; only the write takes its turn on it.
        let stored = tokio::task::spawn_blocking(build)
            .await
            .map_err(|e| write_error(crate::WardenError::Storage(format!("snapshot build failed: {e}"))))?
            .map_err(write_error)?;
        let stored = self
            .log
            .run_exclusive(move |db| StateStore::persist_snapshot(db, &stored).map(|()| stored))
            .await
            .and_then(|persisted| persisted)
            .map_err(write_error)?;
        let build_ms = started.elapsed().as_millis() as u64;
        let last_index = stored.meta.last_log_id.map_or(0, |l| l.index);
        self.storage.snapshot_built(stored.data.len() as u64, build_ms, last_index);
        tracing::info!(last = ?stored.meta.last_log_id, bytes = stored.data.len(), build_ms, "built a snapshot");
        Ok(Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(stored.data)) })
    }
}

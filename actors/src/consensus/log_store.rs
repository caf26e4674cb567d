//! openraft's log in redb. The entries not yet purged are also kept in memory
//! (bounded by snapshotting): `append` puts them there and returns at once, so
//! they are readable immediately as openraft requires, and a writer thread
//! persists queued operations in order, one redb transaction and one fsync per
//! batch (group commit), then reports each append as flushed.

// openraft's trait methods return its StorageError (over 200 bytes); helpers share it.
#![allow(clippy::result_large_err)]

use super::Durability;
use super::{io_error, read_error, write_error, RaftEntry, TypeConfig};
use crate::disk::StorageGate;
use crate::limits::MAX_COMMIT_BATCH;
use crate::store::{decode, encode, LOG, RAFT_META};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{LogId, StorageError, Vote};
use parking_lot::RwLock;
use redb::{Database, ReadableTable};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

type NodeId = u64;
type Result<T> = std::result::Result<T, StorageError<NodeId>>;

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";

enum Op {
    Append(Vec<RaftEntry>, LogFlushed<TypeConfig>),
    /// Delete entries from this index on.
    Truncate(u64),
    /// Delete entries up to and including this log id.
    Purge(LogId<NodeId>),
    SaveVote(Vote<NodeId>, oneshot::Sender<std::io::Result<()>>),
    SaveCommitted(Option<LogId<NodeId>>),
    /// Work of the state machine that needs the database's write lock: run
    /// by this thread after the batch's log transaction, so the two never
    /// contend for the lock (redb's is not fair, and a busy log starves others).
    Run(Box<dyn FnOnce(&Database) + Send>),
    Stop(oneshot::Sender<()>),
}

#[derive(Default)]
struct Tail {
    entries: BTreeMap<u64, RaftEntry>,
    purged: Option<LogId<NodeId>>,
}

/// The log store handed to openraft; clones share one log.
#[derive(Clone)]
pub struct LogStore {
    tail: Arc<RwLock<Tail>>,
    db: Arc<Database>,
    queue: mpsc::UnboundedSender<Op>,
}

impl LogStore {
    /// Loads the persisted log and starts its writer thread.
    /// Write failures are reported to `storage` (which says when to log them).
    pub fn open(
        db: Arc<Database>,
        node: &str,
        durability: Durability,
        storage: Arc<StorageGate>,
    ) -> crate::Result<Self> {
        let mut tail = Tail::default();
        {
            let txn = db.begin_read()?;
            for row in txn.open_table(LOG)?.iter()? {
                let (k, v) = row?;
                tail.entries.insert(k.value(), decode(v.value())?);
            }
            if let Some(g) = txn.open_table(RAFT_META)?.get(PURGED)? {
                tail.purged = decode(g.value())?;
            }
        }
        let (queue, rx) = mpsc::unbounded_channel();
        let writer = Writer { db: db.clone(), durability, storage };
        std::thread::Builder::new()
            .name(format!("warden-log-{node}"))
            .spawn(move || writer.run(rx))
            .map_err(|e| crate::WardenError::Storage(format!("cannot start the log writer: {e}")))?;
        Ok(Self { tail: Arc::new(RwLock::new(tail)), db, queue })
    }

    fn send(&self, op: Op) -> Result<()> {
        self.queue.send(op).map_err(|_| write_error(crate::WardenError::Unavailable("the log writer stopped".into())))
    }

    /// Runs `work` on the writer thread, in turn with the log's own writes.
    pub async fn run_exclusive<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> T + Send + 'static,
    ) -> crate::Result<T> {
        let (tx, rx) = oneshot::channel();
        let job = Box::new(move |db: &Database| {
            let _ = tx.send(work(db));
        });
        self.queue.send(Op::Run(job)).map_err(|_| crate::WardenError::Unavailable("the log writer stopped".into()))?;
        rx.await.map_err(|_| crate::WardenError::Unavailable("the log writer stopped".into()))
    }

    /// Persists everything queued so far, then stops the writer.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.queue.send(Op::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let read = || -> crate::Result<Option<T>> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(RAFT_META)?;
            let value = table.get(key)?;
            value.map(|g| decode(g.value())).transpose()
        };
        read().map_err(read_error)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<RaftEntry>> {
        let tail = self.tail.read();
        let range = (range.start_bound().cloned(), range.end_bound().cloned());
        Ok(tail.entries.range::<u64, (Bound<u64>, Bound<u64>)>(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>> {
        let tail = self.tail.read();
        let last = tail.entries.last_key_value().map(|(_, e)| e.log_id).or(tail.purged);
        Ok(LogState { last_purged_log_id: tail.purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::SaveVote(*vote, tx))?;
        let done = rx.await.unwrap_or_else(|_| Err(io_error("the log writer stopped")));
        done.map_err(|e| StorageError::IO { source: openraft::StorageIOError::write_vote(&e) })
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>> {
        self.read_meta(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<()> {
        self.send(Op::SaveCommitted(committed))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>> {
        Ok(self.read_meta::<Option<LogId<NodeId>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<()>
    where
        I: IntoIterator<Item = RaftEntry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<RaftEntry> = entries.into_iter().collect();
        {
            let mut tail = self.tail.write();
            for e in &entries {
                tail.entries.insert(e.log_id.index, e.clone());
            }
        }
        self.send(Op::Append(entries, callback))
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        let _ = self.tail.write().entries.split_off(&log_id.index);
        self.send(Op::Truncate(log_id.index))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        {
            let mut tail = self.tail.write();
            tail.entries = tail.entries.split_off(&(log_id.index + 1));
            tail.purged = Some(log_id);
        }
        self.send(Op::Purge(log_id))
    }
}

struct Writer {
    db: Arc<Database>,
    durability: Durability,
    storage: Arc<StorageGate>,
}

impl Writer {
    fn run(self, mut rx: mpsc::UnboundedReceiver<Op>) {
        let mut batch = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_COMMIT_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let result = self.write(&batch);
            match &result {
                // One line per distinct failure per interval: a full disk fails every batch.
                Err(e) if self.storage.failed(&e.to_string()) => tracing::error!(error = %e, "raft log write failed"),
                Err(_) => {}
                Ok(()) => {
                    if let Some(e) = self.storage.succeeded() {
                        tracing::info!(was = %e, "raft log writes succeed again");
                    }
                }
            }
            let mut stop = None;
            let mut jobs = Vec::new();
            for op in batch.drain(..) {
                let outcome = result.as_ref().map(|_| ()).map_err(|e| io_error(&e.to_string()));
                match op {
                    Op::Append(_, callback) => callback.log_io_completed(outcome),
                    Op::SaveVote(_, tx) => {
                        let _ = tx.send(outcome);
                    }
                    Op::Stop(tx) => stop = Some(tx),
                    Op::Run(job) => jobs.push(job),
                    Op::Truncate(_) | Op::Purge(_) | Op::SaveCommitted(_) => {}
                }
            }
            for job in jobs {
                job(&self.db);
            }
            if let Some(tx) = stop {
                let _ = tx.send(());
                return;
            }
        }
    }

    /// Every queued operation, in order, in one transaction.
    fn write(&self, batch: &[Op]) -> crate::Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(match self.durability {
            Durability::Durable => redb::Durability::Immediate,
            Durability::Volatile => redb::Durability::None,
        });
        {
            let mut log = txn.open_table(LOG)?;
            let mut meta = txn.open_table(RAFT_META)?;
            for op in batch {
                match op {
                    Op::Append(entries, _) => {
                        for e in entries {
                            log.insert(e.log_id.index, encode(e)?.as_slice())?;
                        }
                    }
                    Op::Truncate(from) => {
                        let doomed: Vec<u64> = log
                            .range(*from..)?
                            .map(|r| r.map(|(k, _)| k.value()))
                            .collect::<std::result::Result<_, _>>()?;
                        for k in doomed {
                            log.remove(k)?;
                        }
                    }
                    Op::Purge(upto) => {
                        let doomed: Vec<u64> = log
                            .range(..=upto.index)?
                            .map(|r| r.map(|(k, _)| k.value()))
                            .collect::<std::result::Result<_, _>>()?;
                        for k in doomed {
                            log.remove(k)?;
                        }
                        meta.insert(PURGED, encode(&Some(*upto))?.as_slice())?;
                    }
                    Op::SaveVote(vote, _) => {
                        meta.insert(VOTE, encode(vote)?.as_slice())?;
                    }
                    Op::SaveCommitted(committed) => {
                        meta.insert(COMMITTED, encode(committed)?.as_slice())?;
                    }
                    Op::Stop(_) | Op::Run(_) => {}
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}

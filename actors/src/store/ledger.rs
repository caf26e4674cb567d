//! The local durable log: proposals are queued, written in batches (one redb
//! transaction and one fsync per batch: group commit), applied by the state
//! machine in the same transaction, and acknowledged only after the commit.
//!
//! This is the seam openraft's log takes over: proposals would go through
//! Raft, and committed entries would reach the same `StateMachine::apply`.

use super::machine::{Applied, StateMachine};
use super::tables::{Tables, META};
use crate::command::{Command, Entry, Response};
use crate::domain::{Action, Event, EventKind};
use crate::error::{Result, WardenError};
use crate::ids::ActionId;
use crate::ids::CorrelationId;
use crate::limits::{EVENT_BROADCAST_CAPACITY, MAX_COMMIT_BATCH, PROPOSAL_QUEUE};
use parking_lot::Mutex;
use redb::Database;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Whether a commit waits for fsync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync before acknowledging (the default).
    #[default]
    Durable,
    /// Acknowledge after the in-memory commit; for benchmarks of the fsync cost.
    Volatile,
}

#[allow(clippy::large_enum_variant)] // Stop is sent once; boxing every proposal would cost more.
enum WriterMsg {
    Propose(Entry, oneshot::Sender<Result<Response>>),
    Stop(oneshot::Sender<()>),
}

type Waiters = Mutex<HashMap<ActionId, Vec<oneshot::Sender<Action>>>>;

/// Handle to the log writer; cheap to share behind an `Arc`.
pub struct Ledger {
    node: String,
    queue: mpsc::Sender<WriterMsg>,
    events: broadcast::Sender<Arc<Event>>,
    waiters: Arc<Waiters>,
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Ledger {
    /// Starts the writer thread over `db`, resuming from its persisted counters.
    pub fn start(db: Arc<Database>, node: &str, durability: Durability) -> Result<Self> {
        let machine = {
            let txn = db.begin_read()?;
            StateMachine::load(&txn.open_table(META)?)?
        };
        let (queue, rx) = mpsc::channel(PROPOSAL_QUEUE);
        let (events, _) = broadcast::channel(EVENT_BROADCAST_CAPACITY);
        let waiters = Arc::new(Waiters::default());
        let writer = Writer { db, machine, durability, events: events.clone(), waiters: waiters.clone() };
        std::thread::Builder::new()
            .name(format!("warden-log-{node}"))
            .spawn(move || writer.run(rx))
            .map_err(|e| WardenError::Storage(format!("cannot start the log writer: {e}")))?;
        Ok(Self { node: node.to_owned(), queue, events, waiters })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Appends `cmd` (stamped with this node and the current time) and returns
    /// what applying it produced, once it is durable.
    pub async fn propose(&self, cmd: Command) -> Result<Response> {
        let entry = Entry { at_ms: now_ms(), node: self.node.clone(), cmd };
        let (tx, rx) = oneshot::channel();
        self.queue
            .send(WriterMsg::Propose(entry, tx))
            .await
            .map_err(|_| WardenError::Unavailable("the log is closed".into()))?;
        rx.await.map_err(|_| WardenError::Unavailable("the log writer stopped".into()))?
    }

    /// Records a node-level event without waiting for the commit: for actors
    /// that must not block their mailbox on the log. A failure is logged.
    pub fn record_detached(self: &Arc<Self>, kind: EventKind, correlation_id: CorrelationId, data: serde_json::Value) {
        let ledger = self.clone();
        tokio::spawn(async move {
            if let Err(e) = ledger.propose(Command::RecordEvent { kind, correlation_id, data }).await {
                tracing::warn!(kind = kind.as_str(), error = %e, "could not record an event");
            }
        });
    }

    /// Committed events, live, in log order.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// Resolves when `id` next becomes terminal. Register before reading the
    /// action's current state, so a transition in between is not missed.
    pub fn watch_terminal(&self, id: &ActionId) -> oneshot::Receiver<Action> {
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().entry(id.clone()).or_default().push(tx);
        rx
    }

    /// Drops the waiters of `id` (a caller that stopped waiting).
    pub fn forget_waiters(&self, id: &ActionId) {
        let mut waiters = self.waiters.lock();
        if let Some(list) = waiters.get_mut(id) {
            list.retain(|tx| !tx.is_closed());
            if list.is_empty() {
                waiters.remove(id);
            }
        }
    }

    /// Writes everything queued so far, then stops the writer.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.queue.send(WriterMsg::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

struct Writer {
    db: Arc<Database>,
    machine: StateMachine,
    durability: Durability,
    events: broadcast::Sender<Arc<Event>>,
    waiters: Arc<Waiters>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<WriterMsg>) {
        let mut batch: Vec<(Entry, oneshot::Sender<Result<Response>>)> = Vec::with_capacity(MAX_COMMIT_BATCH);
        while let Some(first) = rx.blocking_recv() {
            let mut stop = None;
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    WriterMsg::Propose(entry, reply) => batch.push((entry, reply)),
                    WriterMsg::Stop(done) => {
                        stop = Some(done);
                        break;
                    }
                }
                if batch.len() < MAX_COMMIT_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                self.commit(&mut batch);
            }
            if let Some(done) = stop {
                let _ = done.send(());
                return;
            }
        }
    }

    /// One transaction for the whole batch; replies only after it is committed.
    fn commit(&mut self, batch: &mut Vec<(Entry, oneshot::Sender<Result<Response>>)>) {
        let before = self.machine.clone();
        match self.write(batch) {
            Ok(results) => {
                let mut terminal = Vec::new();
                for ((_, reply), applied) in batch.drain(..).zip(results) {
                    let response = applied.map(|a| {
                        if self.events.receiver_count() > 0 {
                            for event in a.events {
                                let _ = self.events.send(Arc::new(event));
                            }
                        }
                        terminal.extend(a.terminal);
                        a.response
                    });
                    let _ = reply.send(response);
                }
                self.wake(terminal);
            }
            Err(e) => {
                tracing::error!(error = %e, "log commit failed; the batch is not acknowledged");
                self.machine = before;
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    fn write(&mut self, batch: &[(Entry, oneshot::Sender<Result<Response>>)]) -> Result<Vec<Result<Applied>>> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(match self.durability {
            Durability::Durable => redb::Durability::Immediate,
            Durability::Volatile => redb::Durability::None,
        });
        let mut results = Vec::with_capacity(batch.len());
        {
            let mut tables = Tables::open(&txn)?;
            for (entry, _) in batch {
                results.push(self.machine.append_and_apply(&mut tables, entry)?);
            }
            self.machine.save(&mut tables)?;
        }
        txn.commit()?;
        Ok(results)
    }

    fn wake(&self, terminal: Vec<Action>) {
        if terminal.is_empty() {
            return;
        }
        let mut waiters = self.waiters.lock();
        for action in terminal {
            for tx in waiters.remove(&action.id).unwrap_or_default() {
                let _ = tx.send(action.clone());
            }
        }
    }
}

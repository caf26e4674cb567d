//! The ledger: how actors change durable state. A command is stamped with
//! this node and the current time, proposed through Raft (`Consensus`), and
//! its outcome returned once a majority has committed it and this node has
//! applied it. Events and terminal actions are announced on every node as it
//! applies the log.

use crate::clock::Clock;
use crate::command::{Command, Entry, Response};
use crate::consensus::{Consensus, Durability, RaftSettings};
use crate::domain::{Action, Event, EventData};
use crate::error::Result;
use crate::ids::{ActionId, CorrelationId};
use crate::store::Archive;
use redb::Database;
use std::sync::Arc;
use tokio::sync::{broadcast, oneshot};

/// Handle to the replicated log; cheap to share behind an `Arc`.
pub struct Ledger {
    node: String,
    consensus: Arc<Consensus>,
    clock: Clock,
}

impl Ledger {
    /// Starts this node's Raft over `db`, resuming from what it persisted;
    /// what retention expires goes to `archive`.
    pub async fn start(
        db: Arc<Database>,
        node: &str,
        durability: Durability,
        raft: RaftSettings,
        clock: Clock,
        archive: Arc<Archive>,
    ) -> Result<Self> {
        let consensus = Consensus::start(db, node, durability, raft, clock.clone(), archive).await?;
        Ok(Self { node: node.to_owned(), consensus, clock })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn consensus(&self) -> &Arc<Consensus> {
        &self.consensus
    }

    /// Proposes `cmd` (stamped with this node and the current time) and
    /// returns what applying it produced, once it is committed and applied here.
    pub async fn propose(&self, cmd: Command) -> Result<Response> {
        // A command of a later minor waits until every member reads it.
        if cmd.since() > crate::version::WIRE_FLOOR {
            self.consensus.cluster_version().admits(cmd.since(), cmd.name())?;
        }
        let entry = Entry { at_ms: self.clock.now_ms(), node: self.node.clone(), cmd };
        self.consensus.propose(entry).await
    }

    /// Records a node-level event without waiting for the commit: for actors
    /// that must not block their mailbox on the log. A failure is logged.
    pub fn record_detached(self: &Arc<Self>, correlation_id: CorrelationId, data: EventData) {
        let ledger = self.clone();
        tokio::spawn(async move {
            let kind = data.kind();
            if let Err(e) = ledger.propose(Command::RecordEvent { correlation_id, data }).await {
                tracing::warn!(kind = kind.as_str(), error = %e, "could not record an event");
            }
        });
    }

    /// Committed events, live, in log order.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.consensus.hub().subscribe()
    }

    /// Resolves when `id` next becomes terminal. Register before reading the
    /// action's current state, so a transition in between is not missed.
    pub fn watch_terminal(&self, id: &ActionId) -> oneshot::Receiver<Action> {
        self.consensus.hub().watch_terminal(id)
    }

    /// Drops the waiters of `id` (a caller that stopped waiting).
    pub fn forget_waiters(&self, id: &ActionId) {
        self.consensus.hub().forget_waiters(id)
    }

    /// Stops Raft and persists what its log writer holds.
    pub async fn close(&self) {
        self.consensus.shutdown().await
    }
}

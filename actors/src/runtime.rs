//! What a node's actors share: the log, read access to the state, the actor
//! directory, the capability catalog, the node's configuration and clock,
//! its health report and the background tasks that drive actions. It
//! outlives any one actor, so a restarted actor finds it intact, and an
//! actor's `child(rt)` takes everything it needs from here.

use crate::authz::{EngineCache, PolicySlot};
use crate::clock::Clock;
use crate::command::{Command, Response};
use crate::config::NodeConfig;
use crate::directory::Directory;
use crate::domain::Capability;
use crate::error::{Result, WardenError};
use crate::ledger::Ledger;
use crate::report::ReportSlot;
use crate::store::Store;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use tokio::task::AbortHandle;

/// The capabilities a node knows, by name.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    by_name: BTreeMap<String, Arc<Capability>>,
}

impl Catalog {
    pub fn new(capabilities: Vec<Capability>) -> Result<Self> {
        let mut by_name = BTreeMap::new();
        for cap in capabilities {
            cap.validate()?;
            let name = cap.name.clone();
            if by_name.insert(name.clone(), Arc::new(cap)).is_some() {
                return Err(WardenError::BadInput(format!("capability {name:?} is defined twice")));
            }
        }
        Ok(Self { by_name })
    }

    pub fn get(&self, name: &str) -> Result<Arc<Capability>> {
        self.by_name.get(name).cloned().ok_or_else(|| WardenError::UnknownCapability(name.to_owned()))
    }

    pub fn all(&self) -> Vec<Arc<Capability>> {
        self.by_name.values().cloned().collect()
    }
}

/// Background tasks keyed by what they drive (one per action at most), so a
/// restarted actor does not start a second driver for the same action, and
/// shutdown can stop them all.
#[derive(Default)]
pub struct TaskSet {
    tasks: Mutex<HashMap<String, AbortHandle>>,
    /// Notified whenever a task ends.
    ended: tokio::sync::Notify,
}

impl TaskSet {
    /// Spawns `fut` under `key` unless a task with that key is still running.
    pub fn spawn_unique<F>(self: &Arc<Self>, key: String, fut: F) -> bool
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut tasks = self.tasks.lock();
        if tasks.get(&key).is_some_and(|h| !h.is_finished()) {
            return false;
        }
        let me = Arc::downgrade(self);
        let done_key = key.clone();
        let handle = tokio::spawn(async move {
            fut.await;
            if let Some(me) = me.upgrade() {
                me.tasks.lock().remove(&done_key);
                me.ended.notify_waiters();
            }
        });
        tasks.insert(key, handle.abort_handle());
        true
    }

    pub fn len(&self) -> usize {
        self.tasks.lock().len()
    }

    /// How many running tasks have keys starting with `prefix`.
    pub fn count_prefix(&self, prefix: &str) -> usize {
        self.tasks.lock().iter().filter(|(k, h)| k.starts_with(prefix) && !h.is_finished()).count()
    }

    /// Waits until no task with a key starting with `prefix` runs, or until
    /// `within` passes; returns how many still run.
    pub async fn drained(&self, prefix: &str, within: std::time::Duration) -> usize {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let running = self.count_prefix(prefix);
            if running == 0 || tokio::time::timeout_at(deadline, ended).await.is_err() {
                return self.count_prefix(prefix);
            }
        }
    }

    /// Whether a task runs under `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.tasks.lock().get(key).is_some_and(|h| !h.is_finished())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn abort_all(&self) {
        for (_, handle) in self.tasks.lock().drain() {
            handle.abort();
        }
    }
}

/// Shared by every actor of one node.
pub struct Runtime {
    pub node: String,
    pub ledger: Arc<Ledger>,
    pub store: Store,
    pub directory: Arc<Directory>,
    pub catalog: Arc<Catalog>,
    pub tasks: Arc<TaskSet>,
    pub config: Arc<NodeConfig>,
    /// Where every time-based decision reads the time.
    pub clock: Clock,
    /// This node's latest health report (refreshed by the reporter, sent with heartbeats).
    pub report: ReportSlot,
    /// The policy in force: every decision reads it here, without a message.
    pub policy: Arc<PolicySlot>,
    /// Engines compiled for recent bundles (the gate's, the activations').
    pub policy_engines: Arc<EngineCache>,
}

/// Proposes `cmd` without blocking the calling actor, then answers `reply`
/// with what `pick` takes from the response (the actor's mailbox keeps
/// flowing, and concurrent proposals share a commit).
pub fn propose_and_reply<T: Send + 'static>(
    ledger: &Arc<Ledger>,
    cmd: Command,
    reply: ractor::RpcReplyPort<Result<T>>,
    pick: fn(Response) -> Option<T>,
) {
    let ledger = ledger.clone();
    tokio::spawn(async move {
        let result = ledger.propose(cmd).await.and_then(|response| {
            let unexpected = format!("unexpected response {response:?}");
            pick(response).ok_or(WardenError::Storage(unexpected))
        });
        let _ = reply.send(result);
    });
}

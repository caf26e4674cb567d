//! Where applied entries are announced on this node.

use crate::command::Response;
use crate::domain::{Action, Event};
use crate::error::WardenError;
use crate::ids::ActionId;
use crate::limits::EVENT_BROADCAST_CAPACITY;
use crate::store::Applied;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{broadcast, oneshot, watch};

type Waiters = Mutex<HashMap<ActionId, Vec<oneshot::Sender<Action>>>>;
/// Called when the replicated policy may have changed.
type PolicyHook = Box<dyn Fn() + Send + Sync>;

/// Where applied entries are announced on this node: committed events for
/// live subscribers, actions that became terminal for their waiters, and the
/// applied log index for proposers waiting to read their own write — and,
/// to whoever registered for it, that the replicated policy changed (an
/// activation was applied, or a snapshot replaced the state), before the
/// applied index moves past it.
pub struct Hub {
    events: broadcast::Sender<Arc<Event>>,
    waiters: Waiters,
    applied: watch::Sender<u64>,
    policy_hook: OnceLock<PolicyHook>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            events: broadcast::channel(EVENT_BROADCAST_CAPACITY).0,
            waiters: Waiters::default(),
            applied: watch::channel(0).0,
            policy_hook: OnceLock::new(),
        }
    }
}

impl Hub {
    pub(super) fn publish(&self, applied: Applied) {
        if matches!(applied.response, Response::PolicyActivated { .. }) {
            self.policy_changed();
        }
        if self.events.receiver_count() > 0 {
            for event in applied.events {
                let _ = self.events.send(Arc::new(event));
            }
        }
        if let Some(action) = applied.terminal {
            for tx in self.waiters.lock().remove(&action.id).unwrap_or_default() {
                let _ = tx.send(action.clone());
            }
        }
    }

    /// Registers what to do when the replicated policy may have changed
    /// (once per hub; a second registration is refused).
    pub fn on_policy_change(&self, hook: impl Fn() + Send + Sync + 'static) -> bool {
        self.policy_hook.set(Box::new(hook)).is_ok()
    }

    pub(super) fn policy_changed(&self) {
        if let Some(hook) = self.policy_hook.get() {
            hook();
        }
    }

    pub(super) fn applied_to(&self, index: u64) {
        self.applied.send_replace(index);
    }

    /// The log index applied on this node, as it moves.
    pub fn watch_applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    pub fn watch_terminal(&self, id: &ActionId) -> oneshot::Receiver<Action> {
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().entry(id.clone()).or_default().push(tx);
        rx
    }

    pub fn forget_waiters(&self, id: &ActionId) {
        let mut waiters = self.waiters.lock();
        if let Some(list) = waiters.get_mut(id) {
            list.retain(|tx| !tx.is_closed());
            if list.is_empty() {
                waiters.remove(id);
            }
        }
    }

    /// Waits until this node has applied the log up to `index`.
    pub(super) async fn applied_at_least(&self, index: u64, within: Duration) -> Result<(), WardenError> {
        let mut rx = self.applied.subscribe();
        let reached =
            tokio::time::timeout(within, rx.wait_for(|applied| *applied >= index)).await.is_ok_and(|r| r.is_ok());
        match reached {
            true => Ok(()),
            false => Err(WardenError::Unavailable(format!(
                "committed at log index {index}, but this node has not applied it within {within:?}"
            ))),
        }
    }
}

//! Where each of a node's actors currently lives. A restarted actor has a new
//! `ActorRef`; callers look it up here on every use instead of keeping one.

use crate::error::{Result, WardenError};
use parking_lot::RwLock;
use ractor::{ActorCell, ActorRef, Message};
use serde::Serialize;
use std::collections::BTreeMap;

/// A supervised child's health, as the supervisor last saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildState {
    Running,
    Restarting,
    /// Gave up: restarts exceeded the intensity limit.
    Failed,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChildStatus {
    pub name: &'static str,
    pub state: ChildState,
    pub restarts: u32,
    pub last_error: Option<String>,
    /// When the latest restarts happened (ms since the epoch, at most
    /// `RECENT_RESTARTS_KEPT`): how a restart loop is recognised.
    #[serde(skip)]
    pub restarted_at_ms: Vec<u64>,
}

/// Restart times kept per child.
const RECENT_RESTARTS_KEPT: usize = 32;

#[derive(Default)]
pub struct Directory {
    entries: RwLock<BTreeMap<&'static str, (Option<ActorCell>, ChildStatus)>>,
}

impl Directory {
    pub fn set_running(&self, name: &'static str, cell: ActorCell) {
        let mut entries = self.entries.write();
        let entry = entries.entry(name).or_insert_with(|| {
            let status = ChildStatus {
                name,
                state: ChildState::Running,
                restarts: 0,
                last_error: None,
                restarted_at_ms: Vec::new(),
            };
            (None, status)
        });
        entry.0 = Some(cell);
        entry.1.state = ChildState::Running;
    }

    /// Marks `name` down; `restarting` says whether the supervisor will bring it back.
    pub fn set_down(&self, name: &'static str, error: String, restarting: bool) {
        if let Some(entry) = self.entries.write().get_mut(name) {
            entry.0 = None;
            entry.1.last_error = Some(error);
            let times = &mut entry.1.restarted_at_ms;
            times.push(crate::store::now_ms());
            if times.len() > RECENT_RESTARTS_KEPT {
                times.remove(0);
            }
            if restarting {
                entry.1.restarts += 1;
                entry.1.state = ChildState::Restarting;
            } else {
                entry.1.state = ChildState::Failed;
            }
        }
    }

    /// The current reference of actor `name`, if it is running.
    pub fn get<M: Message>(&self, name: &'static str) -> Result<ActorRef<M>> {
        match self.entries.read().get(name) {
            Some((Some(cell), _)) => Ok(ActorRef::from(cell.clone())),
            _ => Err(WardenError::Unavailable(format!("actor {name} is not running"))),
        }
    }

    pub fn statuses(&self) -> Vec<ChildStatus> {
        self.entries.read().values().map(|(_, s)| s.clone()).collect()
    }
}

/// Calls an actor and flattens ractor's failure modes into `Unavailable`.
pub async fn call<M, T, F>(actor: &ActorRef<M>, build: F) -> Result<T>
where
    M: Message,
    T: Send + 'static,
    F: FnOnce(ractor::RpcReplyPort<T>) -> M,
{
    call_within(actor, std::time::Duration::from_millis(crate::limits::ACTOR_CALL_TIMEOUT_MS), build).await
}

/// `call` with its own deadline, for calls that legitimately take long.
pub async fn call_within<M, T, F>(actor: &ActorRef<M>, timeout: std::time::Duration, build: F) -> Result<T>
where
    M: Message,
    T: Send + 'static,
    F: FnOnce(ractor::RpcReplyPort<T>) -> M,
{
    match actor.call(build, Some(timeout)).await {
        Ok(ractor::rpc::CallResult::Success(v)) => Ok(v),
        Ok(ractor::rpc::CallResult::Timeout) => {
            Err(WardenError::Unavailable(format!("actor {} did not answer in time", actor.get_id())))
        }
        Ok(ractor::rpc::CallResult::SenderError) | Err(_) => {
            Err(WardenError::Unavailable(format!("actor {} stopped", actor.get_id())))
        }
    }
}

//! Where each of a node's actors currently lives, and how each is started.
//! A restarted actor has a new `ActorRef`; callers look it up here on every
//! use instead of keeping one. Each actor module owns its `ActorName` (typed
//! by the actor's message, so a lookup cannot ask for the wrong type) and a
//! `child` function returning its `ChildSpec`; the node lists those specs.
//!
//! ractor's registry of named actors and its process groups are
//! process-wide: this directory is per node, so names here may repeat
//! across nodes in one process; names registered with ractor (only
//! `RaftRpc`'s, `warden.raft@<node>`) must not.

use crate::clock::Clock;
use crate::error::{Result, WardenError};
use parking_lot::RwLock;
use ractor::{Actor, ActorCell, ActorRef, Message, SpawnErr};
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

/// The name of one of a node's actors, typed by the messages it takes.
pub struct ActorName<M> {
    name: &'static str,
    message: PhantomData<fn() -> M>,
}

impl<M> ActorName<M> {
    pub const fn new(name: &'static str) -> Self {
        Self { name, message: PhantomData }
    }

    pub const fn as_str(&self) -> &'static str {
        self.name
    }
}

impl<M> Clone for ActorName<M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M> Copy for ActorName<M> {}

impl<M> std::fmt::Display for ActorName<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

pub type StartFuture = Pin<Box<dyn Future<Output = std::result::Result<ActorCell, SpawnErr>> + Send>>;

/// How to (re)start one child, linked to the supervisor's cell.
#[derive(Clone)]
pub struct ChildSpec {
    pub name: &'static str,
    pub start: Arc<dyn Fn(ActorCell) -> StartFuture + Send + Sync>,
}

impl ChildSpec {
    /// A child that `make` builds afresh at every (re)start.
    pub fn new<A, F>(name: ActorName<A::Msg>, make: F) -> Self
    where
        A: Actor,
        F: Fn() -> (A, A::Arguments) + Send + Sync + 'static,
    {
        Self::spawned(name, None, make)
    }

    /// A child also registered with ractor under `registered`, so peers can
    /// find it by name (process-wide: unique among the process's nodes).
    pub fn registered<A, F>(name: ActorName<A::Msg>, registered: String, make: F) -> Self
    where
        A: Actor,
        F: Fn() -> (A, A::Arguments) + Send + Sync + 'static,
    {
        Self::spawned(name, Some(registered), make)
    }

    fn spawned<A, F>(name: ActorName<A::Msg>, registered: Option<String>, make: F) -> Self
    where
        A: Actor,
        F: Fn() -> (A, A::Arguments) + Send + Sync + 'static,
    {
        let start = move |supervisor: ActorCell| -> StartFuture {
            let (actor, args) = make();
            let registered = registered.clone();
            Box::pin(async move {
                let (r, _) = Actor::spawn_linked(registered, actor, args, supervisor).await?;
                Ok(r.get_cell())
            })
        };
        Self { name: name.as_str(), start: Arc::new(start) }
    }
}

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

pub struct Directory {
    entries: RwLock<BTreeMap<&'static str, (Option<ActorCell>, ChildStatus)>>,
    clock: Clock,
}

impl Directory {
    /// An empty directory stamping restarts with `clock`.
    pub fn new(clock: Clock) -> Self {
        Self { entries: RwLock::default(), clock }
    }

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
            times.push(self.clock.now_ms());
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
    pub fn get<M: Message>(&self, name: ActorName<M>) -> Result<ActorRef<M>> {
        match self.entries.read().get(name.as_str()) {
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

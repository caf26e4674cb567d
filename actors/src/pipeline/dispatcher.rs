//! Dispatcher: on the Raft leader, decides where and when each action runs.
//! It scans the index of active actions whenever an action event commits
//! (and on a timer for backoffs and confirmation deadlines), and proposes:
//! - `Dispatch` of each pending action whose backoff is over, to the least
//!   loaded live executor node that hosts its capability (pinned nodes only,
//!   when the capability names some; never a draining node), never more than
//!   `MAX_INFLIGHT_PER_EXECUTOR` running on one node: the rest waits here;
//! - `Dispatch` with the next attempt number (a takeover) of each action
//!   running on a node the Registry declared down or that left the group;
//! - `ExpireConfirmation` of each confirmation past its deadline.
//!
//! Every decision is a command, so a new leader rebuilds everything from the
//! state: it needs no hand-over. On other nodes the actor idles.

use crate::command::Command;
use crate::directory::{call, ActorName, ChildSpec};
use crate::domain::{ActionState, ActiveAction, EventKind};
use crate::ids::ActionId;
use crate::limits::MAX_INFLIGHT_PER_EXECUTOR;
use crate::registry::{self, PeerState, PeerTable, RegistryMsg};
use crate::runtime::Runtime;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::RactorMessage;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// A scan also runs this often without events (a leader that just took over,
/// a node that went down with nothing else happening).
const RESCAN_EVERY: Duration = Duration::from_millis(250);
/// How long a new leader waits before treating a member its Registry has
/// never heard from as gone: time for heartbeats to arrive.
const UNKNOWN_NODE_GRACE: Duration = Duration::from_secs(2);

#[derive(RactorMessage)]
pub enum DispatcherMsg {
    /// Something changed: scan again.
    Wake,
    /// A proposal about this action finished (committed or refused).
    Settled(ActionId),
}

pub struct Dispatcher;

/// The actor's name in the node's directory.
pub const NAME: ActorName<DispatcherMsg> = ActorName::new("dispatcher");

pub fn child(rt: &Arc<Runtime>) -> ChildSpec {
    let rt = rt.clone();
    ChildSpec::new(NAME, move || (Dispatcher, rt.clone()))
}

pub struct DispatcherState {
    rt: Arc<Runtime>,
    /// Actions with a proposal under way: not decided again until it settles.
    proposing: HashSet<ActionId>,
    /// When this node last became leader, on the node's clock (None while it is not).
    leader_since_ms: Option<u64>,
    /// A Wake is queued: events arriving meanwhile need not queue another.
    queued: Arc<AtomicBool>,
    /// The earliest due time a timer is armed for.
    timer_at: Option<u64>,
}

/// Where actions can run right now, in the leader's view.
struct Executors {
    me: String,
    peers: BTreeMap<String, PeerState>,
    /// Live hosts of each `executor:<capability>` service.
    hosts: BTreeMap<String, Vec<String>>,
    /// Running actions per node.
    load: BTreeMap<String, usize>,
    /// Nodes being drained: they finish what runs there and get nothing new.
    draining: BTreeSet<String>,
    grace_over: bool,
}

/// Whether `host` may be given new attempts of a capability pinned to `pins`
/// (empty: any host): not draining, and a Raft member (it must see the log).
pub(crate) fn may_run(host: &str, pins: &[String], draining: &BTreeSet<String>, rt: &Runtime) -> bool {
    (pins.is_empty() || pins.iter().any(|p| p == host))
        && !draining.contains(host)
        && (host == rt.node || rt.ledger.consensus().is_member(host))
}

impl Executors {
    /// A node whose attempts must be taken over, and why.
    fn gone(&self, node: &str, rt: &Runtime) -> Option<&'static str> {
        if node == self.me {
            return None;
        }
        if !rt.ledger.consensus().is_member(node) {
            return Some("node_removed");
        }
        match self.peers.get(node) {
            Some(PeerState::Down) => Some("node_down"),
            None if self.grace_over => Some("node_unknown"),
            _ => None,
        }
    }

    /// The least loaded live host of `capability` with room, honouring pins.
    fn pick(&mut self, capability: &str, rt: &Runtime) -> Option<String> {
        let pins = rt.catalog.get(capability).map(|c| c.nodes.clone()).unwrap_or_default();
        let hosts = self.hosts.get(&format!("executor:{capability}"))?;
        let best = hosts
            .iter()
            .filter(|h| may_run(h, &pins, &self.draining, rt))
            .map(|h| (self.load.get(h).copied().unwrap_or(0), h))
            .filter(|(load, _)| *load < MAX_INFLIGHT_PER_EXECUTOR)
            .min()
            .map(|(_, h)| h.clone())?;
        *self.load.entry(best.clone()).or_default() += 1;
        Some(best)
    }
}

impl DispatcherState {
    fn wake_at(&mut self, myself: &ActorRef<DispatcherMsg>, due: u64) {
        if self.timer_at.is_some_and(|t| t <= due) {
            return;
        }
        self.timer_at = Some(due);
        let (me, clock) = (myself.clone(), self.rt.clock.clone());
        tokio::spawn(async move {
            clock.sleep_until(due).await;
            let _ = me.cast(DispatcherMsg::Wake);
        });
    }

    async fn executors(&self, active: &[ActiveAction], now: u64, leader_since_ms: u64) -> Executors {
        let table = match self.rt.directory.get(registry::NAME) {
            Ok(registry) => call(&registry, RegistryMsg::Peers).await.unwrap_or_default(),
            Err(_) => PeerTable::default(),
        };
        Executors {
            me: self.rt.node.clone(),
            peers: table.peers.iter().map(|p| (p.name.clone(), p.state)).collect(),
            hosts: table.services.into_iter().map(|p| (p.service, p.hosts)).collect(),
            load: ActiveAction::running_per_node(active),
            draining: self.rt.store.draining().unwrap_or_default(),
            grace_over: now.saturating_sub(leader_since_ms) >= UNKNOWN_NODE_GRACE.as_millis() as u64,
        }
    }

    /// One pass over the active actions; proposes what is due.
    async fn scan(&mut self, myself: &ActorRef<DispatcherMsg>) {
        let consensus = self.rt.ledger.consensus().clone();
        if !consensus.is_leader() {
            self.leader_since_ms = None;
            return;
        }
        let now = self.rt.clock.now_ms();
        let since = *self.leader_since_ms.get_or_insert(now);
        let active = match self.rt.store.active_summaries() {
            Ok(active) => active,
            Err(e) => {
                tracing::warn!(error = %e, "dispatcher cannot read the active actions");
                return;
            }
        };
        let mut executors = self.executors(&active, now, since).await;
        let mut next_due: Option<u64> = None;
        for a in active {
            if self.proposing.contains(&a.id) {
                continue;
            }
            // A pending retry's backoff or a confirmation's deadline still ahead: wake then.
            if let Some(due) = a.due_ms.filter(|due| *due > now) {
                next_due = Some(next_due.map_or(due, |d| d.min(due)));
                continue;
            }
            // Some(reason) dispatches: a first or retried attempt (no reason), or a takeover.
            let dispatch = match a.state {
                ActionState::AwaitingConfirmation if a.due_ms.is_some() => {
                    self.propose(myself, a.id.clone(), Command::ExpireConfirmation { action_id: a.id });
                    continue;
                }
                ActionState::Pending => Some(None),
                ActionState::Running => executors.gone(a.node.as_deref().unwrap_or_default(), &self.rt).map(Some),
                _ => None,
            };
            let Some(reason) = dispatch else { continue };
            let Some(node) = executors.pick(&a.capability, &self.rt) else { continue };
            if let Some(reason) = reason {
                tracing::info!(action = %a.id, from = ?a.node, to = %node, reason, "taking over an action");
            }
            let attempt = a.attempt + 1;
            let reason = reason.map(str::to_owned);
            let cmd = Command::Dispatch { action_id: a.id.clone(), attempt, node, reason };
            self.propose(myself, a.id, cmd);
        }
        if let Some(due) = next_due {
            self.wake_at(myself, due);
        }
    }

    fn propose(&mut self, myself: &ActorRef<DispatcherMsg>, id: ActionId, cmd: Command) {
        self.proposing.insert(id.clone());
        let (ledger, me) = (self.rt.ledger.clone(), myself.clone());
        tokio::spawn(async move {
            if let Err(e) = ledger.propose(cmd).await {
                // Stale (someone decided first) or no quorum: the next scan looks again.
                tracing::debug!(action = %id, error = %e, "dispatcher proposal refused");
            }
            let _ = me.cast(DispatcherMsg::Settled(id));
        });
    }
}

/// Casts `Wake` for every committed event that can change what is due.
fn forward_events(rt: &Runtime, myself: ActorRef<DispatcherMsg>, queued: Arc<AtomicBool>) {
    let mut events = rt.ledger.subscribe();
    tokio::spawn(async move {
        loop {
            let relevant = match events.recv().await {
                Ok(e) => e.action_id.is_some() || matches!(e.kind(), EventKind::NodeDown | EventKind::LeaderChanged),
                Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => return,
            };
            if relevant && !queued.swap(true, Ordering::AcqRel) && myself.cast(DispatcherMsg::Wake).is_err() {
                return;
            }
        }
    });
}

impl Actor for Dispatcher {
    type Msg = DispatcherMsg;
    type State = DispatcherState;
    type Arguments = Arc<Runtime>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        rt: Arc<Runtime>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let queued = Arc::new(AtomicBool::new(false));
        forward_events(&rt, myself.clone(), queued.clone());
        myself.send_interval(RESCAN_EVERY, || DispatcherMsg::Wake);
        Ok(DispatcherState { rt, proposing: HashSet::new(), leader_since_ms: None, queued, timer_at: None })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DispatcherMsg::Wake => {}
            // What it committed wakes a scan by itself; a refusal waits for the next rescan.
            DispatcherMsg::Settled(id) => {
                state.proposing.remove(&id);
                return Ok(());
            }
        }
        if state.timer_at.is_some_and(|t| t <= state.rt.clock.now_ms()) {
            state.timer_at = None;
        }
        state.queued.store(false, Ordering::Release);
        state.scan(&myself).await;
        Ok(())
    }
}

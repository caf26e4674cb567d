//! A node: its storage, its supervision tree, and the message-level API that
//! the HTTP layer, tests and embedders use. Every method sends a message to
//! the actor that owns the concern; none reaches into an actor's state.

use crate::breaker::{BreakerMsg, BreakerView, Breakers, BreakersArgs};
use crate::command::Command;
use crate::consensus::{RaftRpc, RaftRpcArgs, RaftSettings, RaftStatus};
use crate::directory::{call, ChildState, ChildStatus, Directory};
use crate::domain::*;
use crate::error::{Result, WardenError};
use crate::executor::{Executors, ExecutorsArgs};
use crate::health::{self, ClusterHealth, HealthConfig, NodeReport, ReportSlot};
use crate::ids::*;
use crate::memory::{MemoryEngine, MemoryMsg, PutRequest};
use crate::orchestrator::{self, DrainReport};
use crate::pipeline::{Dispatcher, Pipeline, PipelineMsg, SubmitRequest, Worker, WorkerArgs};
use crate::policy::{NativePolicy, PolicyEngine, PolicyStore};
use crate::registry::{PeerState, PeerTable, Registry, RegistryArgs, RegistryConfig, RegistryMsg};
use crate::runtime::{Catalog, Runtime, TaskSet};
use crate::sessions::{ModelCallRequest, OpenTurnRequest, SessionMsg, Sessions};
use crate::store::{open_database, Durability, Ledger, RecallQuery, Store, TimelineQuery};
use crate::supervisor::{ChildSpec, NodeSupervisor, StartFuture, SupervisorArgs, SupervisorConfig, SupervisorMsg};
use crate::timeline::{CorrelationGraph, Timeline, TimelineMsg};
use parking_lot::RwLock;
use ractor::{Actor, ActorCell, ActorRef, Message};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

pub const POLICY: &str = "policy_store";
pub const BREAKERS: &str = "breakers";
pub const EXECUTORS: &str = "executors";
pub const SESSIONS: &str = "sessions";
pub const MEMORY: &str = "memory_engine";
pub const TIMELINE: &str = "timeline";
pub const PIPELINE: &str = "pipeline";
pub const DISPATCHER: &str = "dispatcher";
pub const WORKER: &str = "worker";
pub const REGISTRY: &str = "registry";
pub const RAFT_RPC: &str = "raft_rpc";

/// Default time a tier-2 action waits for its confirmation (contract.md).
pub const DEFAULT_CONFIRM_TTL_MS: u64 = 300_000;
/// How long shutdown waits for the actors and the log to let go of storage.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub durability: Durability,
    pub capabilities: Vec<Capability>,
    pub confirm_ttl_ms: u64,
    /// Seed of the sim executors: the same seed replays the same outcomes.
    pub sim_seed: u64,
    pub supervisor: SupervisorConfig,
    /// Lets `_sim.panic_attempts` crash the Executors actor (supervision tests).
    pub fault_injection: bool,
    pub registry: RegistryConfig,
    pub raft: RaftSettings,
    pub health: HealthConfig,
}

impl NodeConfig {
    pub fn new(name: &str, data_dir: impl Into<PathBuf>, capabilities: Vec<Capability>) -> Self {
        Self {
            name: name.to_owned(),
            data_dir: data_dir.into(),
            durability: Durability::Durable,
            capabilities,
            confirm_ttl_ms: DEFAULT_CONFIRM_TTL_MS,
            sim_seed: 0,
            supervisor: SupervisorConfig::default(),
            fault_injection: false,
            registry: RegistryConfig::default(),
            raft: RaftSettings::default(),
            health: HealthConfig::default(),
        }
    }
}

/// A node's health: each supervised actor's state.
#[derive(Clone, Debug, Serialize)]
pub struct NodeHealth {
    pub node: String,
    pub status: &'static str,
    pub actors: Vec<ChildStatus>,
    pub active_tasks: usize,
    pub last_index: u64,
}

pub struct Node {
    rt: Arc<Runtime>,
    /// This node's latest health report (also sent with its heartbeats).
    report: ReportSlot,
    health: HealthConfig,
    supervisor: ActorRef<SupervisorMsg>,
    supervisor_done: tokio::task::JoinHandle<()>,
    /// Kept so that shutdown drops the last handle itself: redb releases its
    /// file lock in `Drop`, which must have finished before shutdown returns.
    db: Arc<redb::Database>,
}

/// How often the leader looks for nodes to add to the Raft group.
const ADMIT_EVERY: Duration = Duration::from_millis(500);

/// On the leader, adds every peer the Registry sees up that is not yet a
/// member: as a learner, then (once caught up) as a voter.
fn admit_peers(rt: &Arc<Runtime>) {
    let rt = rt.clone();
    let tasks = rt.tasks.clone();
    tasks.spawn_unique("raft:admit".into(), async move {
        let mut tick = tokio::time::interval(ADMIT_EVERY);
        loop {
            tick.tick().await;
            let consensus = rt.ledger.consensus();
            if !consensus.is_leader() {
                continue;
            }
            let Ok(registry) = rt.directory.get::<RegistryMsg>(REGISTRY) else { continue };
            let Ok(table) = call(&registry, RegistryMsg::Peers).await else { continue };
            // Only nodes without a log: adding one that founded its own cluster would mix two logs.
            for peer in table.peers.iter().filter(|p| p.state == PeerState::Up && p.joinable) {
                if !consensus.is_member(&peer.name) {
                    if let Err(e) = consensus.add_voter(&peer.name).await {
                        tracing::warn!(peer = %peer.name, error = %e, "could not add a node to the raft group");
                    }
                }
            }
        }
    });
}

/// How long a starting node keeps trying to end the drain its last graceful stop set.
const END_STOP_DRAIN_WITHIN: Duration = Duration::from_secs(60);

/// Ends the drain this node set for itself when it last stopped gracefully
/// (an operator's drain stays), once it has caught up with the leader.
fn end_stop_drain(rt: &Arc<Runtime>) {
    let rt = rt.clone();
    let tasks = rt.tasks.clone();
    tasks.spawn_unique("drain:end".into(), async move {
        let deadline = tokio::time::Instant::now() + END_STOP_DRAIN_WITHIN;
        while tokio::time::Instant::now() < deadline {
            if rt.ledger.consensus().read_barrier().await.is_ok() {
                let mine = rt.store.nodes().ok().and_then(|n| n.into_iter().find(|r| r.name == rt.node));
                if !mine.is_some_and(|r| r.draining && r.shutdown) {
                    return;
                }
                let end = Command::SetDraining { node: rt.node.clone(), draining: false, shutdown: true };
                match rt.ledger.propose(end).await {
                    Ok(_) | Err(WardenError::Conflict(_)) => return,
                    Err(e) => tracing::debug!(error = %e, "ending the stop drain: retrying"),
                }
            }
            tokio::time::sleep(ADMIT_EVERY).await;
        }
        tracing::warn!("could not end the drain of the last stop; end it with DELETE /v1/cluster/nodes/<name>/drain");
    });
}

fn child<A, F>(name: &'static str, make: F) -> ChildSpec
where
    A: Actor,
    F: Fn() -> (A, A::Arguments) + Send + Sync + 'static,
{
    registered_child(name, None, make)
}

/// A child registered under `registered`, so peers can find it by name.
fn registered_child<A, F>(name: &'static str, registered: Option<String>, make: F) -> ChildSpec
where
    A: Actor,
    F: Fn() -> (A, A::Arguments) + Send + Sync + 'static,
{
    ChildSpec {
        name,
        start: Arc::new(move |supervisor: ActorCell| -> StartFuture {
            let (actor, args) = make();
            let registered = registered.clone();
            Box::pin(async move {
                let (r, _) = Actor::spawn_linked(registered, actor, args, supervisor).await?;
                Ok(r.get_cell())
            })
        }),
    }
}

impl Node {
    /// Opens the node's storage and starts its supervision tree; attempts the
    /// log assigns to this node that a previous process left are taken over.
    pub async fn start(config: NodeConfig) -> Result<Node> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| WardenError::Storage(format!("cannot create {}: {e}", config.data_dir.display())))?;
        let catalog = Arc::new(Catalog::new(config.capabilities.clone())?);
        let path = config.data_dir.join("warden.redb");
        let db = Arc::new(open_database(&path).map_err(|e| {
            WardenError::Storage(format!(
                "cannot open {}: {e} (is another warden node using this data dir?)",
                path.display()
            ))
        })?);
        let ledger = Arc::new(Ledger::start(db.clone(), &config.name, config.durability, config.raft.clone()).await?);
        let directory = Arc::new(Directory::default());
        let rt = Arc::new(Runtime {
            node: config.name.clone(),
            ledger: ledger.clone(),
            store: Store::new(db.clone()),
            directory: directory.clone(),
            catalog: catalog.clone(),
            tasks: Arc::new(TaskSet::default()),
            confirm_ttl_ms: config.confirm_ttl_ms,
        });
        let engine: Arc<dyn PolicyEngine> = Arc::new(NativePolicy);
        let (caps, seed, fault_injection) = (catalog.all(), config.sim_seed, config.fault_injection);
        let (r1, r2, r3, r4, l1, s1) =
            (rt.clone(), rt.clone(), rt.clone(), rt.clone(), ledger.clone(), rt.store.clone());
        let worker_args = WorkerArgs { rt: rt.clone(), fresh_process: Arc::new(AtomicBool::new(true)) };
        let caps2 = caps.clone();
        let (node_name, registry_config, l2) = (config.name.clone(), config.registry.clone(), ledger.clone());
        let report: ReportSlot = Arc::new(RwLock::new(NodeReport { node: config.name.clone(), ..Default::default() }));
        let registry_report = report.clone();
        let registry_store = rt.store.clone();
        let services: Vec<String> = catalog.all().iter().map(|c| format!("executor:{}", c.name)).collect();
        let rpc_args =
            RaftRpcArgs { raft: ledger.consensus().raft().clone(), proposer: ledger.consensus().proposer().clone() };
        let rpc_name = crate::consensus::rpc_actor_name(&config.name);
        // Order matters: the worker takes over orphaned attempts, which needs the others up.
        let children = vec![
            registered_child(RAFT_RPC, Some(rpc_name), move || (RaftRpc, rpc_args.clone())),
            child(POLICY, move || (PolicyStore, engine.clone())),
            child(BREAKERS, move || (Breakers, BreakersArgs { capabilities: caps.clone(), ledger: l1.clone() })),
            child(EXECUTORS, move || (Executors, ExecutorsArgs { capabilities: caps2.clone(), seed, fault_injection })),
            child(SESSIONS, move || (Sessions, r1.clone())),
            child(MEMORY, move || (MemoryEngine, r2.clone())),
            child(TIMELINE, move || (Timeline, s1.clone())),
            child(REGISTRY, move || {
                let args = RegistryArgs {
                    node: node_name.clone(),
                    config: registry_config.clone(),
                    ledger: l2.clone(),
                    services: services.clone(),
                    report: registry_report.clone(),
                    store: registry_store.clone(),
                };
                (Registry, args)
            }),
            child(PIPELINE, move || (Pipeline, r3.clone())),
            child(WORKER, move || (Worker, worker_args.clone())),
            child(DISPATCHER, move || (Dispatcher, r4.clone())),
        ];
        let args = SupervisorArgs { children, config: config.supervisor.clone(), directory, ledger: ledger.clone() };
        let (supervisor, supervisor_done) = Actor::spawn(None, NodeSupervisor, args)
            .await
            .map_err(|e| WardenError::Unavailable(format!("supervision tree did not start: {e}")))?;
        // Not awaited: a node that joins a cluster has no leader until it is added.
        ledger.record_detached(
            CorrelationId(format!("node:{}", config.name)),
            EventData::NodeStarted { node: config.name.clone(), capabilities: catalog.all().len() as u32 },
        );
        ledger.consensus().watch_leadership();
        end_stop_drain(&rt);
        if config.raft.auto_join {
            admit_peers(&rt);
        }
        health::spawn_reporter(&rt, config.health.clone(), config.data_dir.clone(), report.clone());
        Ok(Node { rt, report, health: config.health, supervisor, supervisor_done, db })
    }

    pub fn name(&self) -> &str {
        &self.rt.node
    }

    pub fn store(&self) -> &Store {
        &self.rt.store
    }

    pub fn catalog(&self) -> &Catalog {
        &self.rt.catalog
    }

    /// The current reference of one of this node's actors (by its name constant).
    pub fn actor<M: Message>(&self, name: &'static str) -> Result<ActorRef<M>> {
        self.rt.directory.get(name)
    }

    /// Live committed events.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Event>> {
        self.rt.ledger.subscribe()
    }

    pub async fn open_turn(&self, req: OpenTurnRequest) -> Result<Turn> {
        call(&self.actor(SESSIONS)?, |r| SessionMsg::OpenTurn(req, r)).await?
    }

    pub async fn record_model_call(&self, req: ModelCallRequest) -> Result<u64> {
        call(&self.actor(SESSIONS)?, |r| SessionMsg::RecordModelCall(req, r)).await?
    }

    pub async fn active_sessions(&self, since_ms: u64) -> Result<Vec<Session>> {
        call(&self.actor(SESSIONS)?, |reply| SessionMsg::Active { since_ms, reply }).await?
    }

    pub async fn put_memory(&self, req: PutRequest) -> Result<MemoryItem> {
        call(&self.actor(MEMORY)?, |r| MemoryMsg::Put(req, r)).await?
    }

    pub async fn get_memory(&self, ns: &str, key: &str) -> Result<Option<MemoryItem>> {
        let (ns, key) = (ns.to_owned(), key.to_owned());
        call(&self.actor(MEMORY)?, |reply| MemoryMsg::Get { ns, key, reply }).await?
    }

    pub async fn recall(&self, ns: &str, query: RecallQuery, turn_id: Option<TurnId>) -> Result<Vec<MemoryItem>> {
        let ns = ns.to_owned();
        call(&self.actor(MEMORY)?, |reply| MemoryMsg::Recall { ns, query, turn_id, reply }).await?
    }

    pub async fn submit(&self, req: SubmitRequest) -> Result<Action> {
        call(&self.actor(PIPELINE)?, |r| PipelineMsg::Submit(req, r)).await?
    }

    pub async fn confirm(&self, action_id: &ActionId, approve: bool, by: &str) -> Result<Action> {
        let (action_id, by) = (action_id.clone(), by.to_owned());
        call(&self.actor(PIPELINE)?, |reply| PipelineMsg::Confirm { action_id, approve, by, reply }).await?
    }

    pub async fn replay_dlq(&self, id: &DlqId) -> Result<Action> {
        let id = id.clone();
        call(&self.actor(PIPELINE)?, |r| PipelineMsg::ReplayDlq(id, r)).await?
    }

    pub fn action(&self, id: &ActionId) -> Result<Action> {
        self.rt.store.action(id)?.ok_or_else(|| WardenError::UnknownAction(id.to_string()))
    }

    /// The action once it is terminal, or as it is when `timeout` elapses.
    pub async fn wait_action(&self, id: &ActionId, timeout: Duration) -> Result<Action> {
        let terminal = self.rt.ledger.watch_terminal(id);
        let current = self.action(id);
        match current {
            Ok(action) if !action.state.is_terminal() => {}
            other => {
                drop(terminal);
                self.rt.ledger.forget_waiters(id);
                return other;
            }
        }
        match tokio::time::timeout(timeout, terminal).await {
            Ok(Ok(action)) => Ok(action),
            _ => {
                self.rt.ledger.forget_waiters(id);
                self.action(id)
            }
        }
    }

    pub fn dlq(&self, pending_only: bool, limit: Option<usize>) -> Result<Vec<DlqEntry>> {
        self.rt.store.dlq_entries(pending_only, limit)
    }

    /// Peers as the Registry's failure detector sees them.
    pub async fn peers(&self) -> Result<PeerTable> {
        call(&self.actor(REGISTRY)?, RegistryMsg::Peers).await
    }

    /// This node's view of the Raft group: role, term, leader, members and
    /// (on the leader) how far each is behind.
    pub fn raft_status(&self) -> RaftStatus {
        self.rt.ledger.consensus().status()
    }

    pub fn consensus(&self) -> &Arc<crate::consensus::Consensus> {
        self.rt.ledger.consensus()
    }

    /// Removes `name` from the Raft group (through the leader); `member.removed`.
    pub async fn remove_member(&self, name: &str) -> Result<()> {
        orchestrator::remove_node(&self.rt, name).await
    }

    /// Adds a node that is up and has no log as a voter; `member.added`.
    pub async fn add_node(&self, name: &str) -> Result<()> {
        orchestrator::add_node(&self.rt, name).await
    }

    /// Starts or ends draining `name` (see `orchestrator::drain`).
    pub async fn drain(&self, name: &str, on: bool) -> Result<DrainReport> {
        orchestrator::drain(&self.rt, name, on).await
    }

    /// Hands leadership to voter `name`; returns the new leader.
    pub async fn transfer_leadership(&self, name: &str) -> Result<String> {
        orchestrator::transfer_leadership(&self.rt, name).await
    }

    /// This node's latest health report.
    pub fn report(&self) -> NodeReport {
        self.report.read().clone()
    }

    /// The whole cluster's health, judged from this node's view.
    pub async fn cluster_health(&self) -> Result<ClusterHealth> {
        let table = self.peers().await?;
        Ok(health::verdict(&self.report(), &table.peers, &self.raft_status(), &self.health))
    }

    /// What the cluster decided about each node (draining).
    pub fn node_records(&self) -> Result<Vec<NodeRecord>> {
        self.rt.store.nodes()
    }

    /// The transport lost its last session to `peer`: an election if it led,
    /// and the Registry declares it down (its attempts are taken over).
    pub fn peer_lost(&self, peer: &str) {
        self.rt.ledger.consensus().peer_lost(peer);
        if let Ok(registry) = self.actor::<RegistryMsg>(REGISTRY) {
            let _ = registry.cast(RegistryMsg::PeerLost(peer.to_owned()));
        }
    }

    /// Makes the reads that follow see everything committed before the call.
    pub async fn read_barrier(&self) -> Result<()> {
        self.rt.ledger.consensus().read_barrier().await
    }

    pub async fn breakers(&self) -> Result<Vec<BreakerView>> {
        call(&self.actor(BREAKERS)?, BreakerMsg::Snapshot).await
    }

    pub async fn timeline(&self, q: TimelineQuery) -> Result<Vec<Event>> {
        call(&self.actor(TIMELINE)?, |r| TimelineMsg::Query(q, r)).await?
    }

    pub async fn correlation_graph(&self, id: &CorrelationId) -> Result<CorrelationGraph> {
        let id = id.clone();
        call(&self.actor(TIMELINE)?, |r| TimelineMsg::Graph(id, r)).await?
    }

    pub async fn provenance(&self, id: &DlqId) -> Result<Vec<Event>> {
        let id = id.clone();
        call(&self.actor(TIMELINE)?, |r| TimelineMsg::Provenance(id, r)).await?
    }

    pub fn health(&self) -> Result<NodeHealth> {
        let actors = self.rt.directory.statuses();
        let status = if actors.iter().any(|a| a.state == ChildState::Failed) {
            "failed"
        } else if actors.iter().any(|a| a.state == ChildState::Restarting) {
            "degraded"
        } else {
            "ok"
        };
        Ok(NodeHealth {
            node: self.rt.node.clone(),
            status,
            actors,
            active_tasks: self.rt.tasks.len(),
            last_index: self.rt.store.last_index()?,
        })
    }

    /// A graceful stop's first step: drains this node (its own drain, ended
    /// at its next start), then waits, up to `grace`, for the attempts placed
    /// here to record their results while the cluster transport is still
    /// up; returns how many were still running.
    /// What is left is taken over by the leader once this node is gone, or
    /// by the node itself at its next start.
    pub async fn finish_attempts(&self, grace: Duration) -> usize {
        // Ask the leader to place nothing more here (bounded: without a leader, skip it);
        // what it placed before the drain committed still runs.
        let drain = Command::SetDraining { node: self.rt.node.clone(), draining: true, shutdown: true };
        let started = tokio::time::Instant::now();
        if let Ok(Err(e)) = tokio::time::timeout(grace / 2, self.rt.ledger.propose(drain)).await {
            tracing::debug!(error = %e, "no drain for the stop");
        }
        self.rt.tasks.drained(crate::pipeline::ATTEMPT_TASK_PREFIX, grace.saturating_sub(started.elapsed())).await
    }

    /// Stops every actor and driver, flushes the log and releases storage.
    /// What was acknowledged is on disk; unfinished actions resume at the next start.
    pub async fn shutdown(self) -> Result<()> {
        let Node { rt, supervisor, supervisor_done, db, .. } = self;
        rt.tasks.abort_all();
        let _ = call(&supervisor, SupervisorMsg::Shutdown).await;
        let _ = tokio::time::timeout(SHUTDOWN_TIMEOUT, supervisor_done).await;
        rt.ledger.close().await;
        drop(rt);
        // Aborted tasks drop their handles on their next poll; wait until ours
        // is the last, then close the database here so the file can be opened
        // again as soon as this returns.
        let deadline = tokio::time::Instant::now() + SHUTDOWN_TIMEOUT;
        while Arc::strong_count(&db) > 1 {
            if tokio::time::Instant::now() > deadline {
                return Err(WardenError::Unavailable("storage still in use after shutdown".into()));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::task::spawn_blocking(move || drop(db))
            .await
            .map_err(|e| WardenError::Storage(format!("closing the database: {e}")))
    }
}

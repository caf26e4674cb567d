//! A node: its storage, its supervision tree, and the message-level API that
//! the HTTP layer, tests and embedders use. Every method sends a message to
//! the actor that owns the concern; none reaches into an actor's state.

pub use crate::config::{NodeConfig, DEFAULT_CONFIRM_TTL_MS};

use crate::authz::{ActivePolicy, EngineCache, PolicyInput, PolicySlot};
use crate::breaker::{self, BreakerMsg, BreakerView};
use crate::command::Command;
use crate::consensus::{self, RaftStatus};
use crate::directory::{call, ActorName, ChildSpec, ChildState, ChildStatus, Directory};
use crate::disk::StorageReport;
use crate::domain::*;
use crate::error::{Result, WardenError};
use crate::health::{self, ClusterHealth, NodeReport, Reason};
use crate::ids::*;
use crate::ledger::Ledger;
use crate::memory::{self, MemoryMsg, PutRequest};
use crate::orchestrator::{self, DrainReport};
use crate::pipeline::{self, dispatcher, worker, PipelineMsg, SubmitRequest};
use crate::policy::{self, HistoryItem, NodePolicy, PolicyMsg, PolicyView};
use crate::registry::{self, PeerTable, RegistryMsg};
use crate::runtime::{Catalog, Runtime, TaskSet};
use crate::sessions::{self, ModelCallRequest, OpenTurnRequest, SessionMsg};
use crate::store::{Archive, EventIndex, Incidents, RecallQuery, Store, TimelinePage, TimelineQuery, ARCHIVE_DIR};
use crate::supervisor::{NodeSupervisor, SupervisorArgs, SupervisorMsg};
use crate::timeline::{self, CorrelationGraph, TimelineMsg};
use crate::{executor, indexer, notify, retention, slo};
use parking_lot::RwLock;
use ractor::{Actor, ActorRef, Message};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a node that asked for a leadership transfer waits to hear of the new leader.
const LEARN_LEADER_WITHIN: Duration = Duration::from_secs(2);
/// How long shutdown waits for the actors and the log to let go of storage.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// The timeline's index file in the data dir (`store::event_index`).
pub const INDEX_FILE: &str = "timeline-index.redb";

/// The node's supervised actors, in start order: the Worker takes over
/// orphaned attempts, which needs the others up. Adding an actor is one
/// module with a `NAME` and a `child`, and one line here.
fn children(rt: &Arc<Runtime>) -> Vec<ChildSpec> {
    vec![
        consensus::rpc_child(rt.ledger.consensus()),
        policy::child(rt),
        breaker::child(rt),
        executor::child(rt),
        sessions::child(rt),
        memory::child(rt),
        timeline::child(rt),
        indexer::child(rt),
        retention::child(rt),
        registry::child(rt),
        slo::child(rt),
        notify::child(rt),
        pipeline::child(rt),
        worker::child(rt),
        dispatcher::child(rt),
    ]
}

/// A node's health: each supervised actor's state, and its storage.
#[derive(Clone, Debug, Serialize)]
pub struct NodeHealth {
    pub node: String,
    /// ok, degraded (an actor restarting), failed (an actor failed) or
    /// critical (storage full or failed: `reasons` says which).
    pub status: &'static str,
    /// Findings about this node itself: `storage_full`, `storage_failed`.
    pub reasons: Vec<Reason>,
    pub storage: StorageReport,
    pub actors: Vec<ChildStatus>,
    pub active_tasks: usize,
    pub last_index: u64,
}

pub struct Node {
    rt: Arc<Runtime>,
    supervisor: ActorRef<SupervisorMsg>,
    supervisor_done: tokio::task::JoinHandle<()>,
    /// Kept so that shutdown drops the last handle itself: redb releases its
    /// file lock in `Drop`, which must have finished before shutdown returns.
    db: Arc<redb::Database>,
    /// The timeline's index file, closed the same way.
    index: Arc<EventIndex>,
    /// This node has caught up with the cluster's log once since it started
    /// (so its policy is the cluster's): set by the first `decide`.
    caught_up: std::sync::atomic::AtomicBool,
}

impl Node {
    /// Opens the node's storage and starts its supervision tree; attempts the
    /// log assigns to this node that a previous process left are taken over.
    pub async fn start(config: NodeConfig) -> Result<Node> {
        // First, so a node with a policy that does not compile touches nothing.
        let policy = ActivePolicy::from_config(&config.policy, config.clock.now_ms())?;
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| WardenError::Storage(format!("cannot create {}: {e}", config.data_dir.display())))?;
        let catalog = Arc::new(Catalog::new(config.capabilities.clone())?);
        let path = config.data_dir.join("warden.redb");
        let db = Arc::new(crate::store::open_versioned(&path, config.storage.state_cache())?);
        let index_file = config.data_dir.join(INDEX_FILE);
        let index = Arc::new(EventIndex::open_cached(&index_file, Some(config.storage.index_cache()))?);
        let archive = Arc::new(Archive::open(config.data_dir.join(ARCHIVE_DIR))?);
        let clock = config.clock.clone();
        let ledger = Arc::new(
            Ledger::start(
                db.clone(),
                &config.name,
                config.durability,
                config.raft.clone(),
                clock.clone(),
                archive.clone(),
            )
            .await?,
        );
        let report = Arc::new(RwLock::new(NodeReport { node: config.name.clone(), ..Default::default() }));
        let rt = Arc::new(Runtime {
            node: config.name.clone(),
            ledger: ledger.clone(),
            store: Store::with_index(db.clone(), index.clone()).with_archive(archive),
            directory: Arc::new(Directory::new(clock.clone())),
            catalog: catalog.clone(),
            tasks: Arc::new(TaskSet::default()),
            config: Arc::new(config.clone()),
            clock: clock.clone(),
            report,
            policy: Arc::new(PolicySlot::new(policy)),
            policy_engines: Arc::new(EngineCache::new(config.policy.eval_timeout)),
        });
        // Before any actor starts: the node decides with the cluster's
        // policy, if it has activated one, from its first decision on.
        policy::follow_replicated(&rt)?;
        let args = SupervisorArgs {
            children: children(&rt),
            config: config.supervisor.clone(),
            directory: rt.directory.clone(),
            ledger: ledger.clone(),
            clock,
        };
        let (supervisor, supervisor_done) = Actor::spawn(None, NodeSupervisor, args)
            .await
            .map_err(|e| WardenError::Unavailable(format!("supervision tree did not start: {e}")))?;
        // Not awaited: a node that joins a cluster has no leader until it is added.
        ledger.record_detached(
            CorrelationId(format!("node:{}", config.name)),
            EventData::NodeStarted { node: config.name.clone(), capabilities: catalog.all().len() as u32 },
        );
        ledger.consensus().watch_leadership();
        ledger.consensus().watch_silence();
        orchestrator::end_stop_drain(&rt);
        if config.raft.auto_join {
            orchestrator::spawn_admission(&rt);
        }
        health::spawn_storage_watch(&rt, config.data_dir.clone());
        health::spawn_reporter(&rt, config.data_dir.clone());
        Ok(Node { rt, supervisor, supervisor_done, db, index, caught_up: Default::default() })
    }

    pub fn name(&self) -> &str {
        &self.rt.node
    }

    /// The clock this node decides time by.
    pub fn clock(&self) -> &crate::clock::Clock {
        &self.rt.clock
    }

    /// Read access to the replicated state, for tests and embedders that
    /// inspect it directly. The HTTP layer does not: it uses the methods below.
    pub fn store(&self) -> &Store {
        &self.rt.store
    }

    /// Nodes being drained, as the replicated records say.
    pub fn draining_nodes(&self) -> Result<std::collections::BTreeSet<String>> {
        self.rt.store.draining()
    }

    /// How many attempts run on each node, from the active actions.
    pub fn running_per_node(&self) -> Result<std::collections::BTreeMap<String, usize>> {
        Ok(ActiveAction::running_per_node(&self.rt.store.active_summaries()?))
    }

    /// Dead-letter entries not yet replayed successfully.
    pub fn dlq_depth(&self) -> Result<usize> {
        self.rt.store.dlq_depth()
    }

    /// The applied log index and a SHA-256 digest of the whole replicated
    /// state at it (replicas at one index have one digest); off the runtime's threads.
    pub async fn state_digest(&self) -> Result<(u64, String)> {
        let store = self.rt.store.clone();
        tokio::task::spawn_blocking(move || store.digest_at())
            .await
            .map_err(|e| WardenError::Storage(format!("digest failed: {e}")))?
    }

    /// What the active policy would decide, evaluated here on the caller's
    /// thread (no actor in the way); nothing is recorded. The first call
    /// after the node starts waits until it has applied everything the
    /// cluster had committed (a read barrier), so a node that restarted or
    /// joined decides with the cluster's policy from its first answer on —
    /// and answers `unavailable` while it cannot reach a leader.
    pub async fn decide(&self, input: &PolicyInput) -> Result<Decision> {
        use std::sync::atomic::Ordering;
        if !self.caught_up.load(Ordering::Acquire) {
            self.read_barrier().await?;
            self.caught_up.store(true, Ordering::Release);
        }
        Ok(self.rt.policy.decide(input))
    }

    /// The active policy (engine, bundle hash and revision, files), the
    /// cluster's activation history and each node's policy hash.
    pub async fn policy(&self) -> Result<PolicyView> {
        let active = call(&self.rt.directory.get(policy::NAME)?, PolicyMsg::Active).await?;
        let history = self.rt.store.policy_state()?.history.iter().map(HistoryItem::of).collect();
        let mut nodes = vec![NodePolicy { node: self.rt.node.clone(), hash: Some(self.rt.policy.hash()) }];
        for peer in self.peers().await?.peers {
            let hash = peer.report.map(|r| r.policy_hash).filter(|h| !h.is_empty());
            nodes.push(NodePolicy { node: peer.name, hash });
        }
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(PolicyView { active, history, nodes })
    }

    /// A bundle through the promotion gate, then activated on every node.
    pub async fn push_policy(
        &self,
        files: BTreeMap<String, String>,
        change: policy::Change,
    ) -> Result<policy::Outcome> {
        call(&self.actor(policy::NAME)?, |r| PolicyMsg::Push(files, change, r)).await?
    }

    /// A bundle of the history (`to`, or the one before the active one) activated again.
    pub async fn rollback_policy(&self, to: Option<String>, change: policy::Change) -> Result<policy::Outcome> {
        call(&self.actor(policy::NAME)?, |r| PolicyMsg::Rollback(to, change, r)).await?
    }

    /// The policy audit trail: entries after `after`, oldest first, at most `limit`.
    pub fn policy_audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>> {
        self.rt.store.policy_audit(after, limit)
    }

    pub fn catalog(&self) -> &Catalog {
        &self.rt.catalog
    }

    /// The current reference of one of this node's actors (by its module's `NAME`).
    pub fn actor<M: Message>(&self, name: ActorName<M>) -> Result<ActorRef<M>> {
        self.rt.directory.get(name)
    }

    /// Live committed events.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Event>> {
        self.rt.ledger.subscribe()
    }

    pub async fn open_turn(&self, req: OpenTurnRequest) -> Result<Turn> {
        call(&self.actor(sessions::NAME)?, |r| SessionMsg::OpenTurn(req, r)).await?
    }

    /// A turn, if this node has applied it.
    pub fn turn(&self, id: &TurnId) -> Result<Option<Turn>> {
        self.rt.store.turn(id)
    }

    pub async fn record_model_call(&self, req: ModelCallRequest) -> Result<u64> {
        call(&self.actor(sessions::NAME)?, |r| SessionMsg::RecordModelCall(req, r)).await?
    }

    pub async fn active_sessions(&self, since_ms: u64) -> Result<Vec<Session>> {
        call(&self.actor(sessions::NAME)?, |reply| SessionMsg::Active { since_ms, reply }).await?
    }

    pub async fn put_memory(&self, req: PutRequest) -> Result<MemoryItem> {
        call(&self.actor(memory::NAME)?, |r| MemoryMsg::Put(req, r)).await?
    }

    pub async fn get_memory(&self, ns: &str, key: &str) -> Result<Option<MemoryItem>> {
        let (ns, key) = (ns.to_owned(), key.to_owned());
        call(&self.actor(memory::NAME)?, |reply| MemoryMsg::Get { ns, key, reply }).await?
    }

    pub async fn recall(&self, ns: &str, query: RecallQuery, turn_id: Option<TurnId>) -> Result<Vec<MemoryItem>> {
        let ns = ns.to_owned();
        call(&self.actor(memory::NAME)?, |reply| MemoryMsg::Recall { ns, query, turn_id, reply }).await?
    }

    pub async fn submit(&self, req: SubmitRequest) -> Result<Action> {
        call(&self.actor(pipeline::NAME)?, |r| PipelineMsg::Submit(req, r)).await?
    }

    pub async fn confirm(&self, action_id: &ActionId, approve: bool, by: &str) -> Result<Action> {
        let (action_id, by) = (action_id.clone(), by.to_owned());
        call(&self.actor(pipeline::NAME)?, |reply| PipelineMsg::Confirm { action_id, approve, by, reply }).await?
    }

    /// Re-runs a dead-lettered action; `principal`: who asked (recorded).
    pub async fn replay_dlq(&self, id: &DlqId, principal: Option<&str>) -> Result<Action> {
        let (id, principal) = (id.clone(), principal.map(str::to_owned));
        call(&self.actor(pipeline::NAME)?, |r| PipelineMsg::ReplayDlq(id, principal, r)).await?
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
        call(&self.actor(registry::NAME)?, RegistryMsg::Peers).await
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
    pub async fn remove_member(&self, name: &str, principal: Option<&str>) -> Result<()> {
        orchestrator::remove_node(&self.rt, name, principal).await
    }

    /// Adds a node that is up and has no log as a voter; `member.added`.
    pub async fn add_node(&self, name: &str, principal: Option<&str>) -> Result<()> {
        orchestrator::add_node(&self.rt, name, principal).await
    }

    /// Starts or ends draining `name` (see `orchestrator::drain`).
    pub async fn drain(&self, name: &str, on: bool, principal: Option<&str>) -> Result<DrainReport> {
        orchestrator::drain(&self.rt, name, on, principal).await
    }

    /// Hands leadership to voter `name`; returns the new leader and its term.
    pub async fn transfer_leadership(&self, name: &str, principal: Option<&str>) -> Result<(String, u64)> {
        let leader = orchestrator::transfer_leadership(&self.rt, name, principal).await?;
        let term = self.rt.ledger.consensus().term_under(&leader, LEARN_LEADER_WITHIN).await;
        Ok((leader, term))
    }

    /// This node's latest health report.
    pub fn report(&self) -> NodeReport {
        self.rt.report.read().clone()
    }

    /// The whole cluster's health, judged from this node's view.
    pub async fn cluster_health(&self) -> Result<ClusterHealth> {
        let table = self.peers().await?;
        Ok(health::verdict(&self.report(), &table.peers, &self.raft_status(), &self.rt.config.health))
    }

    /// What the cluster decided about each node (draining).
    pub fn node_records(&self) -> Result<Vec<NodeRecord>> {
        self.rt.store.nodes()
    }

    /// The transport lost its last session to `peer`: an election if it led,
    /// and the Registry declares it down (its attempts are taken over).
    pub fn peer_lost(&self, peer: &str) {
        self.rt.ledger.consensus().peer_lost(peer);
        if let Ok(registry) = self.actor(registry::NAME) {
            let _ = registry.cast(RegistryMsg::PeerLost(peer.to_owned()));
        }
    }

    /// Makes the reads that follow see everything committed before the call.
    pub async fn read_barrier(&self) -> Result<()> {
        self.rt.ledger.consensus().read_barrier().await
    }

    /// Per-capability SLO state: this node's windows (`node_only`) or every
    /// node's merged (histograms added, counts summed), with the advisories
    /// the log holds open.
    pub async fn slo(&self, node_only: bool) -> Result<slo::SloView> {
        let reports = if node_only {
            vec![call(&self.actor(slo::NAME)?, slo::SloMsg::Report).await?]
        } else {
            slo::cluster_reports().await
        };
        let settings = slo::monitor::Settings::new(&self.rt.config.slo);
        let episodes = self.rt.store.slo_episodes()?;
        let scope = if node_only { "node" } else { "cluster" };
        Ok(slo::view::merge(scope, &reports, &settings.rules, settings.period, &episodes))
    }

    /// `/v1/alerts`: the log's alerts with their deliveries per channel.
    pub async fn alerts(&self) -> Result<serde_json::Value> {
        let alerts = self.rt.store.alerts()?;
        let status = call(&self.actor(notify::NAME)?, notify::NotifyMsg::Status).await?;
        Ok(notify::alerts_view(&alerts, &status, &self.rt.config.notify, self.rt.clock.now_ms()))
    }

    pub async fn breakers(&self) -> Result<Vec<BreakerView>> {
        call(&self.actor(breaker::NAME)?, BreakerMsg::Snapshot).await
    }

    pub async fn timeline(&self, q: TimelineQuery) -> Result<Vec<Event>> {
        call(&self.actor(timeline::NAME)?, |r| TimelineMsg::Query(q, r)).await?
    }

    /// One page of a filtered timeline query, with the cursor to go on from.
    pub async fn timeline_page(&self, q: TimelineQuery) -> Result<TimelinePage> {
        call(&self.actor(timeline::NAME)?, |r| TimelineMsg::Page(q, r)).await?
    }

    /// An incident window: node-level events, failures and their causes.
    pub async fn incidents(&self, q: TimelineQuery) -> Result<Incidents> {
        call(&self.actor(timeline::NAME)?, |r| TimelineMsg::Incidents(q, r)).await?
    }

    /// A DLQ entry's whole provenance, from the entry back to the session.
    pub async fn provenance_of(&self, id: &DlqId) -> Result<Box<timeline::Provenance>> {
        let id = id.clone();
        call(&self.actor(timeline::NAME)?, |r| TimelineMsg::ProvenanceOf(id, r)).await?
    }

    pub async fn correlation_graph(&self, id: &CorrelationId) -> Result<CorrelationGraph> {
        let id = id.clone();
        call(&self.actor(timeline::NAME)?, |r| TimelineMsg::Graph(id, r)).await?
    }

    pub async fn provenance(&self, id: &DlqId) -> Result<Vec<Event>> {
        let id = id.clone();
        call(&self.actor(timeline::NAME)?, |r| TimelineMsg::Provenance(id, r)).await?
    }

    pub fn health(&self) -> Result<NodeHealth> {
        let actors = self.rt.directory.statuses();
        let storage = self.rt.ledger.consensus().storage().report();
        let reasons = health::storage_reasons(&self.rt.node, &storage);
        let status = if !reasons.is_empty() {
            "critical"
        } else if actors.iter().any(|a| a.state == ChildState::Failed) {
            "failed"
        } else if actors.iter().any(|a| a.state == ChildState::Restarting) {
            "degraded"
        } else {
            "ok"
        };
        Ok(NodeHealth {
            node: self.rt.node.clone(),
            status,
            reasons,
            storage,
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
        let drain =
            Command::SetDraining { node: self.rt.node.clone(), draining: true, shutdown: true, principal: None };
        let started = tokio::time::Instant::now();
        if let Ok(Err(e)) = tokio::time::timeout(grace / 2, self.rt.ledger.propose(drain)).await {
            tracing::debug!(error = %e, "no drain for the stop");
        }
        self.rt.tasks.drained(pipeline::ATTEMPT_TASK_PREFIX, grace.saturating_sub(started.elapsed())).await
    }

    /// Stops every actor and driver, flushes the log and releases storage.
    /// What was acknowledged is on disk; unfinished actions resume at the next start.
    pub async fn shutdown(self) -> Result<()> {
        let Node { rt, supervisor, supervisor_done, db, index, .. } = self;
        rt.tasks.abort_all();
        let _ = call(&supervisor, SupervisorMsg::Shutdown).await;
        let _ = tokio::time::timeout(SHUTDOWN_TIMEOUT, supervisor_done).await;
        rt.ledger.close().await;
        drop(rt);
        // Aborted tasks drop their handles on their next poll; wait until ours
        // are the last, then close both files here so they can be opened
        // again as soon as this returns.
        let deadline = tokio::time::Instant::now() + SHUTDOWN_TIMEOUT;
        while Arc::strong_count(&db) > 1 || Arc::strong_count(&index) > 1 {
            if tokio::time::Instant::now() > deadline {
                return Err(WardenError::Unavailable("storage still in use after shutdown".into()));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::task::spawn_blocking(move || drop((db, index)))
            .await
            .map_err(|e| WardenError::Storage(format!("closing the database: {e}")))
    }
}

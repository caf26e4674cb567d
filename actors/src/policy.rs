//! The `PolicyStore` actor: what the active policy is, and how it changes.
//! Decisions do not pass through it — they read the runtime's `PolicySlot`
//! directly (`authz`), in parallel — but every change does:
//!
//! - `Push`: a bundle goes through the promotion gate (`authz::gate`); a
//!   refusal is recorded as `RejectPolicy` (audited, nothing else changes),
//!   a pass is proposed as `ActivatePolicy`.
//! - `Rollback`: a bundle of the replicated history is activated again
//!   through the same command.
//!
//! One message at a time, so two pushes never race through the gate.
//! Activation itself happens on every node when it applies the entry:
//! `follow_replicated` registers with the consensus hub, reads the
//! replicated state and installs its bundle in the slot (a node that
//! restarts or joins runs the cluster's policy, not the one on its disk).

use crate::authz::{gate, ActivePolicy, Bundle, BundleSource, EngineCache, PolicySlot, PolicySummary};
use crate::command::{Command, Response};
use crate::directory::{ActorName, ChildSpec};
use crate::domain::{PolicyChange, PolicyState};
use crate::error::{Result, WardenError};
use crate::ids::CorrelationId;
use crate::runtime::Runtime;
use crate::store::Store;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorMessage;
use std::collections::BTreeMap;
use std::sync::Arc;

/// `GET /v1/policies`: the policy this node decides with, the cluster's
/// history of activations, and the policy each node reports it decides with.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PolicyView {
    pub active: PolicySummary,
    /// Newest first, the active one included (at most `MAX_POLICY_HISTORY`).
    pub history: Vec<HistoryItem>,
    pub nodes: Vec<NodePolicy>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct HistoryItem {
    pub hash: String,
    pub revision: String,
    pub activated_at: u64,
    pub by: String,
    pub reason: String,
    pub change: PolicyChange,
    pub generation: u64,
}

/// The policy a node decides with: this node's now, its peers' from their
/// latest health report (none before the first).
#[derive(Clone, Debug, serde::Serialize)]
pub struct NodePolicy {
    pub node: String,
    pub hash: Option<String>,
}

impl HistoryItem {
    pub fn of(r: &crate::domain::PolicyRecord) -> Self {
        Self {
            hash: r.hash.clone(),
            revision: r.revision.clone(),
            activated_at: r.activated_at_ms,
            by: r.by.clone(),
            reason: r.reason.clone(),
            change: r.change,
            generation: r.generation,
        }
    }
}

/// Who changes the policy, and why.
#[derive(Clone, Debug)]
pub struct Change {
    /// The principal (`anonymous` on a node without tokens).
    pub by: String,
    pub reason: String,
    pub correlation_id: CorrelationId,
}

/// What became of a push or a rollback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The bundle is the active policy on this node (and, once they apply
    /// the same entry, on every node).
    Activated { hash: String, revision: String, previous: Option<String>, audit_seq: u64 },
    /// The bundle is already the active one: nothing was recorded.
    AlreadyActive { hash: String },
    /// The gate refused the bundle: every failure, and where the refusal is audited.
    Rejected { hash: String, failures: Vec<String>, audit_seq: u64 },
}

#[derive(RactorMessage)]
pub enum PolicyMsg {
    /// What the active policy is.
    Active(RpcReplyPort<PolicySummary>),
    /// A bundle's files, to pass the gate and become active.
    Push(BTreeMap<String, String>, Change, RpcReplyPort<Result<Outcome>>),
    /// Activate a bundle of the history again: `to`, or the one before the active one.
    Rollback(Option<String>, Change, RpcReplyPort<Result<Outcome>>),
}

pub struct PolicyStore;

/// The actor's name in the node's directory.
pub const NAME: ActorName<PolicyMsg> = ActorName::new("policy_store");

pub fn child(rt: &Arc<Runtime>) -> ChildSpec {
    let rt = rt.clone();
    ChildSpec::new(NAME, move || (PolicyStore, rt.clone()))
}

impl Actor for PolicyStore {
    type Msg = PolicyMsg;
    type State = Arc<Runtime>;
    type Arguments = Arc<Runtime>;

    async fn pre_start(&self, _: ActorRef<Self::Msg>, rt: Arc<Runtime>) -> Result<Self::State, ActorProcessingErr> {
        Ok(rt)
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        rt: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PolicyMsg::Active(reply) => {
                let _ = reply.send(rt.policy.active().summary());
            }
            PolicyMsg::Push(files, change, reply) => {
                let _ = reply.send(push(rt, files, change).await);
            }
            PolicyMsg::Rollback(to, change, reply) => {
                let _ = reply.send(rollback(rt, to, change).await);
            }
        }
        Ok(())
    }
}

async fn push(rt: &Arc<Runtime>, files: BTreeMap<String, String>, change: Change) -> Result<Outcome> {
    let engines = rt.policy_engines.clone();
    // The gate compiles and evaluates: off the actor's thread.
    let gated = tokio::task::spawn_blocking(move || -> std::result::Result<Bundle, (String, String, Vec<String>)> {
        let bundle = Bundle::from_files(files, BundleSource::Pushed)
            .map_err(|e| (String::new(), String::new(), vec![e.to_string()]))?;
        match gate::check(&bundle, engines.eval_timeout()) {
            Ok(passed) => {
                engines.keep(Arc::new(passed.policy));
                Ok(bundle)
            }
            Err(failures) => Err((bundle.hash().to_owned(), bundle.revision().to_owned(), failures)),
        }
    })
    .await
    .map_err(|e| WardenError::Unavailable(format!("the policy gate failed: {e}")))?;
    match gated {
        Ok(bundle) => activate(rt, bundle, PolicyChange::Push, change).await,
        Err((hash, revision, failures)) => {
            let cmd = Command::RejectPolicy {
                hash: hash.clone(),
                revision,
                by: change.by,
                failures: failures.clone(),
                correlation_id: change.correlation_id,
            };
            match rt.ledger.propose(cmd).await? {
                Response::PolicyRejected { audit_seq } => Ok(Outcome::Rejected { hash, failures, audit_seq }),
                other => Err(WardenError::Storage(format!("unexpected response {other:?}"))),
            }
        }
    }
}

async fn rollback(rt: &Arc<Runtime>, to: Option<String>, change: Change) -> Result<Outcome> {
    let state: PolicyState = rt.store.policy_state()?;
    let active = state.active.as_ref().map(|p| p.hash.clone());
    let target =
        match &to {
            Some(hash) => state.history.iter().find(|p| &p.hash == hash).ok_or_else(|| {
                WardenError::Conflict(format!("policy {hash} is not in the history of the last activations"))
            })?,
            None => state.history.iter().find(|p| Some(&p.hash) != active.as_ref()).ok_or_else(|| {
                WardenError::Conflict("there is no earlier activated policy to roll back to".to_owned())
            })?,
        };
    let bundle = Bundle::from_files(target.files.clone(), BundleSource::Replicated)?;
    activate(rt, bundle, PolicyChange::Rollback, change).await
}

async fn activate(rt: &Arc<Runtime>, bundle: Bundle, kind: PolicyChange, change: Change) -> Result<Outcome> {
    let previous = rt.store.policy_state()?.active.map(|p| p.hash);
    if previous.as_deref() == Some(bundle.hash()) {
        return Ok(Outcome::AlreadyActive { hash: bundle.hash().to_owned() });
    }
    let (hash, revision) = (bundle.hash().to_owned(), bundle.revision().to_owned());
    let cmd = Command::ActivatePolicy {
        hash: hash.clone(),
        revision: revision.clone(),
        bundle: bundle.files().clone(),
        by: change.by,
        reason: change.reason,
        change: kind,
        correlation_id: change.correlation_id,
    };
    match rt.ledger.propose(cmd).await? {
        Response::PolicyActivated { audit_seq, .. } => Ok(Outcome::Activated { hash, revision, previous, audit_seq }),
        other => Err(WardenError::Storage(format!("unexpected response {other:?}"))),
    }
}

/// Installs the replicated policy in `slot` if it is newer than the one
/// there. Returns the generation installed, if any.
pub fn install_replicated(store: &Store, slot: &PolicySlot, engines: &EngineCache) -> Result<Option<u64>> {
    let Some(record) = store.policy_state()?.active else { return Ok(None) };
    if record.generation <= slot.active().generation {
        return Ok(None);
    }
    let policy = ActivePolicy::from_record(&record, |bundle| engines.compile(bundle))?;
    let generation = policy.generation;
    Ok(slot.install(policy).then_some(generation))
}

/// Makes this node follow the cluster's policy: installs the replicated one
/// now (before the node serves anything), and again each time an
/// activation is applied or a snapshot replaces the state.
pub fn follow_replicated(rt: &Runtime) -> Result<()> {
    let (store, slot, engines) = (rt.store.clone(), rt.policy.clone(), rt.policy_engines.clone());
    let node = rt.node.clone();
    rt.ledger.consensus().hub().on_policy_change(move || match install_replicated(&store, &slot, &engines) {
        Ok(Some(generation)) => tracing::info!(node, generation, hash = %slot.hash(), "policy activated"),
        Ok(None) => {}
        // The bundle passed the gate on the node that proposed it, with this same code:
        // a failure here is a fault of this node. It keeps deciding with the policy it has.
        Err(e) => tracing::error!(node, error = %e, "cannot install the activated policy; keeping the current one"),
    });
    install_replicated(&rt.store, &rt.policy, &rt.policy_engines)?;
    Ok(())
}

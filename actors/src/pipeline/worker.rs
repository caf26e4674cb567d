//! Worker: runs the attempts the log assigns to this node. A committed
//! `Dispatch` naming this node starts one task per attempt: breaker check,
//! executor call, then `FinishAttempt` through the log (forwarded to the
//! leader from a follower). The task lives until that result is committed or
//! fenced, so an attempt never runs twice on one node.
//!
//! A result is fenced when the attempt is no longer the action's latest: the
//! leader took it over meanwhile (this node was declared down, or left the
//! group). The tool then saw the key twice; it dedups by the key.
//!
//! At process start, attempts the log says run here cannot be running (the
//! previous process died with them): the worker takes each over itself, with
//! the next attempt number and the same idempotency key.

use crate::backoff;
use crate::breaker::{self, BreakerMsg};
use crate::command::Command;
use crate::directory::{call, call_within, ActorName, ChildSpec};
use crate::domain::{Action, ActionState, ActiveAction, AttemptOutcome, EventData};
use crate::error::WardenError;
use crate::executor::{self, ExecRequest, ExecResult, ExecutorMsg};
use crate::ids::ActionId;
use crate::runtime::Runtime;
use crate::slo;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::RactorMessage;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// A backstop scan for assignments whose event this node missed.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);
/// First and longest pause before a result or a restart takeover is proposed again.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Tries at taking over an attempt a previous process left (about a minute
/// at `RETRY_MAX`). Past them, the reconcile scan runs the attempt as the
/// log assigns it: same attempt number, same idempotency key.
const ORPHAN_TAKEOVER_TRIES: usize = 32;

#[derive(RactorMessage)]
pub enum WorkerMsg {
    /// An attempt of this action was dispatched here.
    Run(ActionId),
    /// Look for assigned attempts that are not running.
    Reconcile,
}

pub struct Worker;

#[derive(Clone)]
pub struct WorkerArgs {
    pub rt: Arc<Runtime>,
    /// Set until the first start: attempts found then belong to a dead process.
    pub fresh_process: Arc<AtomicBool>,
}

/// The actor's name in the node's directory.
pub const NAME: ActorName<WorkerMsg> = ActorName::new("worker");

/// The Worker; its first start (not a restart) takes over what a previous process left.
pub fn child(rt: &Arc<Runtime>) -> ChildSpec {
    let args = WorkerArgs { rt: rt.clone(), fresh_process: Arc::new(AtomicBool::new(true)) };
    ChildSpec::new(NAME, move || (Worker, args.clone()))
}

/// Every attempt task's key starts with this.
pub const ATTEMPT_TASK_PREFIX: &str = "exec:";

fn task_key(id: &ActionId, attempt: u32) -> String {
    format!("{ATTEMPT_TASK_PREFIX}{id}:{attempt}")
}

/// Starts the attempt the log assigns here, unless it already runs.
fn run(rt: &Arc<Runtime>, id: &ActionId) {
    let Ok(Some(action)) = rt.store.action(id) else { return };
    let Some(last) = action.attempts.last() else { return };
    if action.state != ActionState::Running || last.node != rt.node || last.outcome.is_some() {
        return;
    }
    let attempt = last.number;
    let task_rt = rt.clone();
    rt.tasks.spawn_unique(task_key(id, attempt), async move {
        execute_attempt(&task_rt, action, attempt).await;
    });
}

/// Attempts the log says run here, by summary.
fn assigned_here(rt: &Runtime) -> Vec<ActiveAction> {
    match rt.store.active_summaries() {
        Ok(active) => active
            .into_iter()
            .filter(|a| a.state == ActionState::Running && a.node.as_deref() == Some(rt.node.as_str()))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "worker cannot read the active actions");
            Vec::new()
        }
    }
}

/// Takes over, on this node, an attempt a previous process left unfinished.
fn take_over_orphan(rt: &Arc<Runtime>, orphan: ActiveAction) {
    let task_rt = rt.clone();
    rt.tasks.spawn_unique(format!("orphan:{}", orphan.id), async move {
        let cmd = Command::Dispatch {
            action_id: orphan.id.clone(),
            attempt: orphan.attempt + 1,
            node: task_rt.node.clone(),
            reason: Some("node_restarted".into()),
        };
        for pause in backoff::exponential(RETRY_MIN, RETRY_MAX).take(ORPHAN_TAKEOVER_TRIES) {
            match task_rt.ledger.propose(cmd.clone()).await {
                // The dispatch event starts the attempt.
                Ok(_) => return,
                Err(WardenError::StaleAttempt { .. }) => return,
                Err(e) => {
                    tracing::debug!(action = %orphan.id, error = %e, "restart takeover not committed yet");
                    tokio::time::sleep(pause).await;
                }
            }
        }
        tracing::warn!(action = %orphan.id, tries = ORPHAN_TAKEOVER_TRIES, "restart takeover not committed; running the attempt as assigned");
    });
}

async fn execute_attempt(rt: &Arc<Runtime>, action: Action, attempt: u32) {
    let (outcome, latency_ms) = match rt.catalog.get(&action.capability) {
        Ok(capability) => {
            let breakers = rt.directory.get(breaker::NAME);
            let admitted = match &breakers {
                Ok(b) => call(b, |r| BreakerMsg::Admit(capability.name.clone(), r)).await.unwrap_or(true),
                Err(_) => true,
            };
            if admitted {
                let req = ExecRequest {
                    action_id: action.id.clone(),
                    capability: capability.clone(),
                    args: action.args.clone(),
                    idempotency_key: action.idempotency_key.clone(),
                    correlation_id: action.correlation_id.clone(),
                    attempt,
                };
                let result = execute(rt, req).await;
                let breaker_ok = !matches!(result.outcome, AttemptOutcome::Retryable { .. });
                slo::record(rt, &capability.name, result.latency_ms, breaker_ok);
                if let Ok(b) = rt.directory.get(breaker::NAME) {
                    let _ = b.cast(BreakerMsg::Record(capability.name.clone(), breaker_ok));
                }
                (result.outcome, result.latency_ms)
            } else {
                (AttemptOutcome::BreakerOpen, 0)
            }
        }
        // This node's catalog lacks it: the leader placed it by another's.
        Err(e) => (AttemptOutcome::Permanent { error: e.to_string() }, 0),
    };
    let finish = Command::FinishAttempt { action_id: action.id.clone(), attempt, outcome, latency_ms };
    let mut pauses = backoff::exponential(RETRY_MIN, RETRY_MAX);
    loop {
        match rt.ledger.propose(finish.clone()).await {
            Ok(_) => return,
            Err(WardenError::StaleAttempt { .. }) => {
                tracing::info!(action = %action.id, attempt, "result fenced: the attempt was taken over");
                return;
            }
            Err(e @ (WardenError::Unavailable(_) | WardenError::Storage(_) | WardenError::Overloaded(_))) => {
                if !still_current(rt, &action.id, attempt) {
                    return;
                }
                let pause = pauses.next().unwrap_or(RETRY_MAX);
                tracing::warn!(action = %action.id, attempt, error = %e, ?pause, "result not committed; retrying");
                tokio::time::sleep(pause).await;
            }
            Err(e) => {
                tracing::warn!(action = %action.id, attempt, error = %e, "result refused");
                return;
            }
        }
    }
}

/// Whether `attempt` is still the action's latest, unfinished one.
fn still_current(rt: &Runtime, id: &ActionId, attempt: u32) -> bool {
    matches!(rt.store.action(id), Ok(Some(a)) if a.state == ActionState::Running
        && a.attempts.last().is_some_and(|l| l.number == attempt && l.outcome.is_none()))
}

/// Calls the Executors actor. If it is down (it crashed mid-call), the attempt
/// is a retryable failure: the supervisor restarts it and the retry goes on.
async fn execute(rt: &Runtime, req: ExecRequest) -> ExecResult {
    let executors = match rt.directory.get(executor::NAME) {
        Ok(e) => e,
        Err(e) => return ExecResult { outcome: AttemptOutcome::Retryable { error: e.to_string() }, latency_ms: 0 },
    };
    // The executor enforces the tool timeout; this bound only catches a lost reply.
    let bound = Duration::from_millis(req.capability.timeout_ms.saturating_mul(2).saturating_add(1_000));
    match call_within(&executors, bound, |r| ExecutorMsg::Execute(req, r)).await {
        Ok(result) => result,
        Err(e) => ExecResult { outcome: AttemptOutcome::Retryable { error: format!("executor: {e}") }, latency_ms: 0 },
    }
}

/// Casts `Run` for every dispatch to this node as it commits.
fn forward_dispatches(rt: &Runtime, myself: ActorRef<WorkerMsg>) {
    let mut events = rt.ledger.subscribe();
    let me = rt.node.clone();
    tokio::spawn(async move {
        loop {
            let msg = match events.recv().await {
                Ok(e) if matches!(&e.data, EventData::ActionDispatched { node, .. } if *node == me) => {
                    e.action_id.clone().map(WorkerMsg::Run)
                }
                Ok(_) => None,
                Err(RecvError::Lagged(_)) => Some(WorkerMsg::Reconcile),
                Err(RecvError::Closed) => return,
            };
            if let Some(msg) = msg {
                if myself.cast(msg).is_err() {
                    return;
                }
            }
        }
    });
}

impl Actor for Worker {
    type Msg = WorkerMsg;
    type State = Arc<Runtime>;
    type Arguments = WorkerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: WorkerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let rt = args.rt;
        forward_dispatches(&rt, myself.clone());
        if args.fresh_process.swap(false, Ordering::AcqRel) {
            let orphans = assigned_here(&rt);
            if !orphans.is_empty() {
                tracing::info!(node = %rt.node, orphans = orphans.len(), "taking over attempts a previous process left");
            }
            for orphan in orphans {
                take_over_orphan(&rt, orphan);
            }
        } else {
            // Restarted actor: its tasks live on; start whatever was assigned meanwhile.
            let _ = myself.cast(WorkerMsg::Reconcile);
        }
        myself.send_interval(RECONCILE_EVERY, || WorkerMsg::Reconcile);
        Ok(rt)
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        rt: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkerMsg::Run(id) => run(rt, &id),
            WorkerMsg::Reconcile => {
                for a in assigned_here(rt) {
                    if !rt.tasks.contains(&task_key(&a.id, a.attempt))
                        && !rt.tasks.contains(&format!("orphan:{}", a.id))
                    {
                        run(rt, &a.id);
                    }
                }
            }
        }
        Ok(())
    }
}

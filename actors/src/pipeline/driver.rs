//! Drivers: one task per executing action, taking it from dispatch to a
//! terminal state (breaker check, executor call, retries with backoff); and
//! one timer per action awaiting confirmation. Every step is a command, so a
//! node that restarts resumes each action where the log left it, with the
//! same idempotency key.

use crate::breaker::BreakerMsg;
use crate::command::{Command, Response};
use crate::directory::{call, call_within};
use crate::domain::{Action, ActionState, AttemptOutcome};
use crate::error::{Result, WardenError};
use crate::executor::{ExecRequest, ExecResult, ExecutorMsg};
use crate::node::{BREAKERS, EXECUTORS};
use crate::runtime::Runtime;
use crate::store::now_ms;
use std::sync::Arc;
use std::time::Duration;

/// Restarts drivers and timers for every unfinished action this node owns;
/// returns how many.
pub fn resume(rt: &Arc<Runtime>) -> Result<usize> {
    let active: Vec<Action> = rt.store.active_actions()?.into_iter().filter(|a| a.owner == rt.node).collect();
    for action in &active {
        match action.state {
            ActionState::Pending | ActionState::Running => start(rt, action.clone()),
            ActionState::AwaitingConfirmation => arm_expiry(rt, action),
            _ => {}
        }
    }
    Ok(active.len())
}

/// First and longest pause before a driver retries after a transient error.
const DRIVER_RETRY_MIN: Duration = Duration::from_millis(50);
const DRIVER_RETRY_MAX: Duration = Duration::from_secs(5);
/// How often an expiry that the log found "not due yet" is tried again.
const EXPIRY_RECHECK: Duration = Duration::from_millis(100);

pub fn start(rt: &Arc<Runtime>, action: Action) {
    let key = format!("drive:{}", action.id);
    let task_rt = rt.clone();
    rt.tasks.spawn_unique(key, async move {
        let id = action.id.clone();
        let mut action = action;
        let mut pause = DRIVER_RETRY_MIN;
        loop {
            match drive(&task_rt, action).await {
                Ok(()) => return,
                // A restarting actor or a failed commit passes: try again from the log's view.
                Err(e @ (WardenError::Unavailable(_) | WardenError::Storage(_))) => {
                    tracing::warn!(action = %id, error = %e, ?pause, "driver retrying after a transient error");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(DRIVER_RETRY_MAX);
                    action = match task_rt.store.action(&id) {
                        Ok(Some(a)) if !a.state.is_terminal() => a,
                        _ => return,
                    };
                }
                Err(e) => {
                    // e.g. a stale attempt: someone else drives this action now.
                    tracing::warn!(action = %id, error = %e, "driver stopped before a terminal state");
                    return;
                }
            }
        }
    });
}

pub fn arm_expiry(rt: &Arc<Runtime>, action: &Action) {
    let Some(deadline) = action.confirm_deadline_ms else { return };
    let id = action.id.clone();
    let task_rt = rt.clone();
    rt.tasks.spawn_unique(format!("expire:{id}"), async move {
        let wait = deadline.saturating_sub(now_ms());
        tokio::time::sleep(Duration::from_millis(wait)).await;
        loop {
            match task_rt.ledger.propose(Command::ExpireConfirmation { action_id: id.clone() }).await {
                Ok(_) => return,
                Err(e) => {
                    // Confirmed meanwhile is the expected race; anything else
                    // (a clock that stepped back, a failed commit) is retried
                    // while the action still waits.
                    let waiting = matches!(task_rt.store.action(&id),
                        Ok(Some(a)) if a.state == ActionState::AwaitingConfirmation);
                    if !waiting {
                        return;
                    }
                    tracing::debug!(action = %id, error = %e, "expiry not applied yet; retrying");
                    tokio::time::sleep(EXPIRY_RECHECK).await;
                }
            }
        }
    });
}

async fn drive(rt: &Runtime, mut action: Action) -> Result<()> {
    let capability = rt.catalog.get(&action.capability)?;
    while !action.state.is_terminal() {
        let attempt = action.current_attempt() + 1;
        let breakers = rt.directory.get::<BreakerMsg>(BREAKERS)?;
        let admitted = call(&breakers, |r| BreakerMsg::Admit(capability.name.clone(), r)).await?;
        let (outcome, latency_ms) = if admitted {
            let dispatched = rt.ledger.propose(Command::Dispatch { action_id: action.id.clone(), attempt }).await;
            action = match dispatched.and_then(as_action) {
                Ok(a) => a,
                Err(e) => {
                    // The attempt never reaches the tool: give back a half-open probe slot.
                    let _ = breakers.cast(BreakerMsg::Release(capability.name.clone()));
                    return Err(e);
                }
            };
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
            if let Ok(b) = rt.directory.get::<BreakerMsg>(BREAKERS) {
                let _ = b.cast(BreakerMsg::Record(capability.name.clone(), breaker_ok));
            }
            (result.outcome, result.latency_ms)
        } else {
            (AttemptOutcome::BreakerOpen, 0)
        };
        let finish = Command::FinishAttempt { action_id: action.id.clone(), attempt, outcome, latency_ms };
        match rt.ledger.propose(finish).await? {
            Response::AttemptDone { action: next, retry_after_ms } => {
                action = *next;
                if let Some(ms) = retry_after_ms {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
            }
            other => return Err(WardenError::Storage(format!("unexpected response {other:?}"))),
        }
    }
    Ok(())
}

/// Calls the Executors actor. If it is down (it crashed mid-call), the attempt
/// is a retryable failure: the supervisor restarts it and the retry goes on.
async fn execute(rt: &Runtime, req: ExecRequest) -> ExecResult {
    let executors = match rt.directory.get::<ExecutorMsg>(EXECUTORS) {
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

fn as_action(response: Response) -> Result<Action> {
    match response {
        Response::Action { action, .. } => Ok(*action),
        other => Err(WardenError::Storage(format!("unexpected response {other:?}"))),
    }
}

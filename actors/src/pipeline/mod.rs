//! Pipeline: admission and authorization of actions, confirmations and DLQ
//! replays. It validates, asks the PolicyStore, and records the decision
//! through the log. From there the leader's Dispatcher (`dispatcher.rs`)
//! places each allowed action on an executor node, whose Worker
//! (`worker.rs`) runs the attempt and records its result; retries, takeovers
//! and the DLQ follow from those records. The actor never waits on the log
//! itself, so submissions from many callers share commits, and admits each
//! submission on a task of its own (`MAX_ADMITTING` at once), so decisions
//! run in parallel.

pub mod dispatcher;
pub mod worker;

use crate::authz::{PolicyInput, PolicyPrincipal};
use crate::command::{Command, Response};
use crate::directory::{ActorName, ChildSpec};
use crate::domain::{Action, Trust};
use crate::error::{Result, WardenError};
use crate::ids::*;
use crate::limits::{MAX_ACTIVE_ACTIONS, MAX_ARGS_BYTES};
use crate::runtime::Runtime;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorMessage;
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub(crate) use dispatcher::may_run;
pub use dispatcher::{Dispatcher, DispatcherMsg};
pub use worker::{Worker, WorkerArgs, WorkerMsg, ATTEMPT_TASK_PREFIX};

/// An agent's request to run a tool.
#[derive(Clone, Debug)]
pub struct SubmitRequest {
    pub turn_id: TurnId,
    pub capability: String,
    pub args: Value,
    pub idempotency_key: Option<IdempotencyKey>,
    /// Who sent it (on a node with tokens): recorded on the action as
    /// `submitted_by`, and the policy's `input.principal`.
    pub principal: Option<PolicyPrincipal>,
}

#[derive(RactorMessage)]
pub enum PipelineMsg {
    Submit(SubmitRequest, RpcReplyPort<Result<Action>>),
    Confirm {
        action_id: ActionId,
        approve: bool,
        by: String,
        reply: RpcReplyPort<Result<Action>>,
    },
    /// Re-runs a dead-lettered action for the principal (if any); replies with the new action.
    ReplayDlq(DlqId, Option<String>, RpcReplyPort<Result<Action>>),
}

pub struct Pipeline;

/// The actor's name in the node's directory.
pub const NAME: ActorName<PipelineMsg> = ActorName::new("pipeline");

pub fn child(rt: &Arc<Runtime>) -> ChildSpec {
    let rt = rt.clone();
    ChildSpec::new(NAME, move || (Pipeline, rt.clone()))
}

/// Submissions and replays admitted at once, each on a task of its own:
/// validation reads the store and the decision runs the policy, so they
/// run in parallel rather than one after another in the actor. At the
/// limit the actor waits for a slot, and its mailbox holds the rest.
pub const MAX_ADMITTING: usize = 64;

pub struct PipelineState {
    rt: Arc<Runtime>,
    admitting: Arc<Semaphore>,
}

impl Actor for Pipeline {
    type Msg = PipelineMsg;
    type State = PipelineState;
    type Arguments = Arc<Runtime>;

    async fn pre_start(&self, _: ActorRef<Self::Msg>, rt: Arc<Runtime>) -> Result<Self::State, ActorProcessingErr> {
        Ok(PipelineState { rt, admitting: Arc::new(Semaphore::new(MAX_ADMITTING)) })
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let rt = state.rt.clone();
        match msg {
            PipelineMsg::Submit(req, reply) => {
                let slot = state.admitting.clone().acquire_owned().await?;
                let decide = move || {
                    let (rt, req) = (rt.clone(), req.clone());
                    async move { admit(&rt, &req).await }
                };
                admit_then_propose(&state.rt, Some(slot), decide, reply);
            }
            PipelineMsg::Confirm { action_id, approve, by, reply } => {
                if by.trim().is_empty() {
                    let _ = reply.send(Err(WardenError::BadInput("confirmation needs `by`".into())));
                } else {
                    let cmd = Command::Confirm { action_id, approve, by };
                    admit_then_propose(&rt, None, move || std::future::ready(Ok(cmd.clone())), reply);
                }
            }
            PipelineMsg::ReplayDlq(dlq_id, principal, reply) => {
                let slot = state.admitting.clone().acquire_owned().await?;
                let decide = move || {
                    let (rt, dlq_id, principal) = (rt.clone(), dlq_id.clone(), principal.clone());
                    async move { admit_replay(&rt, &dlq_id, principal).await }
                };
                admit_then_propose(&state.rt, Some(slot), decide, reply);
            }
        }
        Ok(())
    }
}

/// Validates a submission and decides it; returns the command that records it.
async fn admit(rt: &Runtime, req: &SubmitRequest) -> Result<Command> {
    let capability = rt.catalog.get(&req.capability)?;
    let args = match &req.args {
        Value::Null => Value::Object(Default::default()),
        Value::Object(_) => req.args.clone(),
        other => return Err(WardenError::BadInput(format!("args must be a JSON object, got {other}"))),
    };
    let size = serde_json::to_vec(&args).map_or(usize::MAX, |v| v.len());
    if size > MAX_ARGS_BYTES {
        return Err(WardenError::BadInput(format!("args are {size} bytes; the limit is {MAX_ARGS_BYTES}")));
    }
    let (session, trust) = session_of_turn(rt, &req.turn_id).await?;
    if rt.store.active_count()? >= MAX_ACTIVE_ACTIONS {
        return Err(WardenError::Overloaded(format!("{MAX_ACTIVE_ACTIONS} actions are already active")));
    }
    let input = PolicyInput::new(capability.clone(), args.clone(), trust)
        .in_turn(session, req.turn_id.clone())
        .by(req.principal.clone());
    let decision = rt.policy.decide(&input);
    Ok(Command::SubmitAction {
        action_id: ActionId::generate(),
        turn_id: req.turn_id.clone(),
        capability: capability.name.clone(),
        args,
        idempotency_key: req.idempotency_key.clone(),
        decision,
        max_attempts: capability.max_attempts,
        backoff_ms: capability.backoff_ms,
        confirm_ttl_ms: rt.config.confirm_ttl_ms,
        submitted_by: req.principal.as_ref().map(|p| p.name.clone()),
    })
}

/// The session a turn belongs to, and how much it is trusted. A turn opened
/// through another node may not have been applied here yet: unknown here, it
/// is looked up again after a read barrier before the submission is refused.
async fn session_of_turn(rt: &Runtime, turn_id: &TurnId) -> Result<(SessionId, Trust)> {
    let turn = match rt.store.turn(turn_id)? {
        Some(turn) => turn,
        None => {
            rt.ledger.consensus().read_barrier().await?;
            rt.store.turn(turn_id)?.ok_or_else(|| WardenError::UnknownTurn(turn_id.to_string()))?
        }
    };
    let trust = rt.store.session(&turn.session_id)?.map_or(Trust::Normal, |s| s.trust);
    Ok((turn.session_id, trust))
}

/// A replay is decided again, against the policy active now.
async fn admit_replay(rt: &Runtime, dlq_id: &DlqId, principal: Option<String>) -> Result<Command> {
    let entry = rt.store.dlq_entry(dlq_id)?.ok_or_else(|| WardenError::UnknownDlqEntry(dlq_id.to_string()))?;
    let original =
        rt.store.action(&entry.action_id)?.ok_or_else(|| WardenError::UnknownAction(entry.action_id.to_string()))?;
    let capability = rt.catalog.get(&original.capability)?;
    let (session, trust) = session_of_turn(rt, &original.turn_id).await?;
    let input = PolicyInput::new(capability, original.args.clone(), trust).in_turn(session, original.turn_id.clone());
    let decision = rt.policy.decide(&input);
    Ok(Command::ReplayDlq {
        dlq_id: dlq_id.clone(),
        new_action_id: ActionId::generate(),
        decision,
        confirm_ttl_ms: rt.config.confirm_ttl_ms,
        principal,
    })
}

/// How many times a submission is decided again because the cluster
/// activated another policy between its decision and its place in the log.
pub const MAX_POLICY_REDECISIONS: u32 = 3;

/// Off the actor: admits with `decide` (holding `slot` until it has
/// decided), proposes the command and replies with the resulting action;
/// the Dispatcher picks it up from the log. A decision the log refuses as
/// made under a policy no longer active (`StalePolicy`: an activation was
/// applied in between) is made again with `decide` and proposed again — by
/// then this node has applied the activation and decides with it.
fn admit_then_propose<F, Fut>(
    rt: &Arc<Runtime>,
    slot: Option<OwnedSemaphorePermit>,
    decide: F,
    reply: RpcReplyPort<Result<Action>>,
) where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Command>> + Send,
{
    let rt = rt.clone();
    tokio::spawn(async move {
        let admitted = decide().await;
        drop(slot);
        let mut cmd = match admitted {
            Ok(cmd) => cmd,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let mut redecided = 0;
        let result = loop {
            match rt.ledger.propose(cmd).await {
                Err(WardenError::StalePolicy { .. }) if redecided < MAX_POLICY_REDECISIONS => {
                    redecided += 1;
                    match decide().await {
                        Ok(again) => cmd = again,
                        Err(e) => break Err(e),
                    }
                }
                proposed => {
                    break proposed.and_then(|response| match response {
                        Response::Action { action, .. } | Response::Replayed { action, .. } => Ok(*action),
                        other => Err(WardenError::Storage(format!("unexpected response {other:?}"))),
                    })
                }
            }
        };
        let _ = reply.send(result);
    });
}

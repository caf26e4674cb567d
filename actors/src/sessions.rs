//! Sessions: agents' sessions and turns, and the model calls made in a turn.
//! A session is created by its first turn; a turn is the root of the causal
//! graph of everything it leads to.

use crate::command::{Command, Response};
use crate::directory::{ActorName, ChildSpec};
use crate::domain::{Session, Trust, Turn};
use crate::error::{Result, WardenError};
use crate::ids::*;
use crate::runtime::{propose_and_reply, Runtime};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorMessage;
use std::sync::Arc;

/// Longest turn summary or model name accepted.
pub const MAX_TEXT_LEN: usize = 4_096;

#[derive(Clone, Debug, Default)]
pub struct OpenTurnRequest {
    pub session_id: Option<SessionId>,
    pub correlation_id: Option<CorrelationId>,
    pub trust: Option<Trust>,
    pub summary: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ModelCallRequest {
    pub turn_id: TurnId,
    pub model: String,
    pub latency_ms: u64,
    pub ok: bool,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
}

#[derive(RactorMessage)]
pub enum SessionMsg {
    OpenTurn(OpenTurnRequest, RpcReplyPort<Result<Turn>>),
    /// Replies with the seq of the recorded `model.call` event.
    RecordModelCall(ModelCallRequest, RpcReplyPort<Result<u64>>),
    Active {
        since_ms: u64,
        reply: RpcReplyPort<Result<Vec<Session>>>,
    },
}

pub struct Sessions;

fn check_text(what: &str, s: &str) -> Result<()> {
    if s.len() > MAX_TEXT_LEN {
        return Err(WardenError::BadInput(format!("{what} is longer than {MAX_TEXT_LEN} bytes")));
    }
    Ok(())
}

/// The actor's name in the node's directory.
pub const NAME: ActorName<SessionMsg> = ActorName::new("sessions");

pub fn child(rt: &Arc<Runtime>) -> ChildSpec {
    let rt = rt.clone();
    ChildSpec::new(NAME, move || (Sessions, rt.clone()))
}

impl Actor for Sessions {
    type Msg = SessionMsg;
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
            SessionMsg::OpenTurn(req, reply) => {
                if let Err(e) = check_text("summary", req.summary.as_deref().unwrap_or("")) {
                    let _ = reply.send(Err(e));
                    return Ok(());
                }
                let cmd = Command::OpenTurn {
                    turn_id: TurnId::generate(),
                    session_id: req.session_id.unwrap_or_else(SessionId::generate),
                    correlation_id: req.correlation_id.unwrap_or_else(CorrelationId::generate),
                    trust: req.trust,
                    summary: req.summary,
                };
                propose_and_reply(&rt.ledger, cmd, reply, |r| match r {
                    Response::Turn(turn) => Some(turn),
                    _ => None,
                });
            }
            SessionMsg::RecordModelCall(req, reply) => {
                if req.model.is_empty() {
                    let _ = reply.send(Err(WardenError::BadInput("model must not be empty".into())));
                    return Ok(());
                }
                if let Err(e) = check_text("model", &req.model) {
                    let _ = reply.send(Err(e));
                    return Ok(());
                }
                let cmd = Command::RecordModelCall {
                    turn_id: req.turn_id,
                    model: req.model,
                    latency_ms: req.latency_ms,
                    ok: req.ok,
                    prompt_tokens: req.prompt_tokens,
                    completion_tokens: req.completion_tokens,
                };
                propose_and_reply(&rt.ledger, cmd, reply, |r| match r {
                    Response::Recorded { seq } => Some(seq),
                    _ => None,
                });
            }
            SessionMsg::Active { since_ms, reply } => {
                let _ = reply.send(rt.store.sessions_active_since(since_ms));
            }
        }
        Ok(())
    }
}

//! MemoryEngine: agents' memory. Writes go through the log (so they are
//! replicated and on the timeline); reads come from the local state; a recall
//! made for a turn is recorded as `memory.recall` with what it returned.

use crate::command::{Command, Response};
use crate::directory::{ActorName, ChildSpec};
use crate::domain::MemoryItem;
use crate::error::{Result, WardenError};
use crate::ids::{CorrelationId, TurnId};
use crate::limits::{MAX_MEMORY_VALUE_BYTES, MAX_TAGS};
use crate::runtime::{propose_and_reply, Runtime};
use crate::store::RecallQuery;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorMessage;
use serde_json::{json, Value};
use std::sync::Arc;

/// Longest namespace, key or tag.
pub const MAX_NAME_LEN: usize = 256;

#[derive(Clone, Debug)]
pub struct PutRequest {
    pub ns: String,
    pub key: String,
    pub value: Value,
    pub tags: Vec<String>,
    pub turn_id: Option<TurnId>,
    pub correlation_id: CorrelationId,
}

#[derive(RactorMessage)]
pub enum MemoryMsg {
    Put(PutRequest, RpcReplyPort<Result<MemoryItem>>),
    Get { ns: String, key: String, reply: RpcReplyPort<Result<Option<MemoryItem>>> },
    Recall { ns: String, query: RecallQuery, turn_id: Option<TurnId>, reply: RpcReplyPort<Result<Vec<MemoryItem>>> },
}

pub struct MemoryEngine;

fn check_name(what: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() > MAX_NAME_LEN || s.chars().any(char::is_control) {
        return Err(WardenError::BadInput(format!("{what} must be 1..={MAX_NAME_LEN} printable characters")));
    }
    Ok(())
}

fn validate(req: &PutRequest) -> Result<()> {
    check_name("namespace", &req.ns)?;
    check_name("key", &req.key)?;
    if req.tags.len() > MAX_TAGS {
        return Err(WardenError::BadInput(format!("at most {MAX_TAGS} tags")));
    }
    for tag in &req.tags {
        check_name("tag", tag)?;
    }
    let size = serde_json::to_vec(&req.value).map_or(usize::MAX, |v| v.len());
    if size > MAX_MEMORY_VALUE_BYTES {
        return Err(WardenError::BadInput(format!("value is {size} bytes; the limit is {MAX_MEMORY_VALUE_BYTES}")));
    }
    Ok(())
}

/// The actor's name in the node's directory.
pub const NAME: ActorName<MemoryMsg> = ActorName::new("memory_engine");

pub fn child(rt: &Arc<Runtime>) -> ChildSpec {
    let rt = rt.clone();
    ChildSpec::new(NAME, move || (MemoryEngine, rt.clone()))
}

impl Actor for MemoryEngine {
    type Msg = MemoryMsg;
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
            MemoryMsg::Put(req, reply) => {
                if let Err(e) = validate(&req) {
                    let _ = reply.send(Err(e));
                    return Ok(());
                }
                let cmd = Command::PutMemory {
                    ns: req.ns,
                    key: req.key,
                    value: req.value,
                    tags: req.tags,
                    turn_id: req.turn_id,
                    correlation_id: req.correlation_id,
                };
                propose_and_reply(&rt.ledger, cmd, reply, |r| match r {
                    Response::Memory(item) => Some(item),
                    _ => None,
                });
            }
            MemoryMsg::Get { ns, key, reply } => {
                let _ = reply.send(rt.store.memory(&ns, &key));
            }
            MemoryMsg::Recall { ns, query, turn_id, reply } => {
                let items = match check_name("namespace", &ns).and_then(|()| rt.store.recall(&ns, &query)) {
                    Ok(items) => items,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return Ok(());
                    }
                };
                let Some(turn_id) = turn_id else {
                    let _ = reply.send(Ok(items));
                    return Ok(());
                };
                let ledger = rt.ledger.clone();
                tokio::spawn(async move {
                    let cmd = Command::RecordRecall {
                        turn_id,
                        ns,
                        query: json!({"prefix": query.prefix, "tag": query.tag, "q": query.text, "limit": query.limit}),
                        hits: items.iter().map(|i| i.key.clone()).collect(),
                    };
                    let _ = reply.send(ledger.propose(cmd).await.map(|_| items));
                });
            }
        }
        Ok(())
    }
}

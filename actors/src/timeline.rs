//! Timeline: queries over the event log — a window, everything after a seq,
//! one correlation id's causal graph, and a DLQ entry's provenance back to the
//! turn that caused it.

use crate::directory::{ActorName, ChildSpec};
use crate::domain::Event;
use crate::error::{Result, WardenError};
use crate::ids::{CorrelationId, DlqId};
use crate::limits::MAX_QUERY_LIMIT;
use crate::runtime::Runtime;
use crate::store::{Store, TimelineQuery};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorMessage;
use serde::Serialize;
use std::sync::Arc;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Edge {
    pub from: u64,
    pub to: u64,
    pub kind: &'static str,
}

/// A correlation id's events and their cause → effect edges.
#[derive(Clone, Debug, Serialize)]
pub struct CorrelationGraph {
    pub correlation_id: CorrelationId,
    pub nodes: Vec<Event>,
    pub edges: Vec<Edge>,
}

#[derive(RactorMessage)]
pub enum TimelineMsg {
    Query(TimelineQuery, RpcReplyPort<Result<Vec<Event>>>),
    Graph(CorrelationId, RpcReplyPort<Result<CorrelationGraph>>),
    /// The causal chain from the originating turn down to the DLQ entry.
    Provenance(DlqId, RpcReplyPort<Result<Vec<Event>>>),
}

pub struct Timeline;

pub fn graph(store: &Store, id: &CorrelationId) -> Result<CorrelationGraph> {
    let nodes = store.events_by_correlation(id, Some(MAX_QUERY_LIMIT))?;
    let edges =
        nodes.iter().filter_map(|e| e.causation_seq.map(|from| Edge { from, to: e.seq, kind: "caused" })).collect();
    Ok(CorrelationGraph { correlation_id: id.clone(), nodes, edges })
}

/// Follows `causation_seq` from the entry's `dlq.entered` event to the root.
pub fn provenance(store: &Store, id: &DlqId) -> Result<Vec<Event>> {
    let entry = store.dlq_entry(id)?.ok_or_else(|| WardenError::UnknownDlqEntry(id.to_string()))?;
    let mut chain = Vec::new();
    let mut next = Some(entry.entered_seq);
    while let Some(seq) = next {
        let event = store.event(seq)?.ok_or_else(|| WardenError::Storage(format!("event {seq} is missing")))?;
        // Causes always precede effects in the log: a cycle would be a bug.
        assert!(event.causation_seq.is_none_or(|c| c < seq), "causation must point backwards");
        next = event.causation_seq;
        chain.push(event);
    }
    chain.reverse();
    Ok(chain)
}

/// The actor's name in the node's directory.
pub const NAME: ActorName<TimelineMsg> = ActorName::new("timeline");

pub fn child(rt: &Arc<Runtime>) -> ChildSpec {
    let store = rt.store.clone();
    ChildSpec::new(NAME, move || (Timeline, store.clone()))
}

impl Actor for Timeline {
    type Msg = TimelineMsg;
    type State = Store;
    type Arguments = Store;

    async fn pre_start(&self, _: ActorRef<Self::Msg>, store: Store) -> Result<Self::State, ActorProcessingErr> {
        Ok(store)
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        store: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TimelineMsg::Query(q, reply) => {
                let _ = reply.send(store.timeline(&q));
            }
            TimelineMsg::Graph(id, reply) => {
                let _ = reply.send(graph(store, &id));
            }
            TimelineMsg::Provenance(id, reply) => {
                let _ = reply.send(provenance(store, &id));
            }
        }
        Ok(())
    }
}

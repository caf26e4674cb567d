//! Timeline: queries over the event log — a window, everything after a seq,
//! one correlation id's causal graph, and a DLQ entry's provenance back to the
//! turn that caused it.

use crate::directory::{ActorName, ChildSpec};
use crate::domain::{
    Action, ActionState, AttemptOutcome, Decision, DlqEntry, Event, EventData, EventKind, Session, Turn,
};
use crate::error::{Result, WardenError};
use crate::ids::{ActionId, CorrelationId, DlqId};
use crate::limits::MAX_QUERY_LIMIT;
use crate::runtime::Runtime;
use crate::store::{Incidents, Store, TimelinePage, TimelineQuery};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorMessage;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// A cause → effect edge of a correlation graph. `kind` says what `to` is
/// to `from`: `caused` (plain causation), `decided_by` (the policy decision of
/// the action `from` submitted), `confirmed_by` (the answer to a confirmation
/// request), `attempt_of` (a dispatch or attempt of the action), `took_over`
/// (an attempt moved to another node), `replayed_as` (a dead-letter entry
/// re-run, and the replay's submission), `alerted` (an alert raised or
/// resolved by the event).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Edge {
    pub from: u64,
    pub to: u64,
    pub kind: &'static str,
    /// The log records no cause for `to`: it hangs off the root so that the
    /// graph stays connected.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub inferred: bool,
}

/// A correlation id's events, the alerts they raised, and their edges: a
/// DAG whose every node is reachable from `root` (the turn's `turn.opened`,
/// else the correlation's first event).
#[derive(Clone, Debug, Serialize)]
pub struct CorrelationGraph {
    pub correlation_id: CorrelationId,
    pub root: Option<u64>,
    pub nodes: Vec<Event>,
    pub edges: Vec<Edge>,
}

#[derive(RactorMessage)]
pub enum TimelineMsg {
    Query(TimelineQuery, RpcReplyPort<Result<Vec<Event>>>),
    /// One page of a (filtered) timeline query.
    Page(TimelineQuery, RpcReplyPort<Result<TimelinePage>>),
    /// An incident window: incident events and their causes.
    Incidents(TimelineQuery, RpcReplyPort<Result<Incidents>>),
    Graph(CorrelationId, RpcReplyPort<Result<CorrelationGraph>>),
    /// The causal chain from the originating turn down to the DLQ entry.
    Provenance(DlqId, RpcReplyPort<Result<Vec<Event>>>),
    /// The entry's whole provenance (`Provenance`).
    ProvenanceOf(DlqId, RpcReplyPort<Result<Box<Provenance>>>),
}

pub struct Timeline;

/// The edge kind from an event to `child`, which it caused.
fn edge_kind(child: &Event) -> &'static str {
    match &child.data {
        EventData::PolicyDecided { .. } => "decided_by",
        EventData::ConfirmationGiven { .. } | EventData::ConfirmationExpired { .. } => "confirmed_by",
        EventData::ActionDispatched { takeover: true, .. } | EventData::ActionTakeover { .. } => "took_over",
        EventData::ActionDispatched { .. } | EventData::ActionAttempt { .. } => "attempt_of",
        EventData::DlqReplayed { .. } | EventData::ActionSubmitted { replay_of: Some(_), .. } => "replayed_as",
        EventData::AlertRaised { .. } | EventData::AlertResolved { .. } | EventData::AlertDelivered { .. } => "alerted",
        _ => "caused",
    }
}

pub fn graph(store: &Store, id: &CorrelationId) -> Result<CorrelationGraph> {
    let mut nodes = store.events_by_correlation(id, Some(MAX_QUERY_LIMIT))?;
    // Alerts this correlation's events raised or resolved (they carry their
    // own correlation id, the alert's episode key).
    let alerted = TimelineQuery { limit: Some(MAX_QUERY_LIMIT), ..TimelineQuery::default() };
    nodes.extend(store.alerted_by(id, &alerted)?);
    nodes.sort_by_key(|e| e.seq);
    nodes.dedup_by_key(|e| e.seq);
    let root = nodes.iter().find(|e| e.kind() == EventKind::TurnOpened).or(nodes.first()).map(|e| e.seq);
    let present: HashSet<u64> = nodes.iter().map(|e| e.seq).collect();
    let mut edges = Vec::new();
    // The action each `action.submitted` starts, to link every attempt to it.
    let mut submitted: HashMap<&ActionId, u64> = HashMap::new();
    for e in &nodes {
        if Some(e.seq) == root {
            continue;
        }
        match e.causation_seq.filter(|c| present.contains(c)) {
            Some(from) => edges.push(Edge { from, to: e.seq, kind: edge_kind(e), inferred: false }),
            None => {
                if let Some(from) = root {
                    edges.push(Edge { from, to: e.seq, kind: edge_kind(e), inferred: true });
                }
            }
        }
        match (&e.data, &e.action_id) {
            (EventData::ActionSubmitted { .. }, Some(a)) => {
                submitted.insert(a, e.seq);
            }
            (EventData::ActionAttempt { .. }, Some(a)) => {
                if let Some(&from) = submitted.get(a) {
                    if e.causation_seq != Some(from) {
                        edges.push(Edge { from, to: e.seq, kind: "attempt_of", inferred: false });
                    }
                }
            }
            _ => {}
        }
    }
    Ok(CorrelationGraph { correlation_id: id.clone(), root, nodes, edges })
}

/// The graph as OTLP/JSON trace data (`ExportTraceServiceRequest`): one
/// span per event, its tree edge as the parent span, every other edge as a
/// span link; a trace viewer loads it as one trace.
pub fn otlp_json(graph: &CorrelationGraph) -> serde_json::Value {
    use serde_json::json;
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(graph.correlation_id.as_str().as_bytes());
    let trace_id: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let span_id = |seq: u64| format!("{seq:016x}");
    let str_attr = |k: &str, v: String| json!({"key": k, "value": {"stringValue": v}});
    let mut parent: HashMap<u64, &Edge> = HashMap::new();
    let mut links: HashMap<u64, Vec<&Edge>> = HashMap::new();
    for edge in &graph.edges {
        // The first edge into an event is its tree edge (`graph` pushes it first).
        match parent.entry(edge.to) {
            std::collections::hash_map::Entry::Occupied(_) => links.entry(edge.to).or_default().push(edge),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(edge);
            }
        }
    }
    let spans: Vec<serde_json::Value> = graph
        .nodes
        .iter()
        .map(|e| {
            let nanos = (e.ts as u128 * 1_000_000).to_string();
            let mut attributes = vec![
                str_attr("warden.seq", e.seq.to_string()),
                str_attr("warden.kind", e.kind().as_str().to_owned()),
                str_attr("warden.node", e.node.clone()),
                str_attr("warden.correlation_id", e.correlation_id.to_string()),
            ];
            if let Some(a) = &e.action_id {
                attributes.push(str_attr("warden.action_id", a.to_string()));
            }
            if let Some(s) = &e.session_id {
                attributes.push(str_attr("warden.session_id", s.to_string()));
            }
            if let Some(t) = &e.turn_id {
                attributes.push(str_attr("warden.turn_id", t.to_string()));
            }
            if let Ok(serde_json::Value::Object(data)) = e.data.to_json() {
                for (k, v) in data {
                    let text = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    attributes.push(str_attr(&format!("warden.data.{k}"), text));
                }
            }
            let edge_links: Vec<serde_json::Value> = links
                .get(&e.seq)
                .into_iter()
                .flatten()
                .map(|l| {
                    json!({"traceId": trace_id, "spanId": span_id(l.from),
                           "attributes": [str_attr("warden.edge", l.kind.to_owned())]})
                })
                .collect();
            if let Some(edge) = parent.get(&e.seq) {
                attributes.push(str_attr("warden.edge", edge.kind.to_owned()));
            }
            json!({
                "traceId": trace_id,
                "spanId": span_id(e.seq),
                "parentSpanId": parent.get(&e.seq).map(|p| span_id(p.from)).unwrap_or_default(),
                "name": e.kind().as_str(),
                "kind": 1,
                "startTimeUnixNano": nanos,
                "endTimeUnixNano": nanos,
                "attributes": attributes,
                "links": edge_links,
            })
        })
        .collect();
    json!({"resourceSpans": [{
        "resource": {"attributes": [str_attr("service.name", "warden".to_owned())]},
        "scopeSpans": [{"scope": {"name": "warden.timeline"}, "spans": spans}],
    }]})
}

/// Follows `causation_seq` from the entry's `dlq.entered` event to the root.
pub fn provenance(store: &Store, id: &DlqId) -> Result<Vec<Event>> {
    let entry = store.dlq_entry(id)?.ok_or_else(|| WardenError::UnknownDlqEntry(id.to_string()))?;
    chain_to_root(store, entry.entered_seq)
}

fn chain_to_root(store: &Store, from: u64) -> Result<Vec<Event>> {
    let mut chain = Vec::new();
    let mut next = Some(from);
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

/// One attempt of a dead-lettered action.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AttemptTrace {
    pub attempt: u32,
    /// The node that ran it.
    pub node: String,
    pub outcome: Option<AttemptOutcome>,
    pub latency_ms: Option<u64>,
    /// The leader that dispatched it.
    pub dispatched_by: Option<String>,
    /// It took over an interrupted attempt (on `took_over_from`).
    pub takeover: bool,
    pub took_over_from: Option<String>,
    pub takeover_reason: Option<String>,
}

/// A link in a chain of replays: entry `dlq_id` held action `action_id`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ReplayLink {
    pub dlq_id: DlqId,
    pub action_id: ActionId,
}

/// A replay of the entry: the action, its state, and its own entry if it
/// was dead-lettered again.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ReplayTrace {
    pub action_id: ActionId,
    pub state: Option<ActionState>,
    pub dlq_id: Option<DlqId>,
}

/// Who answered the action's confirmation request.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ConfirmationTrace {
    pub principal: String,
    pub approve: bool,
}

/// A dead-letter entry's provenance: everything from the entry back to the
/// session, and the replays in both directions.
#[derive(Clone, Debug, Serialize)]
pub struct Provenance {
    pub dlq_id: DlqId,
    /// The causal chain, turn.opened first, dlq.entered last.
    pub chain: Vec<Event>,
    pub entry: DlqEntry,
    pub action: Action,
    pub attempts: Vec<AttemptTrace>,
    pub decision: Decision,
    pub confirmation: Option<ConfirmationTrace>,
    pub turn: Turn,
    /// The turn's `model.call` and `memory.recall` events.
    pub model_calls: Vec<Event>,
    pub memory_recalls: Vec<Event>,
    pub session: Option<Session>,
    /// The entries this action re-ran, nearest first: a replay of a replay
    /// names both.
    pub replay_of: Vec<ReplayLink>,
    pub replays: Vec<ReplayTrace>,
    /// Every link above resolved: the chain runs from this turn's
    /// `turn.opened` to this entry's `dlq.entered`, the action, turn and
    /// session exist, and every replay ancestor was found.
    pub complete: bool,
}

/// How many replay ancestors `provenance_of` follows at most.
pub const MAX_REPLAY_DEPTH: usize = 64;

pub fn provenance_of(store: &Store, id: &DlqId) -> Result<Provenance> {
    let entry = store.dlq_entry(id)?.ok_or_else(|| WardenError::UnknownDlqEntry(id.to_string()))?;
    let chain = chain_to_root(store, entry.entered_seq)?;
    let missing = |what: &str| WardenError::Storage(format!("{what} of {id} is missing"));
    let action = store.action(&entry.action_id)?.ok_or_else(|| missing("the action"))?;
    let turn = store.turn(&entry.turn_id)?.ok_or_else(|| missing("the turn"))?;
    let session = store.session(&turn.session_id)?;
    let of_action = TimelineQuery {
        action_id: Some(action.id.to_string()),
        limit: Some(MAX_QUERY_LIMIT),
        ..TimelineQuery::default()
    };
    let action_events: Vec<Event> =
        store.timeline(&of_action)?.into_iter().filter(|e| e.action_id.as_ref() == Some(&action.id)).collect();
    let attempts = action
        .attempts
        .iter()
        .map(|a| {
            let dispatch = action_events.iter().find_map(|e| match &e.data {
                EventData::ActionDispatched { attempt, by, takeover, .. } if *attempt == a.number => {
                    Some((by.clone(), *takeover))
                }
                _ => None,
            });
            let takeover = action_events.iter().find_map(|e| match &e.data {
                EventData::ActionTakeover { attempt, from, reason, .. } if *attempt == a.number => {
                    Some((from.clone(), reason.clone()))
                }
                _ => None,
            });
            AttemptTrace {
                attempt: a.number,
                node: a.node.clone(),
                outcome: a.outcome.clone(),
                latency_ms: a.latency_ms,
                dispatched_by: dispatch.as_ref().map(|d| d.0.clone()),
                takeover: dispatch.is_some_and(|d| d.1) || takeover.is_some(),
                took_over_from: takeover.as_ref().map(|t| t.0.clone()),
                takeover_reason: takeover.and_then(|t| t.1),
            }
        })
        .collect();
    let confirmation = action_events.iter().find_map(|e| match &e.data {
        EventData::ConfirmationGiven { approve, by } => {
            Some(ConfirmationTrace { principal: by.clone(), approve: *approve })
        }
        _ => None,
    });
    let turn_events = store.events_by_correlation(&turn.correlation_id, Some(MAX_QUERY_LIMIT))?;
    let of_turn = |kind: EventKind| -> Vec<Event> {
        turn_events.iter().filter(|e| e.kind() == kind && e.turn_id.as_ref() == Some(&turn.id)).cloned().collect()
    };
    let (model_calls, memory_recalls) = (of_turn(EventKind::ModelCall), of_turn(EventKind::MemoryRecall));
    let mut replay_of = Vec::new();
    let mut ancestors_found = true;
    let mut next = action.replay_of.clone();
    while let Some(dlq_id) = next.take() {
        if replay_of.len() >= MAX_REPLAY_DEPTH {
            ancestors_found = false;
            break;
        }
        let Some(earlier) = store.dlq_entry(&dlq_id)? else {
            ancestors_found = false;
            break;
        };
        next = store.action(&earlier.action_id)?.and_then(|a| a.replay_of);
        replay_of.push(ReplayLink { dlq_id, action_id: earlier.action_id });
    }
    let mut replays = Vec::new();
    for action_id in &entry.replays {
        let replayed = store.action(action_id)?;
        let own = DlqId(format!("dlq_{}", action_id.as_str().trim_start_matches("act_")));
        let dlq_id = store.dlq_entry(&own)?.filter(|e| &e.action_id == action_id).map(|e| e.id);
        replays.push(ReplayTrace { action_id: action_id.clone(), state: replayed.map(|a| a.state), dlq_id });
    }
    let complete = ancestors_found
        && session.is_some()
        && chain.first().is_some_and(|e| e.kind() == EventKind::TurnOpened && e.seq == turn.opened_seq)
        && chain.last().is_some_and(|e| e.seq == entry.entered_seq);
    Ok(Provenance {
        dlq_id: id.clone(),
        chain,
        decision: action.decision.clone(),
        entry,
        action,
        attempts,
        confirmation,
        turn,
        model_calls,
        memory_recalls,
        session,
        replay_of,
        replays,
        complete,
    })
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
            TimelineMsg::Page(q, reply) => {
                let _ = reply.send(store.timeline_page(&q));
            }
            TimelineMsg::Incidents(q, reply) => {
                let _ = reply.send(store.incidents(&q));
            }
            TimelineMsg::Provenance(id, reply) => {
                let _ = reply.send(provenance(store, &id));
            }
            TimelineMsg::ProvenanceOf(id, reply) => {
                let _ = reply.send(provenance_of(store, &id).map(Box::new));
            }
        }
        Ok(())
    }
}

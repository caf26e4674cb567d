//! Secondary indexes of the timeline: `(key, seq)` rows, so that a filtered
//! timeline query walks only the events it can return. The index is derived
//! from the events (and the actions' capabilities): it is not in the state
//! digest nor in snapshots. Its rows are written to a file of their own, off
//! the log's writer thread (`super::event_index`); a query reads events the
//! index has not reached yet from the events table and checks them with
//! `keys_of` too. This file knows the keys, not the tables.

use crate::domain::{alert, Event, EventData, EventKind};

/// One index a query can walk. Its key in the table is `<tag>\0<value>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexKey<'a> {
    Kind(&'a str),
    /// The node that recorded the event, or a node the event is about.
    Node(&'a str),
    /// The capability the event is about (an action's events carry its capability).
    Capability(&'a str),
    Session(&'a str),
    /// The action the event is about (a `dlq.replayed` also the replay's action).
    Action(&'a str),
    /// The severity of the alert the event raises (`page`, `ticket`).
    Severity(&'a str),
    /// Events of an incident timeline (`is_incident`).
    Incident,
    /// Alert events raised or resolved by an event of this correlation id.
    AlertedBy(&'a str),
}

impl IndexKey<'_> {
    pub fn encode(&self) -> String {
        let (tag, value) = match self {
            Self::Kind(v) => ("kind", *v),
            Self::Node(v) => ("node", *v),
            Self::Capability(v) => ("cap", *v),
            Self::Session(v) => ("session", *v),
            Self::Action(v) => ("action", *v),
            Self::Severity(v) => ("severity", *v),
            Self::Incident => ("incident", ""),
            Self::AlertedBy(v) => ("alerted", *v),
        };
        format!("{tag}\0{value}")
    }
}

/// Kinds an incident timeline shows: node-level facts, alerts, SLO
/// advisories, policy changes, and the actions that failed or were taken over.
pub fn is_incident(kind: EventKind) -> bool {
    use EventKind::*;
    matches!(
        kind,
        ActorRestarted
            | ActorsSettled
            | NodeStarted
            | NodeJoined
            | NodeSuspect
            | NodeDown
            | ServiceMoved
            | LeaderChanged
            | LeaderTransfer
            | MemberAdded
            | MemberRemoved
            | NodeDraining
            | BreakerChanged
            | SloTrend
            | SloBurn
            | SloBreached
            | SloRecovered
            | PolicyActivated
            | PolicyRejected
            | AlertRaised
            | AlertResolved
            | AlertDelivered
            | ActionTakeover
            | ActionFailed
            | DlqEntered
    )
}

/// The severity of an event: an alert's own, else that of the alert the
/// event raises under the alert rules (`domain::alert::changes_of`).
pub fn severity(event: &Event) -> Option<String> {
    match &event.data {
        EventData::AlertRaised { severity, .. } => Some(severity.clone()),
        _ => alert::changes_of(event).into_iter().find_map(|change| match change {
            alert::AlertChange::Raise(spec) => Some(spec.severity.as_str().to_owned()),
            alert::AlertChange::Resolve { .. } => None,
        }),
    }
}

/// The nodes an event is about, beside the node that recorded it.
fn subject_nodes(data: &EventData) -> Vec<&str> {
    use EventData::*;
    let mut out: Vec<&str> = Vec::new();
    match data {
        NodeStarted { node, .. }
        | NodeJoined { node, .. }
        | NodeSuspect { node, .. }
        | NodeDown { node, .. }
        | MemberAdded { node, .. }
        | MemberRemoved { node, .. }
        | NodeDraining { node, .. }
        | ActionAttempt { node, .. } => out.push(node),
        ActionDispatched { node, by, .. } => out.extend([node.as_str(), by.as_str()]),
        ActionTakeover { from, to, .. } => out.extend([from.as_str(), to.as_str()]),
        ServiceMoved { from, to, node, .. } => out.extend([from, to, node].into_iter().flatten().map(String::as_str)),
        LeaderChanged { leader, previous, .. } => {
            out.push(leader);
            out.extend(previous.as_deref());
        }
        LeaderTransfer { from, to, .. } => {
            out.push(to);
            out.extend(from.as_deref());
        }
        _ => {}
    }
    out
}

fn own_capability(data: &EventData) -> Option<&str> {
    use EventData::*;
    match data {
        ActionSubmitted { capability, .. }
        | ActionAttempt { capability, .. }
        | BreakerChanged { capability, .. }
        | SloTrend { capability, .. }
        | SloBurn { capability, .. }
        | SloBreached { capability, .. }
        | SloRecovered { capability, .. } => Some(capability),
        _ => None,
    }
}

/// Every index row key of `event`; `capability` is its action's, if it is about one.
pub fn keys_of(event: &Event, capability: Option<&str>) -> Vec<String> {
    let kind = event.kind();
    let mut keys = vec![IndexKey::Kind(kind.as_str()).encode(), IndexKey::Node(&event.node).encode()];
    for node in subject_nodes(&event.data) {
        keys.push(IndexKey::Node(node).encode());
    }
    if let Some(cap) = own_capability(&event.data).or(capability) {
        keys.push(IndexKey::Capability(cap).encode());
    }
    if let Some(s) = &event.session_id {
        keys.push(IndexKey::Session(s.as_str()).encode());
    }
    if let Some(a) = &event.action_id {
        keys.push(IndexKey::Action(a.as_str()).encode());
    }
    if let EventData::DlqReplayed { action_id, .. } = &event.data {
        keys.push(IndexKey::Action(action_id.as_str()).encode());
    }
    if let Some(sev) = severity(event) {
        keys.push(IndexKey::Severity(&sev).encode());
    }
    if is_incident(kind) {
        keys.push(IndexKey::Incident.encode());
    }
    if let EventData::AlertRaised { cause, .. } | EventData::AlertResolved { cause, .. } = &event.data {
        keys.push(IndexKey::AlertedBy(cause.as_str()).encode());
    }
    keys.sort();
    keys.dedup();
    keys
}

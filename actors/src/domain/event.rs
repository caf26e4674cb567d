//! Timeline events. `EventData` carries each kind's fields, typed; the one
//! `events!` table below declares every kind once — its Rust name, its name
//! on the wire and its fields — and `EventKind` is derived from it.
//!
//! An event has two encodings. Clients read JSON (`GET /v1/timeline`, SSE,
//! the correlation graph): `Serialize for Event` writes the header fields in
//! a fixed order and `data` as an object with sorted keys, the shape the
//! `json!` maps this type replaced had (`tests/event_json.rs` pins it).
//! The store keeps the typed fields as MessagePack (`store::tables`), so the
//! hot path never builds a JSON value.

use super::{Action, AlertState, AttemptOutcome, BreakerState, PolicyChange, SloSeverity, Tier, Trust, Turn, Verdict};
use crate::ids::{ActionId, CorrelationId, DlqId, IdempotencyKey, SessionId, TurnId};
use serde::ser::{Error as _, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;

/// Declares `EventKind`, `EventData` and the mapping between them from one
/// list of `Variant = "wire.name" { field: Type, … }`.
macro_rules! events {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $name:literal { $( $(#[$field_attr:meta])* $field:ident : $ty:ty ),* $(,)? }
    ),* $(,)?) => {
        /// What kind of thing an event records.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum EventKind { $( $variant ),* }

        impl EventKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [EventKind] = &[ $( EventKind::$variant ),* ];

            /// The kind's name on the wire, e.g. `turn.opened`.
            pub fn as_str(self) -> &'static str {
                match self { $( Self::$variant => $name ),* }
            }
        }

        /// What an event says: one variant per kind, with that kind's fields.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        pub enum EventData {
            $( $(#[$doc])* $variant { $( $(#[$field_attr])* $field: $ty ),* } ),*
        }

        impl EventData {
            pub fn kind(&self) -> EventKind {
                match self { $( Self::$variant { .. } => EventKind::$variant ),* }
            }
        }
    };
}

events! {
    /// A turn began: the root of its causal graph.
    TurnOpened = "turn.opened" { summary: Option<String>, trust: Trust },
    /// A model call the agent reported for its turn.
    ModelCall = "model.call" {
        model: String,
        latency_ms: u64,
        ok: bool,
        prompt_tokens: Option<u64>,
        completion_tokens: Option<u64>,
    },
    /// A memory item was written (its `version` after the write).
    MemoryWrite = "memory.write" { ns: String, key: String, version: u64, tags: Vec<String> },
    /// A turn recalled memory: the query and the keys it found.
    MemoryRecall = "memory.recall" { ns: String, query: Value, hits: Vec<String> },
    ActionSubmitted = "action.submitted" {
        capability: String,
        args: Value,
        idempotency_key: IdempotencyKey,
        replay_of: Option<DlqId>,
    },
    /// The policy's decision, field for field (`Decision`).
    PolicyDecided = "policy.decided" { decision: Verdict, tier: Tier, reasons: Vec<String>, policy_hash: String },
    ConfirmationRequested = "confirmation.requested" { deadline_ms: u64 },
    ConfirmationGiven = "confirmation.given" { approve: bool, by: String },
    ConfirmationExpired = "confirmation.expired" { deadline_ms: u64 },
    /// Attempt `attempt` was assigned to executor `node` by the leader `by`.
    ActionDispatched = "action.dispatched" { attempt: u32, node: String, by: String, takeover: bool },
    /// A running attempt on `from` was interrupted and its action moved to `to`.
    ActionTakeover = "action.takeover" {
        interrupted_attempt: u32,
        from: String,
        to: String,
        attempt: u32,
        reason: Option<String>,
        running_ms: u64,
    },
    /// How one attempt ended, on the node that ran it.
    ActionAttempt = "action.attempt" {
        attempt: u32,
        outcome: AttemptOutcome,
        latency_ms: u64,
        node: String,
        capability: String,
    },
    ActionSucceeded = "action.succeeded" { attempts: u32 },
    /// Failed for good: `permanent` when the tool said retrying cannot help,
    /// otherwise its attempts ran out (and a `dlq.entered` follows).
    ActionFailed = "action.failed" { error: Option<String>, permanent: bool, attempts: u32 },
    /// `attempts` counts every attempt record, interrupted ones included;
    /// `waiting`: entries of `capability` never replayed, this one included.
    DlqEntered = "dlq.entered" {
        dlq_id: DlqId,
        attempts: u32,
        error: Option<String>,
        #[serde(default)]
        capability: String,
        #[serde(default)]
        waiting: u64,
    },
    /// Dead-letter entry `dlq_id` re-runs as `action_id`.
    DlqReplayed = "dlq.replayed" {
        dlq_id: DlqId,
        action_id: ActionId,
        original_action_id: ActionId,
        /// The authenticated principal who asked (absent when the node serves without tokens).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        principal: Option<String>,
        #[serde(default)]
        capability: String,
        /// Entries of `capability` never replayed, after this replay.
        #[serde(default)]
        waiting: u64,
    },
    BreakerChanged = "breaker.changed" { capability: String, state: BreakerState },
    /// A supervised actor was restarted; `recent_restarts` within the intensity window.
    ActorRestarted = "actor.restarted" { actor: String, recent_restarts: u32 },
    /// No actor of the node restarted for `quiet_ms` (the restart window)
    /// after a restart loop: the loop is over.
    ActorsSettled = "actors.settled" { quiet_ms: u64 },
    NodeStarted = "node.started" { node: String, capabilities: u32 },
    NodeJoined = "node.joined" { node: String, rejoined: bool },
    NodeSuspect = "node.suspect" { node: String, silence_ms: u64 },
    NodeDown = "node.down" {
        node: String,
        silence_ms: u64,
        /// Absent when silence alone decided it (the JSON then has no `cause` key).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<DownCause>,
    },
    /// A service's placement changed; `node` is the node it left (same as
    /// `from`), so that node-level filters find it.
    ServiceMoved = "service.moved" { service: String, from: Option<String>, to: Option<String>, node: Option<String> },
    /// Recorded by the new leader.
    LeaderChanged = "leader.changed" { leader: String, term: u64, previous: Option<String> },
    /// `from` is the leader as this node saw it (none during an election).
    LeaderTransfer = "leader.transfer" {
        from: Option<String>,
        to: String,
        why: TransferReason,
        /// The authenticated principal who asked (absent when the node serves without tokens).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        principal: Option<String>,
    },
    /// `by` is the node that executed the change.
    MemberAdded = "member.added" {
        node: String,
        by: String,
        /// The authenticated principal who asked (absent when the node serves without tokens).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        principal: Option<String>,
    },
    MemberRemoved = "member.removed" {
        node: String,
        by: String,
        /// The authenticated principal who asked (absent when the node serves without tokens).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        principal: Option<String>,
    },
    /// `shutdown`: the node's own drain while it stops, ended at its next start.
    NodeDraining = "node.draining" {
        node: String,
        draining: bool,
        shutdown: bool,
        /// The authenticated principal who asked (absent when the node serves without tokens).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        principal: Option<String>,
    },
    /// The p95 trend of `capability` crosses its SLO within the horizon
    /// while the p95 is still under it. `episode` numbers the capability's
    /// trend advisories (the event's correlation id is the episode key).
    SloTrend = "slo.trend" {
        capability: String,
        episode: u64,
        p95_ms: f64,
        slo_p95_ms: u64,
        slope_ms_per_min: f64,
        projected_p95_ms: f64,
        horizon_ms: u64,
        breach_in_ms: Option<u64>,
    },
    /// The error budget burns at ≥ `factor` over both windows (SRE workbook).
    SloBurn = "slo.burn" {
        capability: String,
        episode: u64,
        severity: SloSeverity,
        factor: f64,
        long_window: String,
        short_window: String,
        long_rate: f64,
        short_rate: f64,
        error_budget: f64,
    },
    /// An objective is missed: `latency` (the window's p95 over the SLO's) or
    /// `errors` (the period's budget spent).
    SloBreached = "slo.breached" {
        capability: String,
        episode: u64,
        objective: String,
        window: String,
        value: f64,
        target: f64,
    },
    /// Advisory `advisory` (`trend`, `burn.page`, `burn.ticket`,
    /// `breached.latency`, `breached.errors`) of episode `episode` ended.
    SloRecovered = "slo.recovered" { capability: String, episode: u64, advisory: String },
    /// Bundle `hash` became the active policy on every node, replacing
    /// `old_hash` (none: the nodes' configured policies), by a push or a rollback.
    PolicyActivated = "policy.activated" {
        hash: String,
        revision: String,
        old_hash: Option<String>,
        change: PolicyChange,
        by: String,
        reason: String,
        audit_seq: u64,
    },
    /// A pushed bundle was refused by the gate: nothing changed.
    PolicyRejected = "policy.rejected" { hash: String, revision: String, by: String, failures: Vec<String>, audit_seq: u64 },
    /// Alert `fingerprint` fires (episode `episode`), raised by the event
    /// `causation_seq` names; `cause` is that event's correlation id.
    AlertRaised = "alert.raised" {
        fingerprint: String,
        name: String,
        severity: String,
        episode: u64,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
        cause: CorrelationId,
    },
    AlertResolved = "alert.resolved" { fingerprint: String, name: String, episode: u64, cause: CorrelationId },
    /// State `state` of the episode reached channel `channel` after `attempts` tries.
    AlertDelivered = "alert.delivered" {
        fingerprint: String,
        episode: u64,
        state: AlertState,
        channel: String,
        attempts: u32,
        delivery_id: String,
    },
}

/// Why a node was declared down before its silence reached the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DownCause {
    /// The transport lost its last session to the node.
    SessionClosed,
}

/// Why leadership was handed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferReason {
    /// The leader is being drained.
    Drain,
    /// An operator asked for it.
    Requested,
}

impl EventData {
    /// The fields as a JSON object with sorted keys: serde_json's `Map` is a
    /// BTreeMap here, exactly as for the `json!` maps events used to carry.
    pub fn to_json(&self) -> serde_json::Result<Value> {
        // The derived encoding of a struct variant is `{"Variant": {fields}}`.
        match serde_json::to_value(self)? {
            Value::Object(tagged) => Ok(tagged.into_iter().next().map_or(Value::Null, |(_, fields)| fields)),
            other => Ok(other),
        }
    }
}

/// One timeline event. `seq` is its place in the log order; `causation_seq`
/// names the event that caused it, so a correlation id yields a causal graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub seq: u64,
    pub ts: u64,
    pub node: String,
    pub session_id: Option<SessionId>,
    pub turn_id: Option<TurnId>,
    pub correlation_id: CorrelationId,
    pub action_id: Option<ActionId>,
    pub causation_seq: Option<u64>,
    pub data: EventData,
}

/// Where an event belongs: its turn and session, if any, and its correlation id.
#[derive(Clone, Debug, PartialEq)]
pub struct EventScope {
    pub session_id: Option<SessionId>,
    pub turn_id: Option<TurnId>,
    pub correlation_id: CorrelationId,
}

impl EventScope {
    pub fn of_turn(turn: &Turn) -> Self {
        Self {
            session_id: Some(turn.session_id.clone()),
            turn_id: Some(turn.id.clone()),
            correlation_id: turn.correlation_id.clone(),
        }
    }

    pub fn of_action(action: &Action) -> Self {
        Self {
            session_id: Some(action.session_id.clone()),
            turn_id: Some(action.turn_id.clone()),
            correlation_id: action.correlation_id.clone(),
        }
    }

    /// An event of no turn: node-level facts, memory written outside a turn.
    pub fn correlated(correlation_id: CorrelationId) -> Self {
        Self { session_id: None, turn_id: None, correlation_id }
    }
}

impl Event {
    /// Event `seq`, recorded at `ts` by `node`, about `action_id` (if any),
    /// caused by event `causation_seq` (if any).
    pub fn new(
        seq: u64,
        ts: u64,
        node: String,
        scope: EventScope,
        action_id: Option<ActionId>,
        causation_seq: Option<u64>,
        data: EventData,
    ) -> Self {
        let EventScope { session_id, turn_id, correlation_id } = scope;
        Self { seq, ts, node, session_id, turn_id, correlation_id, action_id, causation_seq, data }
    }

    /// What kind of event this is: the kind of its data (never stored apart from it).
    pub fn kind(&self) -> EventKind {
        self.data.kind()
    }
}

/// The JSON clients read: `{"seq","ts","node","kind","session_id","turn_id",
/// "correlation_id","action_id","causation_seq","data"}` in that order, with
/// `null` for an absent id.
impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let data = self.data.to_json().map_err(S::Error::custom)?;
        let mut s = serializer.serialize_struct("Event", 10)?;
        s.serialize_field("seq", &self.seq)?;
        s.serialize_field("ts", &self.ts)?;
        s.serialize_field("node", &self.node)?;
        s.serialize_field("kind", self.data.kind().as_str())?;
        s.serialize_field("session_id", &self.session_id)?;
        s.serialize_field("turn_id", &self.turn_id)?;
        s.serialize_field("correlation_id", &self.correlation_id)?;
        s.serialize_field("action_id", &self.action_id)?;
        s.serialize_field("causation_seq", &self.causation_seq)?;
        s.serialize_field("data", &data)?;
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_wire_name() {
        let names: std::collections::BTreeSet<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), EventKind::ALL.len());
        assert!(names.iter().all(|n| n.contains('.') && *n == n.to_lowercase()), "{names:?}");
    }
}

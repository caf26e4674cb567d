//! Commands: every durable change to warden's state. A command is appended to
//! the log, then applied by the state machine in log order. Everything `apply`
//! needs (time, the node that proposed it, the policy decision) is inside it.

use crate::domain::*;
use crate::ids::*;
use crate::version::Version;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A command as it sits in the log: what, when, proposed by which node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub at_ms: u64,
    pub node: String,
    pub cmd: Command,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    OpenTurn {
        turn_id: TurnId,
        session_id: SessionId,
        correlation_id: CorrelationId,
        trust: Option<Trust>,
        summary: Option<String>,
    },
    RecordModelCall {
        turn_id: TurnId,
        model: String,
        latency_ms: u64,
        ok: bool,
        prompt_tokens: Option<u64>,
        completion_tokens: Option<u64>,
    },
    PutMemory {
        ns: String,
        key: String,
        value: Value,
        tags: Vec<String>,
        turn_id: Option<TurnId>,
        /// Used for the event when no turn is given.
        correlation_id: CorrelationId,
    },
    RecordRecall {
        turn_id: TurnId,
        ns: String,
        query: Value,
        hits: Vec<String>,
    },
    /// An action with its decision, already made by the policy engine.
    /// Re-submitting an idempotency key returns the existing action.
    SubmitAction {
        action_id: ActionId,
        turn_id: TurnId,
        capability: String,
        args: Value,
        idempotency_key: Option<IdempotencyKey>,
        decision: Decision,
        max_attempts: u32,
        backoff_ms: u64,
        confirm_ttl_ms: u64,
        /// The authenticated principal that submitted it (none without tokens).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        submitted_by: Option<String>,
    },
    Confirm {
        action_id: ActionId,
        approve: bool,
        by: String,
    },
    ExpireConfirmation {
        action_id: ActionId,
    },
    /// Attempt `attempt` is assigned to executor `node`. Dispatching a running
    /// action with the next attempt number is a takeover: the old attempt was
    /// interrupted, for `reason`, and a late result from it is fenced.
    Dispatch {
        action_id: ActionId,
        attempt: u32,
        node: String,
        #[serde(default)]
        reason: Option<String>,
    },
    FinishAttempt {
        action_id: ActionId,
        attempt: u32,
        outcome: AttemptOutcome,
        latency_ms: u64,
    },
    /// Re-runs a dead-lettered action as a new action with the same
    /// idempotency key, under a decision made against the current policy.
    ReplayDlq {
        dlq_id: DlqId,
        new_action_id: ActionId,
        decision: Decision,
        confirm_ttl_ms: u64,
        /// The authenticated principal who asked for the replay.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        principal: Option<String>,
    },
    /// Starts or ends draining `node`: the dispatcher places nothing new on
    /// it. `shutdown` marks a drain the node asked for itself while stopping
    /// (it ends it at its next start); an operator's drain outlives restarts.
    SetDraining {
        node: String,
        draining: bool,
        #[serde(default)]
        shutdown: bool,
        /// The authenticated principal who asked (none for a node's own stop-drain).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        principal: Option<String>,
    },
    /// A node-level fact worth a timeline event (restart, breaker change, start).
    RecordEvent {
        correlation_id: CorrelationId,
        data: EventData,
    },
    /// Opens (`open`) or ends episode `episode` of an SLO advisory
    /// (`advisory` of `capability`) with the event `data`. The episode key
    /// makes it once per episode cluster-wide: opening an episode that is
    /// not the next, or ending one that is not open, changes nothing.
    SloEpisode {
        capability: String,
        advisory: String,
        episode: u64,
        open: bool,
        data: EventData,
    },
    /// Activates a policy bundle — a push that passed the gate, or a
    /// rollback to a bundle of the history. Every node compiles it and
    /// swaps its engine when it applies this entry; the bundle is kept in
    /// the replicated state, so a node that restarts or joins runs it too.
    ActivatePolicy {
        hash: String,
        revision: String,
        bundle: BTreeMap<String, String>,
        /// The principal who asked (`anonymous` without tokens).
        by: String,
        reason: String,
        change: PolicyChange,
        correlation_id: CorrelationId,
    },
    /// A push the gate refused, with every failure: audited, nothing else changes.
    RejectPolicy {
        /// The pushed bundle's hash ("" when it was not even a bundle).
        hash: String,
        revision: String,
        by: String,
        failures: Vec<String>,
        correlation_id: CorrelationId,
    },
    /// State `state` of episode `episode` of alert `fingerprint` reached
    /// notification channel `channel` after `attempts` tries (the leader's
    /// Notifier proposes it). Recorded once per (episode, state, channel).
    AlertDelivered {
        fingerprint: String,
        episode: u64,
        state: AlertState,
        channel: String,
        attempts: u32,
    },
    /// Retention: removes the oldest events recorded before `before_ms` (at
    /// most `max_events` of them, a prefix of the timeline) and the records
    /// whose history went with them (`store::apply::retention`), which the
    /// applying node writes to its archive first. The leader's Retention
    /// actor proposes it, its cutoffs from the leader's clock. With
    /// `sessions_before_ms`, the sessions idle since before it go too (of
    /// normal trust, with no turn retained).
    Expire {
        before_ms: u64,
        max_events: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sessions_before_ms: Option<u64>,
    },
}

impl Command {
    /// Whether this command starts new work (a turn, a model call, a memory
    /// write, an action, a replay) rather than recording what admitted work
    /// needs or a read: below the storage watermark only new work is
    /// refused (`disk::StorageGate`). A recall is a read's record, so it
    /// passes.
    pub fn is_new_work(&self) -> bool {
        match self {
            Self::OpenTurn { .. }
            | Self::RecordModelCall { .. }
            | Self::PutMemory { .. }
            | Self::SubmitAction { .. }
            | Self::ReplayDlq { .. } => true,
            Self::RecordRecall { .. }
            | Self::Confirm { .. }
            | Self::ExpireConfirmation { .. }
            | Self::Dispatch { .. }
            | Self::FinishAttempt { .. }
            | Self::SetDraining { .. }
            | Self::RecordEvent { .. }
            | Self::SloEpisode { .. }
            // An operator's change to the policy, like a drain, goes through.
            | Self::ActivatePolicy { .. }
            | Self::RejectPolicy { .. }
            | Self::AlertDelivered { .. }
            // Removes; a full disk is where it helps most.
            | Self::Expire { .. } => false,
        }
    }

    /// The cluster wire version that introduced this command. The proposer
    /// refuses it while the cluster's effective version (its lowest
    /// member's) is below it, so no member meets a command it cannot read.
    /// A new command added in a minor release names that minor here.
    pub fn since(&self) -> Version {
        match self {
            // Every command so far is part of wire 2.0, the first versioned release.
            Self::OpenTurn { .. }
            | Self::RecordModelCall { .. }
            | Self::PutMemory { .. }
            | Self::RecordRecall { .. }
            | Self::SubmitAction { .. }
            | Self::Confirm { .. }
            | Self::ExpireConfirmation { .. }
            | Self::Dispatch { .. }
            | Self::FinishAttempt { .. }
            | Self::ReplayDlq { .. }
            | Self::SetDraining { .. }
            | Self::RecordEvent { .. }
            | Self::SloEpisode { .. }
            | Self::ActivatePolicy { .. }
            | Self::RejectPolicy { .. }
            | Self::AlertDelivered { .. } => Version { major: 2, minor: 0 },
            Self::Expire { .. } => Version { major: 2, minor: 2 },
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::OpenTurn { .. } => "open_turn",
            Self::RecordModelCall { .. } => "record_model_call",
            Self::PutMemory { .. } => "put_memory",
            Self::RecordRecall { .. } => "record_recall",
            Self::SubmitAction { .. } => "submit_action",
            Self::Confirm { .. } => "confirm",
            Self::ExpireConfirmation { .. } => "expire_confirmation",
            Self::Dispatch { .. } => "dispatch",
            Self::FinishAttempt { .. } => "finish_attempt",
            Self::ReplayDlq { .. } => "replay_dlq",
            Self::SetDraining { .. } => "set_draining",
            Self::RecordEvent { .. } => "record_event",
            Self::SloEpisode { .. } => "slo_episode",
            Self::ActivatePolicy { .. } => "activate_policy",
            Self::RejectPolicy { .. } => "reject_policy",
            Self::AlertDelivered { .. } => "alert_delivered",
            Self::Expire { .. } => "expire",
        }
    }
}

/// What applying a command produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Turn(Turn),
    Memory(MemoryItem),
    /// The action after the command; `created` is false when an idempotency
    /// key matched an existing action.
    Action {
        action: Box<Action>,
        created: bool,
    },
    /// The action after an attempt, and when to try again if it will be retried.
    AttemptDone {
        action: Box<Action>,
        retry_after_ms: Option<u64>,
    },
    Replayed {
        action: Box<Action>,
        dlq: Box<DlqEntry>,
    },
    Recorded {
        seq: u64,
    },
    /// The command was already in effect (a replayed episode key): nothing recorded.
    Unchanged,
    /// A bundle became the active policy (activation number `generation`).
    PolicyActivated {
        hash: String,
        generation: u64,
        audit_seq: u64,
    },
    /// A refused push was audited as entry `audit_seq`.
    PolicyRejected {
        audit_seq: u64,
    },
    /// What an `Expire` removed; `more` when older events than its cutoff
    /// remain (it stopped at `max_events`).
    Expired {
        events: u64,
        actions: u64,
        turns: u64,
        /// The oldest event retained after it (none when none is).
        floor_seq: Option<u64>,
        more: bool,
        #[serde(default)]
        sessions: u64,
    },
}

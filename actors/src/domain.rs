//! The domain model: capabilities and their policy tiers, actions and their
//! state machine, attempts, dead-letter entries, memory items, sessions, turns
//! and timeline events (`event`). Plain data: no actor, storage or clock lives here.

pub mod alert;
mod event;
mod policy;

use crate::ids::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use alert::AlertRecord;
pub use event::{DownCause, Event, EventData, EventKind, EventScope, TransferReason};
pub use policy::{AuditAction, AuditEntry, PolicyChange, PolicyRecord, PolicyState, AUDIT_GENESIS, MAX_POLICY_HISTORY};

/// Policy tier of a capability (contract.md, "Domain rules").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum Tier {
    /// 0: read-only, allowed.
    Observe = 0,
    /// 1: has effects that can be undone; allowed and audited.
    Reversible = 1,
    /// 2: needs an explicit confirmation before it runs.
    Confirm = 2,
    /// 3: never runs.
    Forbidden = 3,
}

impl Tier {
    pub fn from_level(level: u8) -> Tier {
        match level {
            0 => Tier::Observe,
            1 => Tier::Reversible,
            2 => Tier::Confirm,
            _ => Tier::Forbidden,
        }
    }

    pub fn level(self) -> u8 {
        self as u8
    }
}

impl TryFrom<u8> for Tier {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        if v > 3 {
            return Err(format!("tier must be 0..=3, got {v}"));
        }
        Ok(Tier::from_level(v))
    }
}

impl From<Tier> for u8 {
    fn from(t: Tier) -> u8 {
        t.level()
    }
}

/// How much warden trusts a session; low trust escalates tiers >= 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trust {
    #[default]
    Normal,
    Low,
}

/// Latency and error objectives of one capability.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SloSpec {
    pub p95_ms: u64,
    /// Share of attempts allowed to fail over the SLO period (0.01: 99 % succeed).
    pub error_budget: f64,
    /// Percentile windows reported for this capability (`"1m"`, `"5m"`, `"1h"`…);
    /// empty: the node's `SloConfig::windows`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<String>,
}

impl Default for SloSpec {
    fn default() -> Self {
        Self { p95_ms: 1000, error_budget: 0.01, windows: Vec::new() }
    }
}

/// Where one SLO advisory of one capability stands in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SloEpisodeState {
    pub capability: String,
    /// `trend`, `burn.page`, `burn.ticket`, `breached.latency`, `breached.errors`.
    pub advisory: String,
    /// Its latest episode (1, 2, …).
    pub episode: u64,
    pub open: bool,
}

/// Where an alert stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// How urgent an error-budget burn is (SRE workbook): a page wants someone
/// now, a ticket within days.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SloSeverity {
    Page,
    Ticket,
}

impl SloSeverity {
    pub fn as_str(self) -> &'static str {
        match self {
            SloSeverity::Page => "page",
            SloSeverity::Ticket => "ticket",
        }
    }
}

/// Where a capability's circuit breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

/// Circuit-breaker settings of one capability.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BreakerSpec {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before letting one probe through.
    pub open_ms: u64,
}

impl Default for BreakerSpec {
    fn default() -> Self {
        Self { failure_threshold: 5, open_ms: 10_000 }
    }
}

/// Which executor runs a capability's actions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExecutorSpec {
    /// Simulated tool: deterministic given the node's seed and the action.
    Sim {
        #[serde(default)]
        latency_ms: u64,
        #[serde(default)]
        jitter_ms: u64,
        #[serde(default)]
        fail_rate: f64,
        /// Degradation over time (the SLO detectors' test bench and `warden demo --degrade`).
        #[serde(default, skip_serializing_if = "SimRamp::is_none")]
        ramp: SimRamp,
    },
    /// Real tool behind an HTTP endpoint.
    Http { url: String },
    /// A tool of an upstream MCP server (`tool` is its name there), called
    /// over Streamable HTTP (`url`, its MCP endpoint) or over stdio
    /// (`command`, a child process each node starts, and starts again when
    /// it exits). Exactly one of the two.
    Mcp {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        command: Vec<String>,
        tool: String,
    },
}

/// Where an MCP-backed capability's tool lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum McpUpstream {
    /// A Streamable HTTP endpoint.
    Http(String),
    /// A program and its arguments, spoken to over its stdin and stdout.
    Stdio(Vec<String>),
}

impl std::fmt::Display for McpUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            McpUpstream::Http(url) => f.write_str(url),
            McpUpstream::Stdio(command) => write!(f, "stdio:{}", command.join(" ")),
        }
    }
}

impl ExecutorSpec {
    /// An MCP-backed capability's upstream and tool name.
    pub fn mcp(&self) -> Option<(McpUpstream, &str)> {
        match self {
            ExecutorSpec::Mcp { url: Some(url), command, tool } if command.is_empty() => {
                Some((McpUpstream::Http(url.clone()), tool))
            }
            ExecutorSpec::Mcp { url: None, command, tool } if !command.is_empty() => {
                Some((McpUpstream::Stdio(command.clone()), tool))
            }
            _ => None,
        }
    }
}

impl Default for ExecutorSpec {
    fn default() -> Self {
        ExecutorSpec::Sim { latency_ms: 0, jitter_ms: 0, fail_rate: 0.0, ramp: SimRamp::default() }
    }
}

/// A sim tool going bad: `after_ms` after the node starts, its latency grows
/// by `latency_ms_per_min` and its failure rate by `fail_per_min` every
/// minute (on the node's clock), the rate capped at 1.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SimRamp {
    #[serde(default)]
    pub latency_ms_per_min: f64,
    #[serde(default)]
    pub fail_per_min: f64,
    #[serde(default)]
    pub after_ms: u64,
}

impl SimRamp {
    pub fn is_none(&self) -> bool {
        self.latency_ms_per_min == 0.0 && self.fail_per_min == 0.0
    }

    /// Extra latency and failure rate `elapsed_ms` after the node started.
    pub fn at(&self, elapsed_ms: u64) -> (f64, f64) {
        let minutes = elapsed_ms.saturating_sub(self.after_ms) as f64 / 60_000.0;
        (self.latency_ms_per_min * minutes, self.fail_per_min * minutes)
    }
}

/// A tool agents may call, with its policy tier and execution limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Capability {
    pub name: String,
    pub tier: Tier,
    #[serde(default)]
    pub amount_limit: Option<f64>,
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "defaults::backoff_ms")]
    pub backoff_ms: u64,
    #[serde(default)]
    pub slo: SloSpec,
    #[serde(default)]
    pub breaker: BreakerSpec,
    #[serde(default)]
    pub executor: ExecutorSpec,
    /// Pins execution to these nodes; empty means any node that hosts it.
    #[serde(default)]
    pub nodes: Vec<String>,
}

mod defaults {
    pub fn timeout_ms() -> u64 {
        5_000
    }
    pub fn max_attempts() -> u32 {
        3
    }
    pub fn backoff_ms() -> u64 {
        200
    }
}

impl Capability {
    /// A capability with default limits and a zero-latency sim executor.
    pub fn new(name: &str, tier: Tier) -> Self {
        Self {
            name: name.to_owned(),
            tier,
            amount_limit: None,
            timeout_ms: defaults::timeout_ms(),
            max_attempts: defaults::max_attempts(),
            backoff_ms: defaults::backoff_ms(),
            slo: SloSpec::default(),
            breaker: BreakerSpec::default(),
            executor: ExecutorSpec::default(),
            nodes: Vec::new(),
        }
    }

    /// Checks the limits that would otherwise make the pipeline misbehave.
    pub fn validate(&self) -> Result<(), crate::WardenError> {
        let bad = |m: String| Err(crate::WardenError::BadInput(format!("capability {:?}: {m}", self.name)));
        if self.name.is_empty() {
            return bad("name is empty".into());
        }
        if self.max_attempts == 0 || self.max_attempts > crate::limits::MAX_ATTEMPTS {
            return bad(format!("max_attempts must be 1..={}", crate::limits::MAX_ATTEMPTS));
        }
        if self.timeout_ms == 0 {
            return bad("timeout_ms must be > 0".into());
        }
        if self.breaker.failure_threshold == 0 {
            return bad("breaker.failure_threshold must be > 0".into());
        }
        if self.nodes.iter().any(|n| n.trim().is_empty()) {
            return bad("nodes must not contain an empty name".into());
        }
        if let ExecutorSpec::Sim { fail_rate, ref ramp, .. } = self.executor {
            if !(0.0..=1.0).contains(&fail_rate) {
                return bad("executor.fail_rate must be within 0..=1".into());
            }
            if !(ramp.latency_ms_per_min >= 0.0 && ramp.fail_per_min >= 0.0) {
                return bad("executor.ramp rates must be >= 0".into());
            }
        }
        if let ExecutorSpec::Mcp { url, command, tool } = &self.executor {
            if url.is_some() != command.is_empty() {
                return bad("an mcp executor needs exactly one of url and command".into());
            }
            if command.first().is_some_and(|program| program.trim().is_empty()) {
                return bad("executor.command starts with an empty program".into());
            }
            if tool.trim().is_empty() {
                return bad("executor.tool is empty".into());
            }
        }
        if !(self.slo.error_budget > 0.0 && self.slo.error_budget < 1.0) || self.slo.p95_ms == 0 {
            return bad("slo needs p95_ms > 0 and error_budget within (0, 1)".into());
        }
        if let Some(w) = self.slo.windows.iter().find(|w| parse_window(w).is_none()) {
            return bad(format!("slo.windows: {w:?} is not a window like \"5m\""));
        }
        Ok(())
    }
}

/// A window's name: `90s`, `5m`, `6h`, `3d`: the largest unit that divides the window.
pub fn window_name(ms: u64) -> String {
    for (unit, name) in [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1_000, "s")] {
        if ms >= unit && ms.is_multiple_of(unit) {
            return format!("{}{name}", ms / unit);
        }
    }
    format!("{ms}ms")
}

/// Parses `window_name`'s forms (`10s`, `5m`, `1h`, `3d`, `250ms`).
pub fn parse_window(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    (n > 0).then(|| n * unit_ms)
}

/// What the policy says about an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    Confirm,
    Deny,
}

/// A policy decision, with the tier it was computed at, why, and which policy said so.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub decision: Verdict,
    pub tier: Tier,
    pub reasons: Vec<String>,
    pub policy_hash: String,
}

/// Where an action is in its life (contract.md, "Action states").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionState {
    AwaitingConfirmation,
    Pending,
    Running,
    Succeeded,
    Failed,
    DeadLettered,
    Denied,
    Expired,
    Rejected,
}

impl ActionState {
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::AwaitingConfirmation | Self::Pending | Self::Running)
    }
}

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AttemptOutcome {
    Succeeded {
        /// What the tool returned, kept when the caller needs it back (an
        /// MCP tool's `CallToolResult`); at most `limits::MAX_RESULT_BYTES`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
    },
    /// Worth retrying (5xx, timeout, transient sim failure).
    Retryable { error: String },
    /// Retrying cannot help (4xx).
    Permanent { error: String },
    /// The breaker was open: failed fast without calling the tool.
    BreakerOpen,
    /// The node running it stopped before it finished; re-dispatched.
    Interrupted,
}

impl AttemptOutcome {
    /// Success with nothing to hand back.
    pub const OK: AttemptOutcome = AttemptOutcome::Succeeded { result: None };

    /// Failures count against `max_attempts`; an interrupted attempt does not.
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Retryable { .. } | Self::Permanent { .. } | Self::BreakerOpen)
    }
}

/// One try at executing an action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub number: u32,
    pub node: String,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    pub latency_ms: Option<u64>,
    /// None while it runs.
    pub outcome: Option<AttemptOutcome>,
}

impl Attempt {
    /// Attempt `number`, begun on `node` at `at_ms`, not finished yet.
    pub fn started(number: u32, node: &str, at_ms: u64) -> Self {
        Self { number, node: node.to_owned(), started_ms: at_ms, finished_ms: None, latency_ms: None, outcome: None }
    }
}

/// A submitted action and everything that happened to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub id: ActionId,
    pub turn_id: TurnId,
    pub session_id: SessionId,
    pub correlation_id: CorrelationId,
    pub capability: String,
    pub args: Value,
    pub idempotency_key: IdempotencyKey,
    pub decision: Decision,
    pub state: ActionState,
    pub max_attempts: u32,
    pub backoff_ms: u64,
    pub attempts: Vec<Attempt>,
    pub submitted_ms: u64,
    pub updated_ms: u64,
    /// When an awaiting confirmation expires.
    pub confirm_deadline_ms: Option<u64>,
    pub confirmed_by: Option<String>,
    /// The node the agent submitted it through (execution is placed by the leader).
    #[serde(default, alias = "owner")]
    pub submitted_via: String,
    /// A pending retry is not dispatched before this time (its backoff).
    #[serde(default)]
    pub not_before_ms: Option<u64>,
    /// The DLQ entry this action re-runs, if it is a replay.
    pub replay_of: Option<DlqId>,
    pub last_error: Option<String>,
    /// Seq of the latest event about this action: the cause of the next one.
    pub last_event_seq: u64,
    /// The principal (token name) that submitted it, on a node with tokens;
    /// a replay keeps the original's. An agent reads only its own actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_by: Option<String>,
}

impl Action {
    pub fn failures(&self) -> u32 {
        self.attempts.iter().filter(|a| a.outcome.as_ref().is_some_and(AttemptOutcome::is_failure)).count() as u32
    }

    pub fn current_attempt(&self) -> u32 {
        self.attempts.last().map_or(0, |a| a.number)
    }
}

/// What the dispatcher needs to know about a non-terminal action, kept next
/// to it in the index of active actions so a scan never decodes arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveAction {
    pub id: ActionId,
    pub state: ActionState,
    pub capability: String,
    /// The latest attempt's number (0 before the first dispatch).
    pub attempt: u32,
    /// Where the latest attempt runs, while the action is running.
    pub node: Option<String>,
    /// When a retry may be dispatched, or when a confirmation expires.
    pub due_ms: Option<u64>,
}

impl ActiveAction {
    /// How many attempts run on each node, from the active actions.
    pub fn running_per_node(active: &[ActiveAction]) -> std::collections::BTreeMap<String, usize> {
        let mut running = std::collections::BTreeMap::new();
        for node in active.iter().filter_map(|a| a.node.as_ref()) {
            *running.entry(node.clone()).or_default() += 1;
        }
        running
    }

    pub fn of(action: &Action) -> Self {
        let running = action.state == ActionState::Running;
        Self {
            id: action.id.clone(),
            state: action.state,
            capability: action.capability.clone(),
            attempt: action.current_attempt(),
            node: action.attempts.last().filter(|_| running).map(|a| a.node.clone()),
            due_ms: match action.state {
                ActionState::AwaitingConfirmation => action.confirm_deadline_ms,
                ActionState::Pending => action.not_before_ms,
                _ => None,
            },
        }
    }
}

/// What the cluster decided about one node (replicated, so every node and
/// every future leader knows it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    /// Nothing new is dispatched to it; its running attempts finish.
    pub draining: bool,
    /// The drain is the node's own, for a graceful stop (ended at its next start).
    #[serde(default)]
    pub shutdown: bool,
    pub since_ms: u64,
}

/// An action that exhausted its attempts, kept for inspection and replay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DlqEntry {
    pub id: DlqId,
    pub action_id: ActionId,
    pub turn_id: TurnId,
    pub correlation_id: CorrelationId,
    pub capability: String,
    pub idempotency_key: IdempotencyKey,
    pub attempts: Vec<Attempt>,
    pub last_error: Option<String>,
    pub entered_ms: u64,
    pub entered_seq: u64,
    /// Actions that re-ran this entry, oldest first.
    pub replays: Vec<ActionId>,
}

/// A value an agent remembers, under a namespace and key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryItem {
    pub ns: String,
    pub key: String,
    pub value: Value,
    pub tags: Vec<String>,
    pub version: u64,
    pub updated_ms: u64,
    pub turn_id: Option<TurnId>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: SessionId,
    pub trust: Trust,
    pub created_ms: u64,
    pub last_activity_ms: u64,
    pub turns: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub id: TurnId,
    pub session_id: SessionId,
    pub correlation_id: CorrelationId,
    pub summary: Option<String>,
    pub opened_ms: u64,
    /// Seq of the `turn.opened` event: the root of the turn's causal graph.
    pub opened_seq: u64,
}

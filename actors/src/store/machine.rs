//! The deterministic state machine. `apply` reads only the command and the
//! tables, so every replica applying the same log ends in the same state.
//! A command that `apply` rejects changes nothing: every check comes before
//! the first write.

use super::tables::*;
use crate::command::{Command, Entry, Response};
use crate::domain::*;
use crate::error::{Result, WardenError};
use crate::ids::*;
use crate::limits::MAX_BACKOFF_MS;
use redb::ReadableTable;
use serde_json::Value;

/// What one applied command produced: its response, the events it recorded
/// (in seq order) and the action it made terminal, if any.
#[derive(Debug)]
pub struct Applied {
    pub response: Response,
    pub events: Vec<Event>,
    pub terminal: Option<Action>,
}

/// The in-memory part of the state: counters, persisted in `meta` with every batch.
#[derive(Clone, Debug, Default)]
pub struct StateMachine {
    pub last_index: u64,
    pub next_seq: u64,
    /// Timestamp of the latest event. Event time is `max(entry time, last_ts)`:
    /// non-decreasing in seq whatever the proposers' clocks do, so a time
    /// window is a binary search over the events table, no second index.
    pub last_ts: u64,
}

/// A session's `last_activity_ms` is rewritten at most this often.
pub const SESSION_ACTIVITY_RESOLUTION_MS: u64 = 1_000;

/// Collects the events of one command while it is applied.
struct Recorder<'e> {
    sm: &'e mut StateMachine,
    entry: &'e Entry,
    events: Vec<Event>,
}

impl Recorder<'_> {
    fn emit(
        &mut self,
        t: &mut Tables<'_>,
        scope: EventScope,
        action_id: Option<&ActionId>,
        causation_seq: Option<u64>,
        data: EventData,
    ) -> Result<u64> {
        let seq = self.sm.next_seq;
        self.sm.next_seq += 1;
        self.sm.last_ts = self.sm.last_ts.max(self.entry.at_ms);
        let node = self.entry.node.clone();
        let event = Event::new(seq, self.sm.last_ts, node, scope, action_id.cloned(), causation_seq, data);
        t.events.insert(seq, encode_event(&event)?.as_slice())?;
        t.events_by_correlation.insert((event.correlation_id.as_str(), seq), ())?;
        self.events.push(event);
        Ok(seq)
    }

    /// Emits an event about `action` caused by its latest one, and makes it the latest.
    fn emit_for(&mut self, t: &mut Tables<'_>, action: &mut Action, data: EventData) -> Result<u64> {
        let scope = EventScope::of_action(action);
        let seq = self.emit(t, scope, Some(&action.id), Some(action.last_event_seq), data)?;
        action.last_event_seq = seq;
        Ok(seq)
    }
}

impl StateMachine {
    /// Loads the counters persisted by the last committed batch.
    pub fn load(meta: &impl ReadableTable<&'static str, u64>) -> Result<Self> {
        let get = |k| -> Result<u64> { Ok(meta.get(k)?.map_or(0, |g| g.value())) };
        Ok(Self {
            last_index: get(META_LAST_INDEX)?,
            next_seq: get(META_NEXT_SEQ)?.max(1),
            last_ts: get(META_LAST_TS)?,
        })
    }

    pub fn save(&self, t: &mut Tables<'_>) -> Result<()> {
        t.meta.insert(META_LAST_INDEX, self.last_index)?;
        t.meta.insert(META_NEXT_SEQ, self.next_seq)?;
        t.meta.insert(META_LAST_TS, self.last_ts)?;
        Ok(())
    }

    /// Applies the command at log `index`. The outer error is a storage
    /// failure (the whole batch must fail: it may have written half a
    /// command); the inner one is the command's rejection.
    pub fn apply_at(&mut self, t: &mut Tables<'_>, index: u64, entry: &Entry) -> Result<Result<Applied>> {
        self.last_index = index;
        match self.apply(t, entry) {
            Err(WardenError::Storage(e)) => Err(WardenError::Storage(e)),
            applied => Ok(applied),
        }
    }

    /// Moves past log `index`, which carries no command (a leader's blank
    /// entry or a membership change).
    pub fn skip(&mut self, index: u64) {
        self.last_index = index;
    }

    /// Applies one log entry. Deterministic: same tables + same entry → same result.
    pub fn apply(&mut self, t: &mut Tables<'_>, entry: &Entry) -> Result<Applied> {
        let mut rec = Recorder { sm: self, entry, events: Vec::new() };
        let at = entry.at_ms;
        let (response, terminal) = match &entry.cmd {
            Command::OpenTurn { turn_id, session_id, correlation_id, trust, summary } => {
                let turn = open_turn(t, &mut rec, turn_id, session_id, correlation_id, *trust, summary)?;
                (Response::Turn(turn), None)
            }
            Command::RecordModelCall { turn_id, model, latency_ms, ok, prompt_tokens, completion_tokens } => {
                let turn = turn_of(t, turn_id)?;
                touch_session(t, &turn.session_id, at)?;
                let (model, latency_ms, ok) = (model.clone(), *latency_ms, *ok);
                let (prompt_tokens, completion_tokens) = (*prompt_tokens, *completion_tokens);
                let data = EventData::ModelCall { model, latency_ms, ok, prompt_tokens, completion_tokens };
                let seq = rec.emit(t, EventScope::of_turn(&turn), None, Some(turn.opened_seq), data)?;
                (Response::Recorded { seq }, None)
            }
            Command::PutMemory { ns, key, value, tags, turn_id, correlation_id } => {
                let item = put_memory(t, &mut rec, ns, key, value, tags, turn_id.as_ref(), correlation_id)?;
                (Response::Memory(item), None)
            }
            Command::RecordRecall { turn_id, ns, query, hits } => {
                let turn = turn_of(t, turn_id)?;
                touch_session(t, &turn.session_id, at)?;
                let data = EventData::MemoryRecall { ns: ns.clone(), query: query.clone(), hits: hits.clone() };
                let seq = rec.emit(t, EventScope::of_turn(&turn), None, Some(turn.opened_seq), data)?;
                (Response::Recorded { seq }, None)
            }
            Command::SubmitAction {
                action_id,
                turn_id,
                capability,
                args,
                idempotency_key,
                decision,
                max_attempts,
                backoff_ms,
                confirm_ttl_ms,
            } => {
                if let Some(existing) = idempotent_match(t, idempotency_key.as_ref())? {
                    return Ok(Applied {
                        response: Response::Action { action: Box::new(existing), created: false },
                        events: Vec::new(),
                        terminal: None,
                    });
                }
                let turn = turn_of(t, turn_id)?;
                let key = idempotency_key.clone().unwrap_or_else(|| IdempotencyKey::derived_from(action_id));
                let spec = NewAction {
                    id: action_id,
                    capability,
                    args,
                    key,
                    decision,
                    max_attempts: *max_attempts,
                    backoff_ms: *backoff_ms,
                    confirm_ttl_ms: *confirm_ttl_ms,
                    replay_of: None,
                };
                let action = create_action(t, &mut rec, &turn, spec, turn.opened_seq)?;
                touch_session(t, &turn.session_id, at)?;
                let terminal = action.state.is_terminal().then(|| action.clone());
                (Response::Action { action: Box::new(action), created: true }, terminal)
            }
            Command::Confirm { action_id, approve, by } => {
                let mut action = action_of(t, action_id)?;
                let deadline = action.confirm_deadline_ms.unwrap_or(u64::MAX);
                if action.state != ActionState::AwaitingConfirmation || at >= deadline {
                    let expired = action.state == ActionState::AwaitingConfirmation;
                    let state = if expired { ActionState::Expired } else { action.state };
                    return Err(WardenError::NotAwaitingConfirmation {
                        action: action_id.to_string(),
                        state: state_name(state),
                    });
                }
                action.state = if *approve { ActionState::Pending } else { ActionState::Rejected };
                action.confirmed_by = Some(by.clone());
                rec.emit_for(t, &mut action, EventData::ConfirmationGiven { approve: *approve, by: by.clone() })?;
                let terminal = save_action(t, &action, at)?;
                (Response::Action { action: Box::new(action), created: false }, terminal)
            }
            Command::ExpireConfirmation { action_id } => {
                let mut action = action_of(t, action_id)?;
                let deadline_ms = match action.confirm_deadline_ms {
                    Some(d) if action.state == ActionState::AwaitingConfirmation && at >= d => d,
                    _ => return Err(WardenError::WrongState(action_id.to_string())),
                };
                action.state = ActionState::Expired;
                rec.emit_for(t, &mut action, EventData::ConfirmationExpired { deadline_ms })?;
                let terminal = save_action(t, &action, at)?;
                (Response::Action { action: Box::new(action), created: false }, terminal)
            }
            Command::Dispatch { action_id, attempt, node, reason } => {
                let action = dispatch(t, &mut rec, action_id, *attempt, node, reason.as_deref())?;
                (Response::Action { action: Box::new(action), created: false }, None)
            }
            Command::FinishAttempt { action_id, attempt, outcome, latency_ms } => {
                let (action, retry_after_ms) = finish_attempt(t, &mut rec, action_id, *attempt, outcome, *latency_ms)?;
                let terminal = action.state.is_terminal().then(|| action.clone());
                (Response::AttemptDone { action: Box::new(action), retry_after_ms }, terminal)
            }
            Command::ReplayDlq { dlq_id, new_action_id, decision, confirm_ttl_ms } => {
                let (action, dlq) = replay_dlq(t, &mut rec, dlq_id, new_action_id, decision, *confirm_ttl_ms)?;
                let terminal = action.state.is_terminal().then(|| action.clone());
                (Response::Replayed { action: Box::new(action), dlq: Box::new(dlq) }, terminal)
            }
            Command::SetDraining { node, draining, shutdown } => {
                if node.is_empty() {
                    return Err(WardenError::BadInput("a node name is required".into()));
                }
                // A node's own stop-drain never overrides an operator's drain, nor ends one.
                let current: Option<NodeRecord> = load(&t.nodes, node)?;
                if *shutdown && current.as_ref().is_some_and(|r| r.draining && !r.shutdown) {
                    return Err(WardenError::Conflict(format!("{node} is drained by an operator")));
                }
                let record = NodeRecord { name: node.clone(), draining: *draining, shutdown: *shutdown, since_ms: at };
                store(&mut t.nodes, node, &record)?;
                let scope = EventScope::correlated(CorrelationId(format!("node:{node}")));
                let data = EventData::NodeDraining { node: node.clone(), draining: *draining, shutdown: *shutdown };
                let seq = rec.emit(t, scope, None, None, data)?;
                (Response::Recorded { seq }, None)
            }
            Command::RecordEvent { correlation_id, data } => {
                let scope = EventScope::correlated(correlation_id.clone());
                let seq = rec.emit(t, scope, None, None, data.clone())?;
                (Response::Recorded { seq }, None)
            }
        };
        Ok(Applied { response, events: rec.events, terminal })
    }
}

fn state_name(state: ActionState) -> String {
    serde_json::to_value(state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn turn_of(t: &Tables<'_>, id: &TurnId) -> Result<Turn> {
    load(&t.turns, id.as_str())?.ok_or_else(|| WardenError::UnknownTurn(id.to_string()))
}

fn action_of(t: &Tables<'_>, id: &ActionId) -> Result<Action> {
    load(&t.actions, id.as_str())?.ok_or_else(|| WardenError::UnknownAction(id.to_string()))
}

fn idempotent_match(t: &Tables<'_>, key: Option<&IdempotencyKey>) -> Result<Option<Action>> {
    let Some(key) = key else { return Ok(None) };
    let Some(id) = t.idempotency.get(key.0.as_str())?.map(|g| g.value().to_owned()) else {
        return Ok(None);
    };
    load(&t.actions, &id)
}

fn touch_session(t: &mut Tables<'_>, id: &SessionId, at: u64) -> Result<()> {
    if let Some(mut session) = load::<Session>(&t.sessions, id.as_str())? {
        if at >= session.last_activity_ms + SESSION_ACTIVITY_RESOLUTION_MS {
            session.last_activity_ms = at;
            store(&mut t.sessions, id.as_str(), &session)?;
        }
    }
    Ok(())
}

/// Writes the action and keeps the index of non-terminal actions in step
/// (an action enters it once, when created, and leaves it once, when terminal).
/// Returns the action when it has just become terminal.
fn save_action(t: &mut Tables<'_>, action: &Action, at: u64) -> Result<Option<Action>> {
    let mut action = action.clone();
    action.updated_ms = at;
    store(&mut t.actions, action.id.as_str(), &action)?;
    if action.state.is_terminal() {
        t.active.remove(action.id.as_str())?;
        Ok(Some(action))
    } else {
        store(&mut t.active, action.id.as_str(), &ActiveAction::of(&action))?;
        Ok(None)
    }
}

fn open_turn(
    t: &mut Tables<'_>,
    rec: &mut Recorder<'_>,
    turn_id: &TurnId,
    session_id: &SessionId,
    correlation_id: &CorrelationId,
    trust: Option<Trust>,
    summary: &Option<String>,
) -> Result<Turn> {
    if let Some(existing) = load::<Turn>(&t.turns, turn_id.as_str())? {
        return Ok(existing);
    }
    let at = rec.entry.at_ms;
    let mut session = load::<Session>(&t.sessions, session_id.as_str())?.unwrap_or(Session {
        id: session_id.clone(),
        trust: Trust::Normal,
        created_ms: at,
        last_activity_ms: at,
        turns: 0,
    });
    if let Some(trust) = trust {
        session.trust = trust;
    }
    session.turns += 1;
    session.last_activity_ms = session.last_activity_ms.max(at);
    let scope = EventScope {
        session_id: Some(session_id.clone()),
        turn_id: Some(turn_id.clone()),
        correlation_id: correlation_id.clone(),
    };
    let data = EventData::TurnOpened { summary: summary.clone(), trust: session.trust };
    let opened_seq = rec.emit(t, scope, None, None, data)?;
    let turn = Turn {
        id: turn_id.clone(),
        session_id: session_id.clone(),
        correlation_id: correlation_id.clone(),
        summary: summary.clone(),
        opened_ms: at,
        opened_seq,
    };
    store(&mut t.sessions, session_id.as_str(), &session)?;
    store(&mut t.turns, turn_id.as_str(), &turn)?;
    Ok(turn)
}

#[allow(clippy::too_many_arguments)]
fn put_memory(
    t: &mut Tables<'_>,
    rec: &mut Recorder<'_>,
    ns: &str,
    key: &str,
    value: &Value,
    tags: &[String],
    turn_id: Option<&TurnId>,
    correlation_id: &CorrelationId,
) -> Result<MemoryItem> {
    let turn = turn_id.map(|id| turn_of(t, id)).transpose()?;
    let version =
        t.memory.get((ns, key))?.map(|g| decode::<MemoryItem>(g.value())).transpose()?.map_or(0, |m| m.version);
    let at = rec.entry.at_ms;
    let item = MemoryItem {
        ns: ns.to_owned(),
        key: key.to_owned(),
        value: value.clone(),
        tags: tags.to_vec(),
        version: version + 1,
        updated_ms: at,
        turn_id: turn_id.cloned(),
    };
    t.memory.insert((ns, key), encode(&item)?.as_slice())?;
    let (scope, cause) = match &turn {
        Some(turn) => {
            touch_session(t, &turn.session_id, at)?;
            (EventScope::of_turn(turn), Some(turn.opened_seq))
        }
        None => (EventScope::correlated(correlation_id.clone()), None),
    };
    let data =
        EventData::MemoryWrite { ns: ns.to_owned(), key: key.to_owned(), version: item.version, tags: tags.to_vec() };
    rec.emit(t, scope, None, cause, data)?;
    Ok(item)
}

struct NewAction<'a> {
    id: &'a ActionId,
    capability: &'a str,
    args: &'a Value,
    key: IdempotencyKey,
    decision: &'a Decision,
    max_attempts: u32,
    backoff_ms: u64,
    confirm_ttl_ms: u64,
    replay_of: Option<DlqId>,
}

/// Records a new action under `turn`, caused by event `cause`.
fn create_action(
    t: &mut Tables<'_>,
    rec: &mut Recorder<'_>,
    turn: &Turn,
    new: NewAction<'_>,
    cause: u64,
) -> Result<Action> {
    if t.actions.get(new.id.as_str())?.is_some() {
        return Err(WardenError::WrongState(format!("action {} already exists", new.id)));
    }
    let at = rec.entry.at_ms;
    let (state, deadline) = match new.decision.decision {
        Verdict::Allow => (ActionState::Pending, None),
        Verdict::Confirm => (ActionState::AwaitingConfirmation, Some(at.saturating_add(new.confirm_ttl_ms))),
        Verdict::Deny => (ActionState::Denied, None),
    };
    let mut action = Action {
        id: new.id.clone(),
        turn_id: turn.id.clone(),
        session_id: turn.session_id.clone(),
        correlation_id: turn.correlation_id.clone(),
        capability: new.capability.to_owned(),
        args: new.args.clone(),
        idempotency_key: new.key,
        decision: new.decision.clone(),
        state,
        max_attempts: new.max_attempts,
        backoff_ms: new.backoff_ms,
        attempts: Vec::new(),
        submitted_ms: at,
        updated_ms: at,
        confirm_deadline_ms: deadline,
        confirmed_by: None,
        submitted_via: rec.entry.node.clone(),
        not_before_ms: None,
        replay_of: new.replay_of,
        last_error: None,
        last_event_seq: cause,
    };
    let submitted = EventData::ActionSubmitted {
        capability: action.capability.clone(),
        args: action.args.clone(),
        idempotency_key: action.idempotency_key.clone(),
        replay_of: action.replay_of.clone(),
    };
    rec.emit_for(t, &mut action, submitted)?;
    let Decision { decision, tier, reasons, policy_hash } = action.decision.clone();
    rec.emit_for(t, &mut action, EventData::PolicyDecided { decision, tier, reasons, policy_hash })?;
    if let Some(deadline_ms) = deadline {
        rec.emit_for(t, &mut action, EventData::ConfirmationRequested { deadline_ms })?;
    }
    t.idempotency.insert(action.idempotency_key.0.as_str(), action.id.as_str())?;
    save_action(t, &action, at)?;
    Ok(action)
}

fn dispatch(
    t: &mut Tables<'_>,
    rec: &mut Recorder<'_>,
    id: &ActionId,
    attempt: u32,
    node: &str,
    reason: Option<&str>,
) -> Result<Action> {
    if node.is_empty() {
        return Err(WardenError::BadInput("a dispatch names its executor node".into()));
    }
    let mut action = action_of(t, id)?;
    let next = action.current_attempt() + 1;
    // A drain starts in log order: no first attempt or retry goes to the node after it.
    // (A takeover may: it moves work that was already running.)
    if action.state == ActionState::Pending && draining(t, node)? {
        return Err(WardenError::Conflict(format!("{node} is draining")));
    }
    let takeover = match action.state {
        ActionState::Pending if attempt == next => false,
        ActionState::Running if attempt == next => true,
        _ => return Err(WardenError::StaleAttempt { action: id.to_string(), attempt }),
    };
    let at = rec.entry.at_ms;
    if takeover {
        let last = action.attempts.last_mut().expect("a running action has an attempt");
        last.outcome = Some(AttemptOutcome::Interrupted);
        last.finished_ms = Some(at);
        let data = EventData::ActionTakeover {
            interrupted_attempt: last.number,
            from: last.node.clone(),
            to: node.to_owned(),
            attempt,
            reason: reason.map(str::to_owned),
            running_ms: at.saturating_sub(last.started_ms),
        };
        rec.emit_for(t, &mut action, data)?;
    }
    action.attempts.push(Attempt::started(attempt, node, at));
    action.state = ActionState::Running;
    action.not_before_ms = None;
    let data = EventData::ActionDispatched { attempt, node: node.to_owned(), by: rec.entry.node.clone(), takeover };
    rec.emit_for(t, &mut action, data)?;
    save_action(t, &action, at)?;
    Ok(action)
}

/// Whether `node` is being drained.
fn draining(t: &Tables<'_>, node: &str) -> Result<bool> {
    Ok(load::<NodeRecord>(&t.nodes, node)?.is_some_and(|r| r.draining))
}

/// Records how attempt `attempt` ended and decides what follows: success,
/// a retry after backoff, failure, or the dead-letter queue.
fn finish_attempt(
    t: &mut Tables<'_>,
    rec: &mut Recorder<'_>,
    id: &ActionId,
    attempt: u32,
    outcome: &AttemptOutcome,
    latency_ms: u64,
) -> Result<(Action, Option<u64>)> {
    let mut action = action_of(t, id)?;
    let at = rec.entry.at_ms;
    let stale = || WardenError::StaleAttempt { action: id.to_string(), attempt };
    match (action.state, outcome) {
        (_, AttemptOutcome::Interrupted) => {
            return Err(WardenError::BadInput("an attempt is interrupted only by a re-dispatch".into()))
        }
        (ActionState::Running, _) if attempt == action.current_attempt() => {}
        _ => return Err(stale()),
    }
    let last = action.attempts.last_mut().expect("attempt recorded above");
    last.outcome = Some(outcome.clone());
    last.finished_ms = Some(at);
    last.latency_ms = Some(latency_ms);
    let error = match outcome {
        AttemptOutcome::Retryable { error } | AttemptOutcome::Permanent { error } => Some(error.clone()),
        AttemptOutcome::BreakerOpen => Some("circuit breaker open".to_owned()),
        _ => None,
    };
    if error.is_some() {
        action.last_error = error.clone();
    }
    let (node, capability) = (rec.entry.node.clone(), action.capability.clone());
    let data = EventData::ActionAttempt { attempt, outcome: outcome.clone(), latency_ms, node, capability };
    rec.emit_for(t, &mut action, data)?;

    let mut retry_after_ms = None;
    match outcome {
        AttemptOutcome::Succeeded => {
            action.state = ActionState::Succeeded;
            rec.emit_for(t, &mut action, EventData::ActionSucceeded { attempts: attempt })?;
        }
        AttemptOutcome::Permanent { .. } => {
            action.state = ActionState::Failed;
            rec.emit_for(t, &mut action, EventData::ActionFailed { error, permanent: true, attempts: attempt })?;
        }
        _ if action.failures() < action.max_attempts => {
            action.state = ActionState::Pending;
            let exp = action.failures().saturating_sub(1).min(16);
            let backoff = action.backoff_ms.saturating_mul(1 << exp).min(MAX_BACKOFF_MS);
            retry_after_ms = Some(backoff);
            action.not_before_ms = Some(at.saturating_add(backoff));
        }
        _ => {
            action.state = ActionState::DeadLettered;
            let data = EventData::ActionFailed { error: error.clone(), permanent: false, attempts: attempt };
            let failed_seq = rec.emit_for(t, &mut action, data)?;
            let dlq_id = DlqId(format!("dlq_{}", action.id.as_str().trim_start_matches("act_")));
            let attempts = action.attempts.len() as u32;
            let data = EventData::DlqEntered { dlq_id: dlq_id.clone(), attempts, error };
            let entered_seq = rec.emit_for(t, &mut action, data)?;
            debug_assert!(entered_seq > failed_seq);
            let entry = DlqEntry {
                id: dlq_id,
                action_id: action.id.clone(),
                turn_id: action.turn_id.clone(),
                correlation_id: action.correlation_id.clone(),
                capability: action.capability.clone(),
                idempotency_key: action.idempotency_key.clone(),
                attempts: action.attempts.clone(),
                last_error: action.last_error.clone(),
                entered_ms: at,
                entered_seq,
                replays: Vec::new(),
            };
            store(&mut t.dlq, entry.id.as_str(), &entry)?;
        }
    }
    save_action(t, &action, at)?;
    Ok((action, retry_after_ms))
}

fn replay_dlq(
    t: &mut Tables<'_>,
    rec: &mut Recorder<'_>,
    dlq_id: &DlqId,
    new_id: &ActionId,
    decision: &Decision,
    confirm_ttl_ms: u64,
) -> Result<(Action, DlqEntry)> {
    let mut entry: DlqEntry =
        load(&t.dlq, dlq_id.as_str())?.ok_or_else(|| WardenError::UnknownDlqEntry(dlq_id.to_string()))?;
    if t.actions.get(new_id.as_str())?.is_some() {
        return Err(WardenError::WrongState(format!("action {new_id} already exists")));
    }
    // One replay at a time, and none after one that did not fail: a replay
    // that is still running or has succeeded must not run the tool again.
    if let Some(last) = entry.replays.last() {
        let last = action_of(t, last)?;
        let failed = matches!(last.state, ActionState::DeadLettered | ActionState::Failed);
        if !failed {
            return Err(WardenError::WrongState(format!(
                "dead-letter entry {dlq_id} was already replayed as {} ({})",
                last.id,
                state_name(last.state)
            )));
        }
    }
    let original = action_of(t, &entry.action_id)?;
    let turn = turn_of(t, &original.turn_id)?;
    let scope = EventScope::of_action(&original);
    let data = EventData::DlqReplayed {
        dlq_id: dlq_id.clone(),
        action_id: new_id.clone(),
        original_action_id: original.id.clone(),
    };
    let replayed_seq = rec.emit(t, scope, Some(&original.id), Some(entry.entered_seq), data)?;
    let spec = NewAction {
        id: new_id,
        capability: &original.capability,
        args: &original.args,
        key: original.idempotency_key.clone(),
        decision,
        max_attempts: original.max_attempts,
        backoff_ms: original.backoff_ms,
        confirm_ttl_ms,
        replay_of: Some(dlq_id.clone()),
    };
    let action = create_action(t, rec, &turn, spec, replayed_seq)?;
    entry.replays.push(action.id.clone());
    store(&mut t.dlq, dlq_id.as_str(), &entry)?;
    Ok((action, entry))
}

/// Applies every entry of `source`'s log to `target` (a fresh database), in
/// batches: how a replica rebuilds state from a log. Returns entries applied.
pub fn replay_log(source: &super::Store, target: &redb::Database) -> Result<u64> {
    const BATCH: usize = 1_024;
    let mut machine = StateMachine { next_seq: 1, ..StateMachine::default() };
    let mut next = 1;
    loop {
        let entries = source.log_entries(next, BATCH)?;
        let Some(&(last, _)) = entries.last() else { return Ok(machine.last_index) };
        let txn = target.begin_write()?;
        {
            let mut tables = Tables::open(&txn)?;
            for (index, commands) in &entries {
                assert!(*index > machine.last_index, "the log is in index order");
                machine.skip(*index);
                for command in commands {
                    // A rejected command is rejected again, identically: that is part of determinism.
                    drop(machine.apply_at(&mut tables, *index, command)?);
                }
            }
            machine.save(&mut tables)?;
        }
        txn.commit()?;
        next = last + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Decision, Tier, Verdict};

    fn entry(cmd: Command) -> Entry {
        Entry { at_ms: 1_000, node: "n".into(), cmd }
    }

    /// Applies `cmds` in one transaction on a fresh database; returns each result.
    fn run(cmds: Vec<Command>) -> Vec<Result<Applied>> {
        let dir = tempfile::tempdir().unwrap();
        let db = open_database(&dir.path().join("t.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        let mut machine = StateMachine { next_seq: 1, ..StateMachine::default() };
        let mut tables = Tables::open(&txn).unwrap();
        cmds.into_iter()
            .enumerate()
            .map(|(i, c)| machine.apply_at(&mut tables, i as u64 + 1, &entry(c)).unwrap())
            .collect()
    }

    fn allow() -> Decision {
        Decision { decision: Verdict::Allow, tier: Tier::Observe, reasons: vec![], policy_hash: "t".into() }
    }

    fn open_turn(turn: &TurnId) -> Command {
        Command::OpenTurn {
            turn_id: turn.clone(),
            session_id: SessionId("s".into()),
            correlation_id: CorrelationId("c".into()),
            trust: None,
            summary: None,
        }
    }

    /// Action `id` of capability "x" under `turn`, decided `decision`.
    fn submit(id: &str, turn: &TurnId, decision: Decision) -> Command {
        Command::SubmitAction {
            action_id: ActionId(id.into()),
            turn_id: turn.clone(),
            capability: "x".into(),
            args: serde_json::json!({}),
            idempotency_key: None,
            decision,
            max_attempts: 3,
            backoff_ms: 10,
            confirm_ttl_ms: 1_000,
        }
    }

    #[test]
    fn a_takeover_interrupts_the_old_attempt_and_fences_its_late_result() {
        let (turn, act) = (TurnId("turn_1".into()), ActionId("act_1".into()));
        let dispatch = |attempt, node: &str, reason: Option<&str>| Command::Dispatch {
            action_id: act.clone(),
            attempt,
            node: node.into(),
            reason: reason.map(str::to_owned),
        };
        let finish = |attempt| Command::FinishAttempt {
            action_id: act.clone(),
            attempt,
            outcome: AttemptOutcome::Succeeded,
            latency_ms: 5,
        };
        let results = run(vec![
            open_turn(&turn),
            submit("act_1", &turn, allow()),
            dispatch(1, "a", None),
            // Node a was declared down during attempt 1.
            dispatch(2, "b", Some("node_down")),
            // Attempt 1's result arrives late: fenced off.
            finish(1),
            // A second takeover racing the first one is stale too.
            dispatch(2, "c", Some("node_down")),
            finish(2),
        ]);
        let Ok(Applied { events, .. }) = &results[3] else { panic!("takeover rejected: {:?}", results[3]) };
        let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::ActionTakeover, EventKind::ActionDispatched]);
        let EventData::ActionTakeover { from, to, .. } = &events[0].data else { panic!("{:?}", events[0]) };
        assert_eq!((from.as_str(), to.as_str()), ("a", "b"));
        assert!(matches!(results[4], Err(WardenError::StaleAttempt { .. })));
        assert!(matches!(results[5], Err(WardenError::StaleAttempt { .. })));
        let Ok(Applied { response: Response::AttemptDone { action, .. }, .. }) = &results[6] else {
            panic!("attempt 2 rejected: {:?}", results[6]);
        };
        assert_eq!(action.state, ActionState::Succeeded);
        assert_eq!(action.attempts[0].outcome, Some(AttemptOutcome::Interrupted));
        assert_eq!((action.attempts[1].node.as_str(), action.attempts.len()), ("b", 2));
    }

    #[test]
    fn nothing_new_is_dispatched_to_a_node_after_its_drain_in_log_order() {
        let turn = TurnId("turn_1".into());
        let dispatch = |id: &str, node: &str| Command::Dispatch {
            action_id: ActionId(id.into()),
            attempt: 1,
            node: node.into(),
            reason: None,
        };
        let results = run(vec![
            open_turn(&turn),
            submit("act_1", &turn, allow()),
            Command::SetDraining { node: "b".into(), draining: true, shutdown: false },
            dispatch("act_1", "b"),
            dispatch("act_1", "c"),
        ]);
        assert!(matches!(results[3], Err(WardenError::Conflict(_))), "{:?}", results[3]);
        assert!(results[4].is_ok(), "{:?}", results[4]);
    }
}

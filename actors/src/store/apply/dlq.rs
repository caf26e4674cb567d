//! The dead-letter queue: entering it when an action runs out of attempts,
//! and `ReplayDlq`, which re-runs an entry as a new action.

use super::actions::{self, NewAction};
use super::{action_of, state_name, turn_of, Outcome, Recorder};
use crate::command::Response;
use crate::domain::*;
use crate::error::{Result, WardenError};
use crate::ids::*;
use crate::store::tables::Tables;

/// Dead-letters `action`, which has just failed for the last time (its
/// `action.failed` is recorded): the `dlq.entered` event and the entry.
pub(in crate::store) fn enter(
    t: &mut Tables<'_>,
    r: &mut Recorder<'_>,
    action: &mut Action,
    error: Option<String>,
) -> Result<()> {
    let failed_seq = action.last_event_seq;
    let dlq_id = DlqId(format!("dlq_{}", action.id.as_str().trim_start_matches("act_")));
    let attempts = action.attempts.len() as u32;
    let entered_seq = r.emit_for(t, action, EventData::DlqEntered { dlq_id: dlq_id.clone(), attempts, error })?;
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
        entered_ms: r.at(),
        entered_seq,
        replays: Vec::new(),
    };
    t.put_dlq_entry(&entry)
}

/// What a replay starts from.
struct Replay {
    entry: DlqEntry,
    original: Action,
    turn: Turn,
}

/// `ReplayDlq`: re-runs entry `dlq_id` as action `new_id`, with the original's
/// capability, arguments and idempotency key, under `decision`.
pub(in crate::store) fn replay(
    t: &mut Tables<'_>,
    r: &mut Recorder<'_>,
    dlq_id: &DlqId,
    new_id: &ActionId,
    decision: &Decision,
    confirm_ttl_ms: u64,
    principal: Option<&str>,
) -> Result<Outcome> {
    let Replay { mut entry, original, turn } = check_replay(t, dlq_id, new_id)?;
    actions::check_policy(t, decision)?;
    let scope = EventScope::of_action(&original);
    let data = EventData::DlqReplayed {
        dlq_id: dlq_id.clone(),
        action_id: new_id.clone(),
        original_action_id: original.id.clone(),
        principal: principal.map(str::to_owned),
    };
    let cause = Some(entry.entered_seq);
    let replayed_seq = r.emit_indexed(t, scope, Some(&original.id), cause, data, Some(&original.capability))?;
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
        submitted_by: original.submitted_by.clone(),
    };
    let action = actions::create(t, r, &turn, spec, replayed_seq)?;
    entry.replays.push(action.id.clone());
    t.put_dlq_entry(&entry)?;
    let terminal = action.state.is_terminal().then(|| action.clone());
    Ok((Response::Replayed { action: Box::new(action), dlq: Box::new(entry) }, terminal))
}

fn check_replay(t: &Tables<'_>, dlq_id: &DlqId, new_id: &ActionId) -> Result<Replay> {
    let entry = t.dlq_entry(dlq_id)?.ok_or_else(|| WardenError::UnknownDlqEntry(dlq_id.to_string()))?;
    actions::check_new(t, new_id)?;
    // One replay at a time, and none after one that did not fail: a replay
    // that is still running or has succeeded must not run the tool again.
    if let Some(last) = entry.replays.last() {
        let last = action_of(t, last)?;
        if !matches!(last.state, ActionState::DeadLettered | ActionState::Failed) {
            return Err(WardenError::WrongState(format!(
                "dead-letter entry {dlq_id} was already replayed as {} ({})",
                last.id,
                state_name(last.state)
            )));
        }
    }
    let original = action_of(t, &entry.action_id)?;
    let turn = turn_of(t, &original.turn_id)?;
    Ok(Replay { entry, original, turn })
}

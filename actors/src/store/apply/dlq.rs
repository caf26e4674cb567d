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
    let waiting = count_waiting(t, &action.capability, |n| n + 1)?;
    let capability = action.capability.clone();
    let data = EventData::DlqEntered { dlq_id: dlq_id.clone(), attempts, error, capability, waiting };
    let entered_seq = r.emit_for(t, action, data)?;
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

/// Prefix of the meta rows that count each capability's entries never replayed.
const WAITING_PREFIX: &str = "dlqw:";

/// Moves `capability`'s count of entries never replayed by `change`; the new count.
fn count_waiting(t: &mut Tables<'_>, capability: &str, change: impl FnOnce(u64) -> u64) -> Result<u64> {
    let row = format!("{WAITING_PREFIX}{capability}");
    let waiting = change(t.meta(&row)?.unwrap_or(0));
    t.put_meta(&row, waiting)?;
    Ok(waiting)
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
    // An entry waits until its first replay; a replay that fails is an entry of its own.
    let first = entry.replays.is_empty();
    let waiting = count_waiting(t, &original.capability, |n| if first { n.saturating_sub(1) } else { n })?;
    let data = EventData::DlqReplayed {
        dlq_id: dlq_id.clone(),
        action_id: new_id.clone(),
        original_action_id: original.id.clone(),
        principal: principal.map(str::to_owned),
        capability: original.capability.clone(),
        waiting,
    };
    let cause = Some(entry.entered_seq);
    let replayed_seq = r.emit(t, scope, Some(&original.id), cause, data)?;
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

#[cfg(test)]
mod tests {
    use super::super::testing::{allow, open_turn, run, submit};
    use crate::command::Command;
    use crate::domain::alert::{DLQ_GROWING, DLQ_GROWING_AT, DLQ_SHRUNK_AT};
    use crate::domain::{AttemptOutcome, EventData};
    use crate::ids::*;

    /// Submits action `n` and fails each of its three attempts.
    fn dead_letter(n: u64, turn: &TurnId) -> Vec<Command> {
        let id = ActionId(format!("act_{n}"));
        let mut cmds = vec![submit(id.as_str(), turn, allow())];
        for attempt in 1..=3 {
            cmds.push(Command::Dispatch { action_id: id.clone(), attempt, node: "n".into(), reason: None });
            cmds.push(Command::FinishAttempt {
                action_id: id.clone(),
                attempt,
                outcome: AttemptOutcome::Retryable { error: "503".into() },
                latency_ms: 1,
            });
        }
        cmds
    }

    fn replay(n: u64, as_n: u64) -> Command {
        Command::ReplayDlq {
            dlq_id: DlqId(format!("dlq_{n}")),
            new_action_id: ActionId(format!("act_{as_n}")),
            decision: allow(),
            confirm_ttl_ms: 1_000,
            principal: None,
        }
    }

    #[test]
    fn entries_never_replayed_are_counted_per_capability_and_raise_then_resolve_the_growth_alert() {
        let turn = TurnId("turn_1".into());
        let mut cmds = vec![open_turn(&turn)];
        for n in 1..=DLQ_GROWING_AT {
            cmds.extend(dead_letter(n, &turn));
        }
        // Replaying one entry twice (its first replay dead-letters too) takes it out once.
        cmds.push(replay(1, 1_001));
        for attempt in 1..=3 {
            let id = ActionId("act_1001".into());
            cmds.push(Command::Dispatch { action_id: id.clone(), attempt, node: "n".into(), reason: None });
            cmds.push(Command::FinishAttempt {
                action_id: id,
                attempt,
                outcome: AttemptOutcome::Retryable { error: "503".into() },
                latency_ms: 1,
            });
        }
        cmds.push(replay(1, 1_002));
        for n in 2..=DLQ_GROWING_AT - DLQ_SHRUNK_AT + 1 {
            cmds.push(replay(n, 2_000 + n));
        }
        let events: Vec<_> = run(cmds).into_iter().flat_map(|a| a.unwrap().events).collect();
        let waiting: Vec<(&str, u64)> = events
            .iter()
            .filter_map(|e| match &e.data {
                EventData::DlqEntered { waiting, capability, .. } => {
                    Some(("entered", *waiting)).filter(|_| capability == "x")
                }
                EventData::DlqReplayed { waiting, capability, .. } => {
                    Some(("replayed", *waiting)).filter(|_| capability == "x")
                }
                _ => None,
            })
            .collect();
        let entered: Vec<u64> = (1..=DLQ_GROWING_AT).collect();
        assert_eq!(waiting.iter().take(entered.len()).map(|w| w.1).collect::<Vec<_>>(), entered);
        let rest = &waiting[entered.len()..];
        assert_eq!(
            rest[..3],
            [("replayed", DLQ_GROWING_AT - 1), ("entered", DLQ_GROWING_AT), ("replayed", DLQ_GROWING_AT)]
        );
        assert_eq!(rest.last(), Some(&("replayed", DLQ_SHRUNK_AT)));

        let alerts: Vec<(&str, u64)> = events
            .iter()
            .filter_map(|e| match &e.data {
                EventData::AlertRaised { name, .. } if name == DLQ_GROWING => Some(("raised", e.causation_seq?)),
                EventData::AlertResolved { name, .. } if name == DLQ_GROWING => Some(("resolved", e.causation_seq?)),
                _ => None,
            })
            .collect();
        let seq_of = |kind: &str, w: u64| {
            events
                .iter()
                .find(|e| {
                    e.kind().as_str() == kind
                        && matches!(&e.data, EventData::DlqEntered { waiting, .. } | EventData::DlqReplayed { waiting, .. } if *waiting == w)
                })
                .map(|e| e.seq)
                .unwrap()
        };
        // Raised once, by the entry that reached the line (the repeat while firing is nothing), resolved once at half.
        assert_eq!(
            alerts,
            [("raised", seq_of("dlq.entered", DLQ_GROWING_AT)), ("resolved", seq_of("dlq.replayed", DLQ_SHRUNK_AT))]
        );
    }
}

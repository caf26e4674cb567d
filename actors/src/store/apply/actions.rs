//! Actions: `SubmitAction`, `Confirm`, `ExpireConfirmation`, `Dispatch` and
//! `FinishAttempt` — the life of an action from its decision to a terminal
//! state, with attempts fenced by number.

use super::nodes::draining;
use super::{action_of, dlq, save_action, state_name, touch_session, turn_of, Outcome, Recorder};
use crate::backoff;
use crate::command::Response;
use crate::domain::*;
use crate::error::{Result, WardenError};
use crate::ids::*;
use crate::limits::MAX_BACKOFF_MS;
use crate::store::tables::Tables;
use serde_json::Value;
use std::time::Duration;

/// What a new action is made of (a submission, or a replay of a dead letter).
pub(in crate::store) struct NewAction<'a> {
    pub id: &'a ActionId,
    pub capability: &'a str,
    pub args: &'a Value,
    pub key: IdempotencyKey,
    pub decision: &'a Decision,
    pub max_attempts: u32,
    pub backoff_ms: u64,
    pub confirm_ttl_ms: u64,
    pub replay_of: Option<DlqId>,
    pub submitted_by: Option<String>,
}

/// `SubmitAction`: records a decided action under its turn. A known
/// idempotency key answers the action that carries it, and writes nothing.
pub(in crate::store) fn submit(
    t: &mut Tables<'_>,
    r: &mut Recorder<'_>,
    turn_id: &TurnId,
    idempotency_key: Option<&IdempotencyKey>,
    new: NewAction<'_>,
) -> Result<Outcome> {
    if let Some(existing) = idempotency_key.map(|key| t.action_with_key(key)).transpose()?.flatten() {
        return Ok((Response::Action { action: Box::new(existing), created: false }, None));
    }
    let turn = turn_of(t, turn_id)?;
    check_new(t, new.id)?;
    check_policy(t, new.decision)?;

    let action = create(t, r, &turn, new, turn.opened_seq)?;
    touch_session(t, &turn.session_id, r.at())?;
    let terminal = action.state.is_terminal().then(|| action.clone());
    Ok((Response::Action { action: Box::new(action), created: true }, terminal))
}

/// Once the cluster has activated a policy, a decision must come from the
/// policy active at the log index where it is recorded: every action's
/// decision then names the bundle in force at its place in the log.
pub(in crate::store) fn check_policy(t: &Tables<'_>, decision: &Decision) -> Result<()> {
    match t.active_policy_hash()? {
        Some(active) if active != decision.policy_hash => {
            Err(WardenError::StalePolicy { decided: decision.policy_hash.clone(), active })
        }
        _ => Ok(()),
    }
}

/// A new action must not reuse an id.
pub(in crate::store) fn check_new(t: &Tables<'_>, id: &ActionId) -> Result<()> {
    if t.has_action(id)? {
        return Err(WardenError::WrongState(format!("action {id} already exists")));
    }
    Ok(())
}

/// Records a new action under `turn`, caused by event `cause`: its
/// submission, its decision and, if it needs one, the confirmation request.
/// Write phase only: `check_new` comes first.
pub(in crate::store) fn create(
    t: &mut Tables<'_>,
    r: &mut Recorder<'_>,
    turn: &Turn,
    new: NewAction<'_>,
    cause: u64,
) -> Result<Action> {
    let at = r.at();
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
        submitted_via: r.node().to_owned(),
        not_before_ms: None,
        replay_of: new.replay_of,
        last_error: None,
        last_event_seq: cause,
        submitted_by: new.submitted_by,
    };
    let submitted = EventData::ActionSubmitted {
        capability: action.capability.clone(),
        args: action.args.clone(),
        idempotency_key: action.idempotency_key.clone(),
        replay_of: action.replay_of.clone(),
    };
    r.emit_for(t, &mut action, submitted)?;
    let Decision { decision, tier, reasons, policy_hash } = action.decision.clone();
    r.emit_for(t, &mut action, EventData::PolicyDecided { decision, tier, reasons, policy_hash })?;
    if let Some(deadline_ms) = deadline {
        r.emit_for(t, &mut action, EventData::ConfirmationRequested { deadline_ms })?;
    }
    t.put_idempotency_key(&action.idempotency_key, &action.id)?;
    save_action(t, &action, at)?;
    Ok(action)
}

/// `Confirm`: approves or rejects an action awaiting confirmation, before its deadline.
pub(in crate::store) fn confirm(
    t: &mut Tables<'_>,
    r: &mut Recorder<'_>,
    id: &ActionId,
    approve: bool,
    by: &str,
) -> Result<Outcome> {
    let mut action = check_confirm(t, id, r.at())?;
    action.state = if approve { ActionState::Pending } else { ActionState::Rejected };
    action.confirmed_by = Some(by.to_owned());
    r.emit_for(t, &mut action, EventData::ConfirmationGiven { approve, by: by.to_owned() })?;
    let terminal = save_action(t, &action, r.at())?;
    Ok((Response::Action { action: Box::new(action), created: false }, terminal))
}

fn check_confirm(t: &Tables<'_>, id: &ActionId, at: u64) -> Result<Action> {
    let action = action_of(t, id)?;
    let deadline = action.confirm_deadline_ms.unwrap_or(u64::MAX);
    if action.state != ActionState::AwaitingConfirmation || at >= deadline {
        let expired = action.state == ActionState::AwaitingConfirmation;
        let state = if expired { ActionState::Expired } else { action.state };
        return Err(WardenError::NotAwaitingConfirmation { action: id.to_string(), state: state_name(state) });
    }
    Ok(action)
}

/// `ExpireConfirmation`: an action whose confirmation deadline has passed expires.
pub(in crate::store) fn expire_confirmation(
    t: &mut Tables<'_>,
    r: &mut Recorder<'_>,
    id: &ActionId,
) -> Result<Outcome> {
    let (mut action, deadline_ms) = check_expiry(t, id, r.at())?;
    action.state = ActionState::Expired;
    r.emit_for(t, &mut action, EventData::ConfirmationExpired { deadline_ms })?;
    let terminal = save_action(t, &action, r.at())?;
    Ok((Response::Action { action: Box::new(action), created: false }, terminal))
}

fn check_expiry(t: &Tables<'_>, id: &ActionId, at: u64) -> Result<(Action, u64)> {
    let action = action_of(t, id)?;
    match action.confirm_deadline_ms {
        Some(deadline) if action.state == ActionState::AwaitingConfirmation && at >= deadline => Ok((action, deadline)),
        _ => Err(WardenError::WrongState(id.to_string())),
    }
}

/// `Dispatch`: assigns attempt `attempt` to executor `node`. The next attempt
/// of a running action is a takeover: the running one is interrupted.
pub(in crate::store) fn dispatch(
    t: &mut Tables<'_>,
    r: &mut Recorder<'_>,
    id: &ActionId,
    attempt: u32,
    node: &str,
    reason: Option<&str>,
) -> Result<Outcome> {
    let (mut action, takeover) = check_dispatch(t, id, attempt, node)?;
    let at = r.at();
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
        r.emit_for(t, &mut action, data)?;
    }
    action.attempts.push(Attempt::started(attempt, node, at));
    action.state = ActionState::Running;
    action.not_before_ms = None;
    let data = EventData::ActionDispatched { attempt, node: node.to_owned(), by: r.node().to_owned(), takeover };
    r.emit_for(t, &mut action, data)?;
    save_action(t, &action, at)?;
    Ok((Response::Action { action: Box::new(action), created: false }, None))
}

/// The action, and whether the dispatch is a takeover.
fn check_dispatch(t: &Tables<'_>, id: &ActionId, attempt: u32, node: &str) -> Result<(Action, bool)> {
    if node.is_empty() {
        return Err(WardenError::BadInput("a dispatch names its executor node".into()));
    }
    let action = action_of(t, id)?;
    // A drain starts in log order: no first attempt or retry goes to the node after it.
    // (A takeover may: it moves work that was already running.)
    if action.state == ActionState::Pending && draining(t, node)? {
        return Err(WardenError::Conflict(format!("{node} is draining")));
    }
    let next = action.current_attempt() + 1;
    match action.state {
        ActionState::Pending if attempt == next => Ok((action, false)),
        ActionState::Running if attempt == next => Ok((action, true)),
        _ => Err(WardenError::StaleAttempt { action: id.to_string(), attempt }),
    }
}

/// `FinishAttempt`: records how the current attempt ended and decides what
/// follows: success, a retry after backoff, failure, or the dead-letter queue.
pub(in crate::store) fn finish_attempt(
    t: &mut Tables<'_>,
    r: &mut Recorder<'_>,
    id: &ActionId,
    attempt: u32,
    outcome: &AttemptOutcome,
    latency_ms: u64,
) -> Result<Outcome> {
    let mut action = check_finish(t, id, attempt, outcome)?;
    let at = r.at();
    let last = action.attempts.last_mut().expect("a running action has an attempt");
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
    let (node, capability) = (r.node().to_owned(), action.capability.clone());
    let data = EventData::ActionAttempt { attempt, outcome: outcome.clone(), latency_ms, node, capability };
    r.emit_for(t, &mut action, data)?;

    let mut retry_after_ms = None;
    match outcome {
        AttemptOutcome::Succeeded { .. } => {
            action.state = ActionState::Succeeded;
            r.emit_for(t, &mut action, EventData::ActionSucceeded { attempts: attempt })?;
        }
        AttemptOutcome::Permanent { .. } => {
            action.state = ActionState::Failed;
            r.emit_for(t, &mut action, EventData::ActionFailed { error, permanent: true, attempts: attempt })?;
        }
        _ if action.failures() < action.max_attempts => {
            action.state = ActionState::Pending;
            let (base, max) = (Duration::from_millis(action.backoff_ms), Duration::from_millis(MAX_BACKOFF_MS));
            let backoff = backoff::nth(base, max, action.failures() as usize).as_millis() as u64;
            retry_after_ms = Some(backoff);
            action.not_before_ms = Some(at.saturating_add(backoff));
        }
        _ => {
            action.state = ActionState::DeadLettered;
            r.emit_for(
                t,
                &mut action,
                EventData::ActionFailed { error: error.clone(), permanent: false, attempts: attempt },
            )?;
            dlq::enter(t, r, &mut action, error)?;
        }
    }
    save_action(t, &action, at)?;
    let terminal = action.state.is_terminal().then(|| action.clone());
    Ok((Response::AttemptDone { action: Box::new(action), retry_after_ms }, terminal))
}

/// Only the current attempt of a running action finishes; anything else is stale.
fn check_finish(t: &Tables<'_>, id: &ActionId, attempt: u32, outcome: &AttemptOutcome) -> Result<Action> {
    let action = action_of(t, id)?;
    match (action.state, outcome) {
        (_, AttemptOutcome::Interrupted) => {
            Err(WardenError::BadInput("an attempt is interrupted only by a re-dispatch".into()))
        }
        (ActionState::Running, _) if attempt == action.current_attempt() => Ok(action),
        _ => Err(WardenError::StaleAttempt { action: id.to_string(), attempt }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::command::{Command, Response};
    use crate::domain::*;
    use crate::error::WardenError;
    use crate::ids::*;
    use crate::store::Applied;

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
            outcome: AttemptOutcome::OK,
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
        let kinds: Vec<EventKind> = events.iter().map(|e| e.kind()).collect();
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
            Command::SetDraining { node: "b".into(), draining: true, shutdown: false, principal: None },
            dispatch("act_1", "b"),
            dispatch("act_1", "c"),
        ]);
        assert!(matches!(results[3], Err(WardenError::Conflict(_))), "{:?}", results[3]);
        assert!(results[4].is_ok(), "{:?}", results[4]);
    }
}

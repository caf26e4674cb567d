//! `Expire`: retention of the replicated state. The oldest events recorded
//! before the command's cutoff go (a prefix of the timeline, in seq order,
//! at most `max_events`), and with them the records whose history went:
//!
//! - each terminal action none of whose events is retained any more (its
//!   idempotency key goes with it, if the key still names it);
//! - each turn whose `turn.opened` went (now or with an earlier command) and
//!   of whose correlation no event is retained: a turn still in use stays.
//!
//! What is not finished stays: an action awaiting confirmation, pending or
//! running, a dead-lettered action and its replays (their DLQ entry refers
//! to them), and the turns of all of those. The events, actions and turns
//! removed go to the node's archive (`Recorder::archive`).
//!
//! With a sessions cutoff, each session idle since before it goes too, once
//! no turn of it is retained. A session of low trust stays however long it
//! idles: reopened, a session starts at normal trust, and a lowered trust
//! must not lapse by waiting. (A session's history is its events, archived
//! with them; the session record itself is not archived.) Memory, DLQ
//! entries, alerts and the policy history are not expired here.
//!
//! Deterministic: the cutoffs are in the command (the leader's clock), and
//! every choice reads only the tables.

use super::{Outcome, Recorder};
use crate::command::Response;
use crate::error::Result;
use crate::ids::{ActionId, TurnId};
use crate::store::archive::ArchiveBatch;
use crate::store::tables::Tables;
use std::collections::HashSet;

pub(in crate::store) fn expire(
    t: &mut Tables<'_>,
    r: &mut Recorder<'_>,
    (before_ms, max_events): (u64, u64),
    sessions_before_ms: Option<u64>,
) -> Result<Outcome> {
    let (batch, more) = expire_history(t, before_ms, max_events)?;
    // After the turns: a session whose last turn went in this command goes with it.
    let sessions = match sessions_before_ms {
        Some(cutoff) => expire_sessions(t, cutoff)?,
        None => 0,
    };
    let response = Response::Expired {
        events: batch.events.len() as u64,
        actions: batch.actions.len() as u64,
        turns: batch.turns.len() as u64,
        floor_seq: t.first_event_seq()?,
        more,
        sessions,
    };
    if !batch.events.is_empty() {
        r.archive(batch);
    }
    Ok((response, None))
}

/// Removes the idle sessions of normal trust none of whose turns is retained.
fn expire_sessions(t: &mut Tables<'_>, before_ms: u64) -> Result<u64> {
    let gone = t.expirable_sessions(before_ms)?;
    for id in &gone {
        t.remove_session(id)?;
    }
    Ok(gone.len() as u64)
}

/// Removes the oldest events before `before_ms` (at most `max_events`) and
/// the finished actions and unused turns that went with them; returns them,
/// and whether more events before the cutoff remain.
fn expire_history(t: &mut Tables<'_>, before_ms: u64, max_events: u64) -> Result<(ArchiveBatch, bool)> {
    let max = max_events.max(1) as usize;
    // One past the limit: whether more remain to expire.
    let mut events = t.oldest_events(max + 1, |e| e.ts < before_ms)?;
    let more = events.len() > max;
    events.truncate(max);
    let Some(last) = events.last().map(|e| e.seq) else {
        return Ok((ArchiveBatch::default(), false));
    };

    // What unfinished work refers to stays.
    let mut keep_actions: HashSet<ActionId> = HashSet::new();
    let mut keep_turns: HashSet<TurnId> = HashSet::new();
    for entry in t.dlq_entries()? {
        keep_actions.insert(entry.action_id);
        keep_actions.extend(entry.replays);
        keep_turns.insert(entry.turn_id);
    }
    for id in t.active_ids()? {
        if let Some(action) = t.action(&id)? {
            keep_turns.insert(action.turn_id);
        }
        keep_actions.insert(id);
    }

    let mut seen: HashSet<&ActionId> = HashSet::new();
    let mut actions = Vec::new();
    for id in events.iter().filter_map(|e| e.action_id.as_ref()) {
        if !seen.insert(id) || keep_actions.contains(id) {
            continue;
        }
        if let Some(action) = t.action(id)? {
            if action.state.is_terminal() && action.last_event_seq <= last && action.updated_ms < before_ms {
                actions.push(action);
            }
        }
    }
    // The turns this batch's events belong to, once their `turn.opened` is
    // gone and no retained event is of their correlation (a turn in use
    // keeps recording under it).
    let mut turns = Vec::new();
    let mut chosen: HashSet<&TurnId> = HashSet::new();
    for id in events.iter().filter_map(|e| e.turn_id.as_ref()).chain(actions.iter().map(|a| &a.turn_id)) {
        if keep_turns.contains(id) || !chosen.insert(id) {
            continue;
        }
        let Some(turn) = t.turn(id)? else { continue };
        if turn.opened_seq <= last && !t.has_events_of_correlation_after(&turn.correlation_id, last)? {
            turns.push(turn);
        }
    }

    for event in &events {
        t.remove_event(event)?;
    }
    for action in &actions {
        t.remove_action(action)?;
    }
    for turn in &turns {
        t.remove_turn(&turn.id)?;
    }
    Ok((ArchiveBatch { events, actions, turns }, more))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::command::{Command, Response};
    use crate::domain::*;
    use crate::ids::*;
    use crate::store::machine::{Applied, StateMachine};
    use crate::store::tables::{open_database, Tables};

    fn dispatch(id: &str) -> Command {
        Command::Dispatch { action_id: ActionId(id.into()), attempt: 1, node: "n".into(), reason: None }
    }

    fn finish(id: &str, outcome: AttemptOutcome) -> Command {
        Command::FinishAttempt { action_id: ActionId(id.into()), attempt: 1, outcome, latency_ms: 1 }
    }

    /// Applies command after command, as the log does, each at the next index.
    fn applier() -> impl FnMut(&mut Tables<'_>, Command) -> Applied {
        let mut machine = StateMachine { next_seq: 1, ..StateMachine::default() };
        let mut index = 0;
        move |t: &mut Tables<'_>, cmd: Command| {
            index += 1;
            machine.apply_at(t, index, &entry(cmd)).unwrap().expect("applied")
        }
    }

    fn expire(max_events: u64) -> Command {
        Command::Expire { before_ms: 1_001, max_events, sessions_before_ms: None }
    }

    #[test]
    fn expiry_takes_a_prefix_of_the_events_and_only_finished_work() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_database(&dir.path().join("t.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        let mut t = Tables::open(&txn).unwrap();
        let mut apply = applier();
        let (kept, gone, late) = (TurnId("turn_kept".into()), TurnId("turn_gone".into()), TurnId("turn_late".into()));
        let mut keyed = submit("act_done", &gone, allow());
        if let Command::SubmitAction { idempotency_key, .. } = &mut keyed {
            *idempotency_key = Some(IdempotencyKey("k-1".into()));
        }
        let mut dead_letter = submit("act_dead", &kept, allow());
        if let Command::SubmitAction { max_attempts, .. } = &mut dead_letter {
            *max_attempts = 1;
        }
        let history = vec![
            open_turn(&kept),
            open_turn(&gone),
            keyed,
            dispatch("act_done"),
            finish("act_done", AttemptOutcome::OK),
            // Under the kept turn: one running, one dead-lettered (its one
            // attempt failed), one finished.
            submit("act_running", &kept, allow()),
            dispatch("act_running"),
            dead_letter,
            dispatch("act_dead"),
            finish("act_dead", AttemptOutcome::Retryable { error: "no".into() }),
            submit("act_ok", &kept, allow()),
            dispatch("act_ok"),
            finish("act_ok", AttemptOutcome::OK),
            // A turn whose one action is still running.
            open_turn(&late),
            submit("act_late", &late, allow()),
            dispatch("act_late"),
        ];
        for cmd in history {
            apply(&mut t, cmd);
        }
        let all = t.oldest_events(usize::MAX, |_| true).unwrap();
        let dead = t.action(&ActionId("act_dead".into())).unwrap().unwrap();
        assert!(dead.state.is_terminal() && t.dlq_entries().unwrap().iter().any(|e| e.action_id == dead.id));

        // A bounded command takes the oldest events, says more are left, and
        // removes no action whose history is not all gone.
        let n = 1 + all
            .iter()
            .position(|e| e.kind() == EventKind::TurnOpened && e.turn_id.as_ref() == Some(&gone))
            .unwrap();
        let first = apply(&mut t, expire(n as u64));
        let Response::Expired { events, actions: 0, turns: 0, floor_seq, more: true, sessions: 0 } = first.response
        else {
            panic!("{:?}", first.response)
        };
        assert_eq!((events as usize, floor_seq), (n, Some(all[n].seq)));
        let archived = first.archived.expect("archived");
        assert_eq!(archived.events, all[..n]);
        // Still in use: later events of its correlation are retained.
        assert!(t.turn(&gone).unwrap().is_some());
        assert!(t.action(&ActionId("act_done".into())).unwrap().is_some());

        // The rest: every event goes, finished work with it; what is running,
        // dead-lettered, and their turn stay.
        let rest = apply(&mut t, expire(1_000));
        let Response::Expired { events, actions: 2, turns: 1, floor_seq: None, more: false, sessions: 0 } =
            rest.response
        else {
            panic!("{:?}", rest.response)
        };
        assert_eq!(events as usize, all.len() - n);
        let archived = rest.archived.expect("archived");
        let mut expired: Vec<_> = archived.actions.iter().map(|a| a.id.to_string()).collect();
        expired.sort();
        assert_eq!(expired, ["act_done", "act_ok"]);
        assert_eq!(archived.turns.iter().map(|t| t.id.clone()).collect::<Vec<_>>(), vec![gone.clone()]);
        assert!(t.turn(&gone).unwrap().is_none());
        for id in ["act_done", "act_ok"] {
            assert!(t.action(&ActionId(id.into())).unwrap().is_none(), "{id}");
        }
        for id in ["act_running", "act_dead", "act_late"] {
            assert!(t.action(&ActionId(id.into())).unwrap().is_some(), "{id}");
        }
        assert!(t.turn(&kept).unwrap().is_some() && t.turn(&late).unwrap().is_some());
        assert!(t.dlq_entries().unwrap().iter().any(|e| e.action_id == dead.id));
        assert_eq!(t.action_with_key(&IdempotencyKey("k-1".into())).unwrap(), None, "its key went with it");

        // Nothing left to expire: no events, no segment.
        let none = apply(&mut t, expire(1_000));
        assert!(matches!(none.response, Response::Expired { events: 0, more: false, .. }), "{:?}", none.response);
        assert_eq!(none.archived, None);

        // Once it finishes, its last events expire, and it goes with its
        // turn (whose `turn.opened` expired long before).
        apply(&mut t, finish("act_late", AttemptOutcome::OK));
        let last = apply(&mut t, expire(1_000));
        let Response::Expired { actions: 1, turns: 1, more: false, .. } = last.response else {
            panic!("{:?}", last.response)
        };
        let archived = last.archived.expect("archived");
        assert_eq!((archived.actions[0].id.as_str(), &archived.turns[0].id), ("act_late", &late));
        assert!(t.turn(&late).unwrap().is_none());
    }

    #[test]
    fn an_idle_session_goes_with_its_last_turn_unless_it_is_in_use_or_of_low_trust() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_database(&dir.path().join("t.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        let mut t = Tables::open(&txn).unwrap();
        let mut apply = applier();
        let open = |turn: &str, session: &str, trust: Option<Trust>| Command::OpenTurn {
            turn_id: TurnId(turn.into()),
            session_id: SessionId(session.into()),
            correlation_id: CorrelationId(format!("c_{turn}")),
            trust,
            summary: None,
        };
        apply(&mut t, open("turn_idle", "s_idle", None));
        apply(&mut t, open("turn_low", "s_low", Some(Trust::Low)));
        apply(&mut t, open("turn_busy", "s_busy", None));
        apply(&mut t, submit("act_busy", &TurnId("turn_busy".into()), allow()));
        let expire = |sessions_before_ms| Command::Expire { before_ms: 1_001, max_events: 1_000, sessions_before_ms };

        // Without a sessions cutoff no session goes, though their turns do.
        let first = apply(&mut t, expire(None));
        let Response::Expired { turns: 2, sessions: 0, .. } = first.response else { panic!("{:?}", first.response) };
        assert!(t.session(&SessionId("s_idle".into())).unwrap().is_some());

        // With one, the idle session without turns goes; the one whose turn
        // is kept by a running action and the low-trust one stay.
        let second = apply(&mut t, expire(Some(1_001)));
        let Response::Expired { events: 0, sessions: 1, .. } = second.response else { panic!("{:?}", second.response) };
        assert_eq!(second.archived, None, "no events, no segment");
        assert!(t.session(&SessionId("s_idle".into())).unwrap().is_none());
        assert!(t.session(&SessionId("s_busy".into())).unwrap().is_some());
        assert_eq!(t.session(&SessionId("s_low".into())).unwrap().map(|s| s.trust), Some(Trust::Low));

        // Not idle long enough: nothing.
        let third = apply(&mut t, expire(Some(1_000)));
        assert!(matches!(third.response, Response::Expired { sessions: 0, .. }), "{:?}", third.response);
    }
}

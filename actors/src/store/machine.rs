//! The deterministic state machine. `apply` reads only the command and the
//! tables, so every replica applying the same log ends in the same state.
//! The commands themselves live in `super::apply`, one file per domain.
//!
//! **Invariant**: a command that `apply` rejects changes nothing — every
//! handler checks before its first write, and `apply` asserts it (debug
//! builds) from the tables' write count, the event counter and the events.

use super::apply::{actions, alert, dlq, events, memory, nodes, policy, retention, sessions, slo, Outcome, Recorder};
use super::archive::ArchiveBatch;
use super::tables::*;
use crate::command::{Command, Entry, Response};
use crate::domain::*;
use crate::error::{Result, WardenError};
use crate::ids::IdempotencyKey;
use redb::ReadableTable;

/// What one applied command produced: its response, the events it recorded
/// (in seq order) and the action it made terminal, if any.
#[derive(Debug)]
pub struct Applied {
    pub response: Response,
    pub events: Vec<Event>,
    pub terminal: Option<Action>,
    /// What the command removed (retention), for the node's archive.
    pub archived: Option<ArchiveBatch>,
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
        t.put_meta(META_LAST_INDEX, self.last_index)?;
        t.put_meta(META_NEXT_SEQ, self.next_seq)?;
        t.put_meta(META_LAST_TS, self.last_ts)?;
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
        // Alerts follow from the events the command recorded, in the same entry.
        self.apply_with(t, entry, |t, r, cmd| {
            let outcome = route(t, r, cmd)?;
            alert::follow(t, r)?;
            Ok(outcome)
        })
    }

    /// Applies `entry` with `handler`, and checks the invariant: a command
    /// rejected for any reason but storage wrote nothing and recorded nothing.
    fn apply_with(
        &mut self,
        t: &mut Tables<'_>,
        entry: &Entry,
        handler: impl FnOnce(&mut Tables<'_>, &mut Recorder<'_>, &Command) -> Result<Outcome>,
    ) -> Result<Applied> {
        let before = (t.writes(), self.next_seq, self.last_ts);
        let mut rec = Recorder::new(&mut self.next_seq, &mut self.last_ts, entry);
        let outcome = handler(t, &mut rec, &entry.cmd);
        let (events, archived) = rec.finish();
        if let Err(e) = &outcome {
            let untouched = events.is_empty() && (t.writes(), self.next_seq, self.last_ts) == before;
            debug_assert!(
                untouched || matches!(e, WardenError::Storage(_)),
                "{} was rejected ({e}) after it wrote: a check must precede the first write",
                entry.cmd.name()
            );
        }
        let (response, terminal) = outcome?;
        Ok(Applied { response, events, terminal, archived })
    }
}

/// Hands each command to its handler in `super::apply`.
fn route(t: &mut Tables<'_>, r: &mut Recorder<'_>, cmd: &Command) -> Result<Outcome> {
    match cmd {
        Command::OpenTurn { turn_id, session_id, correlation_id, trust, summary } => {
            sessions::open_turn(t, r, turn_id, session_id, correlation_id, *trust, summary)
        }
        Command::RecordModelCall { turn_id, model, latency_ms, ok, prompt_tokens, completion_tokens } => {
            let (model, latency_ms, ok) = (model.clone(), *latency_ms, *ok);
            let (prompt_tokens, completion_tokens) = (*prompt_tokens, *completion_tokens);
            let data = EventData::ModelCall { model, latency_ms, ok, prompt_tokens, completion_tokens };
            sessions::record_for_turn(t, r, turn_id, data)
        }
        Command::RecordRecall { turn_id, ns, query, hits } => {
            let data = EventData::MemoryRecall { ns: ns.clone(), query: query.clone(), hits: hits.clone() };
            sessions::record_for_turn(t, r, turn_id, data)
        }
        Command::PutMemory { ns, key, value, tags, turn_id, correlation_id } => {
            memory::put_memory(t, r, ns, key, value, tags, turn_id.as_ref(), correlation_id)
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
            submitted_by,
        } => {
            let key = idempotency_key.clone().unwrap_or_else(|| IdempotencyKey::derived_from(action_id));
            let (max_attempts, backoff_ms, confirm_ttl_ms) = (*max_attempts, *backoff_ms, *confirm_ttl_ms);
            let new = actions::NewAction {
                id: action_id,
                capability,
                args,
                key,
                decision,
                max_attempts,
                backoff_ms,
                confirm_ttl_ms,
                replay_of: None,
                submitted_by: submitted_by.clone(),
            };
            actions::submit(t, r, turn_id, idempotency_key.as_ref(), new)
        }
        Command::Confirm { action_id, approve, by } => actions::confirm(t, r, action_id, *approve, by),
        Command::ExpireConfirmation { action_id } => actions::expire_confirmation(t, r, action_id),
        Command::Dispatch { action_id, attempt, node, reason } => {
            actions::dispatch(t, r, action_id, *attempt, node, reason.as_deref())
        }
        Command::FinishAttempt { action_id, attempt, outcome, latency_ms } => {
            actions::finish_attempt(t, r, action_id, *attempt, outcome, *latency_ms)
        }
        Command::ReplayDlq { dlq_id, new_action_id, decision, confirm_ttl_ms, principal } => {
            dlq::replay(t, r, dlq_id, new_action_id, decision, *confirm_ttl_ms, principal.as_deref())
        }
        Command::SetDraining { node, draining, shutdown, principal } => {
            nodes::set_draining(t, r, node, (*draining, *shutdown), principal.as_deref())
        }
        Command::RecordEvent { correlation_id, data } => events::record(t, r, correlation_id, data),
        Command::SloEpisode { capability, advisory, episode, open, data } => {
            slo::episode(t, r, capability, advisory, *episode, *open, data)
        }
        Command::ActivatePolicy { hash, revision, bundle, by, reason, change, correlation_id } => {
            let activation = policy::Activation { hash, revision, bundle, by, reason, change: *change, correlation_id };
            policy::activate(t, r, activation)
        }
        Command::RejectPolicy { hash, revision, by, failures, correlation_id } => {
            policy::reject(t, r, (hash, revision), by, failures, correlation_id)
        }
        Command::AlertDelivered { fingerprint, episode, state, channel, attempts } => {
            alert::delivered(t, r, fingerprint, *episode, *state, channel, *attempts)
        }
        Command::Expire { before_ms, max_events, sessions_before_ms } => {
            retention::expire(t, r, (*before_ms, *max_events), *sessions_before_ms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::apply::testing::*;
    use super::*;
    use crate::ids::*;

    /// Runs `handler` as if it applied an entry, on a fresh database.
    fn apply_with(handler: impl FnOnce(&mut Tables<'_>, &mut Recorder<'_>, &Command) -> Result<Outcome>) {
        let dir = tempfile::tempdir().unwrap();
        let db = open_database(&dir.path().join("t.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        let mut tables = Tables::open(&txn).unwrap();
        let mut machine = StateMachine { next_seq: 1, ..StateMachine::default() };
        let entry = entry(Command::SetDraining { node: "b".into(), draining: true, shutdown: false, principal: None });
        let _ = machine.apply_with(&mut tables, &entry, handler);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "after it wrote")]
    fn a_rejection_after_a_write_is_caught() {
        apply_with(|t, r, _| {
            t.put_node(&NodeRecord { name: "b".into(), draining: true, shutdown: false, since_ms: r.at() })?;
            Err(WardenError::Conflict("checked too late".into()))
        });
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "after it wrote")]
    fn a_rejection_after_an_event_is_caught() {
        apply_with(|t, r, _| {
            let data = EventData::NodeDraining { node: "b".into(), draining: true, shutdown: false, principal: None };
            r.emit(t, EventScope::correlated(CorrelationId("node:b".into())), None, None, data)?;
            Err(WardenError::Conflict("checked too late".into()))
        });
    }

    #[test]
    fn a_rejection_before_any_write_passes_and_a_storage_error_is_exempt() {
        apply_with(|_, _, _| Err(WardenError::Conflict("checked first".into())));
        apply_with(|t, r, _| {
            t.put_node(&NodeRecord { name: "b".into(), draining: true, shutdown: false, since_ms: r.at() })?;
            Err(WardenError::Storage("disk full halfway".into()))
        });
    }

    #[test]
    fn real_rejections_pass_the_write_check() {
        let turn = TurnId("turn_1".into());
        let results = run(vec![
            open_turn(&turn),
            submit("act_1", &turn, allow()),
            // Each rejected: duplicate id, stale attempt, not awaiting confirmation, unknown turn.
            submit("act_1", &turn, allow()),
            Command::FinishAttempt {
                action_id: ActionId("act_1".into()),
                attempt: 1,
                outcome: AttemptOutcome::OK,
                latency_ms: 1,
            },
            Command::Confirm { action_id: ActionId("act_1".into()), approve: true, by: "ops".into() },
            Command::RecordRecall {
                turn_id: TurnId("nope".into()),
                ns: "n".into(),
                query: Default::default(),
                hits: vec![],
            },
        ]);
        assert!(results[..2].iter().all(Result::is_ok));
        assert!(results[2..].iter().all(Result::is_err), "{results:?}");
    }
}

//! The commands of the state machine, one file per domain (in the style of
//! mini-redis's `cmd/`). Each command is a check phase, which reads and may
//! reject, then a write phase, which cannot fail except on storage. The checks
//! are functions of `&Tables`, so they cannot write; `StateMachine::apply`
//! asserts that a rejected command wrote nothing.

pub(super) mod actions;
pub(crate) mod alert;
pub(super) mod dlq;
pub(super) mod events;
pub(super) mod memory;
pub(super) mod nodes;
pub(super) mod policy;
pub(super) mod retention;
pub(super) mod sessions;
pub(super) mod slo;

use super::archive::ArchiveBatch;
use super::tables::Tables;
use crate::command::{Entry, Response};
use crate::domain::*;
use crate::error::{Result, WardenError};
use crate::ids::*;

/// What a command produced: its response, and the action it made terminal.
pub(super) type Outcome = (Response, Option<Action>);

/// A session's `last_activity_ms` is rewritten at most this often.
const SESSION_ACTIVITY_RESOLUTION_MS: u64 = 1_000;

/// Records the events of one command while it is applied.
pub(super) struct Recorder<'e> {
    /// The state machine's event counters: the next seq, and the latest event time.
    next_seq: &'e mut u64,
    last_ts: &'e mut u64,
    entry: &'e Entry,
    events: Vec<Event>,
    /// What the command removed, for the node's archive.
    archived: Option<ArchiveBatch>,
}

impl<'e> Recorder<'e> {
    pub(super) fn new(next_seq: &'e mut u64, last_ts: &'e mut u64, entry: &'e Entry) -> Self {
        Self { next_seq, last_ts, entry, events: Vec::new(), archived: None }
    }

    /// When the command was proposed.
    pub(super) fn at(&self) -> u64 {
        self.entry.at_ms
    }

    /// The node that proposed the command.
    pub(super) fn node(&self) -> &str {
        &self.entry.node
    }

    /// The events recorded so far in this entry.
    pub(super) fn events(&self) -> &[Event] {
        &self.events
    }

    /// The events recorded, and what the command removed.
    pub(super) fn finish(self) -> (Vec<Event>, Option<ArchiveBatch>) {
        (self.events, self.archived)
    }

    /// Hands what the command removed to the node's archive (written
    /// before the batch that removes it commits).
    pub(super) fn archive(&mut self, batch: ArchiveBatch) {
        self.archived = Some(batch);
    }

    /// Records an event; returns its seq. (The timeline indexes it later,
    /// off this thread: `store::event_index`.)
    pub(super) fn emit(
        &mut self,
        t: &mut Tables<'_>,
        scope: EventScope,
        action_id: Option<&ActionId>,
        causation_seq: Option<u64>,
        data: EventData,
    ) -> Result<u64> {
        let seq = *self.next_seq;
        *self.next_seq += 1;
        *self.last_ts = (*self.last_ts).max(self.entry.at_ms);
        let node = self.entry.node.clone();
        let event = Event::new(seq, *self.last_ts, node, scope, action_id.cloned(), causation_seq, data);
        t.put_event(&event)?;
        self.events.push(event);
        Ok(seq)
    }

    /// Records an event about `action` caused by its latest one, and makes it the latest.
    pub(super) fn emit_for(&mut self, t: &mut Tables<'_>, action: &mut Action, data: EventData) -> Result<u64> {
        let scope = EventScope::of_action(action);
        let cause = Some(action.last_event_seq);
        let seq = self.emit(t, scope, Some(&action.id), cause, data)?;
        action.last_event_seq = seq;
        Ok(seq)
    }
}

pub(super) fn turn_of(t: &Tables<'_>, id: &TurnId) -> Result<Turn> {
    t.turn(id)?.ok_or_else(|| WardenError::UnknownTurn(id.to_string()))
}

pub(super) fn action_of(t: &Tables<'_>, id: &ActionId) -> Result<Action> {
    t.action(id)?.ok_or_else(|| WardenError::UnknownAction(id.to_string()))
}

/// Notes activity in a session, at most once per `SESSION_ACTIVITY_RESOLUTION_MS`.
pub(super) fn touch_session(t: &mut Tables<'_>, id: &SessionId, at: u64) -> Result<()> {
    if let Some(mut session) = t.session(id)? {
        if at >= session.last_activity_ms + SESSION_ACTIVITY_RESOLUTION_MS {
            session.last_activity_ms = at;
            t.put_session(&session)?;
        }
    }
    Ok(())
}

/// Writes `action` as of time `at`; returns it when it has just become terminal.
pub(super) fn save_action(t: &mut Tables<'_>, action: &Action, at: u64) -> Result<Option<Action>> {
    let mut action = action.clone();
    action.updated_ms = at;
    t.put_action(&action)?;
    Ok(action.state.is_terminal().then_some(action))
}

pub(super) fn state_name(state: ActionState) -> String {
    serde_json::to_value(state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Helpers for the handlers' unit tests: commands applied to a fresh database.
#[cfg(test)]
pub(super) mod testing {
    use super::super::machine::{Applied, StateMachine};
    use super::super::tables::{open_database, Tables};
    use crate::command::{Command, Entry};
    use crate::domain::{Decision, Tier, Verdict};
    use crate::error::Result;
    use crate::ids::*;

    pub fn entry(cmd: Command) -> Entry {
        Entry { at_ms: 1_000, node: "n".into(), cmd }
    }

    /// Applies `cmds` in one transaction on a fresh database; returns each result.
    pub fn run(cmds: Vec<Command>) -> Vec<Result<Applied>> {
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

    pub fn allow() -> Decision {
        Decision { decision: Verdict::Allow, tier: Tier::Observe, reasons: vec![], policy_hash: "t".into() }
    }

    pub fn open_turn(turn: &TurnId) -> Command {
        Command::OpenTurn {
            turn_id: turn.clone(),
            session_id: SessionId("s".into()),
            correlation_id: CorrelationId("c".into()),
            trust: None,
            summary: None,
        }
    }

    /// Action `id` of capability "x" under `turn`, decided `decision`.
    pub fn submit(id: &str, turn: &TurnId, decision: Decision) -> Command {
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
            submitted_by: None,
        }
    }
}

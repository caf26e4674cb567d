//! Sessions and turns: `OpenTurn`, and the events a turn records
//! (`RecordModelCall`, `RecordRecall`).

use super::{touch_session, turn_of, Outcome, Recorder};
use crate::command::Response;
use crate::domain::*;
use crate::error::Result;
use crate::ids::*;
use crate::store::tables::Tables;

/// `OpenTurn`: opens the turn, and its session on first use. Idempotent: an
/// existing turn is answered as it is, and nothing is written.
pub(in crate::store) fn open_turn(
    t: &mut Tables<'_>,
    r: &mut Recorder<'_>,
    turn_id: &TurnId,
    session_id: &SessionId,
    correlation_id: &CorrelationId,
    trust: Option<Trust>,
    summary: &Option<String>,
) -> Result<Outcome> {
    if let Some(existing) = t.turn(turn_id)? {
        return Ok((Response::Turn(existing), None));
    }
    let at = r.at();
    let mut session = t.session(session_id)?.unwrap_or(Session {
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
    let opened_seq = r.emit(t, scope, None, None, data)?;
    let turn = Turn {
        id: turn_id.clone(),
        session_id: session_id.clone(),
        correlation_id: correlation_id.clone(),
        summary: summary.clone(),
        opened_ms: at,
        opened_seq,
    };
    t.put_session(&session)?;
    t.put_turn(&turn)?;
    Ok((Response::Turn(turn), None))
}

/// `RecordModelCall` and `RecordRecall`: an event of an existing turn,
/// caused by its opening.
pub(in crate::store) fn record_for_turn(
    t: &mut Tables<'_>,
    r: &mut Recorder<'_>,
    turn_id: &TurnId,
    data: EventData,
) -> Result<Outcome> {
    let turn = turn_of(t, turn_id)?;
    touch_session(t, &turn.session_id, r.at())?;
    let seq = r.emit(t, EventScope::of_turn(&turn), None, Some(turn.opened_seq), data)?;
    Ok((Response::Recorded { seq }, None))
}

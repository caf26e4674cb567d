//! Memory: `PutMemory`.

use super::{touch_session, turn_of, Outcome, Recorder};
use crate::command::Response;
use crate::domain::*;
use crate::error::Result;
use crate::ids::*;
use crate::store::tables::Tables;
use serde_json::Value;

/// `PutMemory`: writes the next version of `ns`/`key`. Under a turn (which
/// must exist) the event is part of the turn's graph; without one it stands
/// alone under `correlation_id`.
#[allow(clippy::too_many_arguments)]
pub(in crate::store) fn put_memory(
    t: &mut Tables<'_>,
    r: &mut Recorder<'_>,
    ns: &str,
    key: &str,
    value: &Value,
    tags: &[String],
    turn_id: Option<&TurnId>,
    correlation_id: &CorrelationId,
) -> Result<Outcome> {
    let turn = turn_id.map(|id| turn_of(t, id)).transpose()?;
    let version = t.memory_item(ns, key)?.map_or(0, |m| m.version) + 1;

    let at = r.at();
    let item = MemoryItem {
        ns: ns.to_owned(),
        key: key.to_owned(),
        value: value.clone(),
        tags: tags.to_vec(),
        version,
        updated_ms: at,
        turn_id: turn_id.cloned(),
    };
    t.put_memory_item(&item)?;
    let (scope, cause) = match &turn {
        Some(turn) => {
            touch_session(t, &turn.session_id, at)?;
            (EventScope::of_turn(turn), Some(turn.opened_seq))
        }
        None => (EventScope::correlated(correlation_id.clone()), None),
    };
    let data = EventData::MemoryWrite { ns: ns.to_owned(), key: key.to_owned(), version, tags: tags.to_vec() };
    r.emit(t, scope, None, cause, data)?;
    Ok((Response::Memory(item), None))
}

//! Node-level events: `RecordEvent` (restarts, breaker changes, membership,
//! leadership), which belong to no turn and change no table but the timeline.

use super::{Outcome, Recorder};
use crate::command::Response;
use crate::domain::{EventData, EventScope};
use crate::error::Result;
use crate::ids::CorrelationId;
use crate::store::tables::Tables;

/// `RecordEvent`: always accepted.
pub(in crate::store) fn record(
    t: &mut Tables<'_>,
    r: &mut Recorder<'_>,
    correlation_id: &CorrelationId,
    data: &EventData,
) -> Result<Outcome> {
    let seq = r.emit(t, EventScope::correlated(correlation_id.clone()), None, None, data.clone())?;
    Ok((Response::Recorded { seq }, None))
}

//! SLO advisories: `SloEpisode`. Every node's SloMonitor judges what it
//! sees; the log records each advisory once per episode cluster-wide. The
//! state of an advisory is one meta row, `slo:<capability>:<advisory>` →
//! `episode << 1 | open`, so the check is a read and a replayed or
//! concurrent key is a no-op.

use super::{Outcome, Recorder};
use crate::command::Response;
use crate::domain::{EventData, EventScope};
use crate::error::{Result, WardenError};
use crate::ids::CorrelationId;
use crate::store::tables::Tables;

/// Prefix of the meta rows that hold advisory episodes.
pub const EPISODE_PREFIX: &str = "slo:";

/// The meta key of `advisory` of `capability`.
pub fn episode_row(capability: &str, advisory: &str) -> String {
    format!("{EPISODE_PREFIX}{capability}:{advisory}")
}

/// The episode key: the correlation id of the episode's events.
pub fn episode_key(capability: &str, advisory: &str, episode: u64) -> CorrelationId {
    CorrelationId(format!("{EPISODE_PREFIX}{capability}:{advisory}:{episode}"))
}

/// `(latest episode, open)` from a meta value.
pub fn decode_episode(value: u64) -> (u64, bool) {
    (value >> 1, value & 1 == 1)
}

/// `SloEpisode`: opens episode `episode` if it is the next one and none is
/// open; ends it if it is the open one; otherwise nothing.
pub(in crate::store) fn episode(
    t: &mut Tables<'_>,
    r: &mut Recorder<'_>,
    capability: &str,
    advisory: &str,
    episode: u64,
    open: bool,
    data: &EventData,
) -> Result<Outcome> {
    if capability.is_empty() || advisory.is_empty() || episode == 0 {
        return Err(WardenError::BadInput("an SLO episode needs a capability, an advisory and an episode ≥ 1".into()));
    }
    let row = episode_row(capability, advisory);
    let (latest, is_open) = t.meta(&row)?.map_or((0, false), decode_episode);
    let takes = if open { !is_open && episode == latest + 1 } else { is_open && episode == latest };
    if !takes {
        return Ok((Response::Unchanged, None));
    }
    t.put_meta(&row, episode << 1 | u64::from(open))?;
    let scope = EventScope::correlated(episode_key(capability, advisory, episode));
    let seq = r.emit(t, scope, None, None, data.clone())?;
    Ok((Response::Recorded { seq }, None))
}

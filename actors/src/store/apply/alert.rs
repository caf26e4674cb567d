//! Alerts: raised and resolved by the events of the entry that caused them
//! (`follow`, run after every command), delivered per channel by
//! `AlertDelivered`. The state of an alert is one meta row,
//! `alert:<fingerprint>` → `episode << 1 | firing`; a delivery is one row
//! `alertd:<fingerprint>:<episode>:<state>:<channel>` → attempts. The events
//! of one episode share the correlation id `alert:<fingerprint>:<episode>`,
//! so one index lookup reads an alert back.

use super::{Outcome, Recorder};
use crate::command::Response;
use crate::domain::alert::{changes_of, delivery_id, AlertChange, AlertSpec};
use crate::domain::{AlertState, EventData, EventScope};
use crate::error::{Result, WardenError};
use crate::ids::CorrelationId;
use crate::store::tables::Tables;

/// Prefix of the meta rows that hold each alert's latest episode.
pub const ALERT_PREFIX: &str = "alert:";
/// Prefix of the meta rows that record deliveries.
pub const DELIVERY_PREFIX: &str = "alertd:";

pub fn alert_row(fingerprint: &str) -> String {
    format!("{ALERT_PREFIX}{fingerprint}")
}

/// The correlation id of an episode's `alert.*` events.
pub fn alert_key(fingerprint: &str, episode: u64) -> CorrelationId {
    CorrelationId(format!("{ALERT_PREFIX}{fingerprint}:{episode}"))
}

fn delivery_row(fingerprint: &str, episode: u64, state: AlertState, channel: &str) -> String {
    format!("{DELIVERY_PREFIX}{fingerprint}:{episode}:{}:{channel}", state.as_str())
}

/// `(latest episode, firing)` from a meta value.
pub fn decode_alert(value: u64) -> (u64, bool) {
    (value >> 1, value & 1 == 1)
}

/// Raises or resolves the alerts the events recorded so far in this entry
/// call for. A raise of a firing alert and a resolve of a resolved one are
/// nothing: the alert changes once per episode whoever reports it.
pub(in crate::store) fn follow(t: &mut Tables<'_>, r: &mut Recorder<'_>) -> Result<()> {
    let changes: Vec<_> = r
        .events()
        .iter()
        .flat_map(|e| changes_of(e).into_iter().map(|c| (e.seq, e.correlation_id.clone(), c)))
        .collect();
    for (seq, cause, change) in changes {
        match change {
            AlertChange::Raise(spec) => raise(t, r, &spec, seq, cause)?,
            AlertChange::Resolve { fingerprint, name } => resolve(t, r, &fingerprint, name, seq, cause)?,
        }
    }
    Ok(())
}

fn raise(t: &mut Tables<'_>, r: &mut Recorder<'_>, spec: &AlertSpec, seq: u64, cause: CorrelationId) -> Result<()> {
    let fingerprint = spec.fingerprint();
    let row = alert_row(&fingerprint);
    let (latest, firing) = t.meta(&row)?.map_or((0, false), decode_alert);
    if firing {
        return Ok(());
    }
    let episode = latest + 1;
    t.put_meta(&row, episode << 1 | 1)?;
    let data = EventData::AlertRaised {
        fingerprint: fingerprint.clone(),
        name: spec.name.to_owned(),
        severity: spec.severity.as_str().to_owned(),
        episode,
        labels: spec.labels(),
        annotations: spec.annotations(),
        cause,
    };
    r.emit(t, EventScope::correlated(alert_key(&fingerprint, episode)), None, Some(seq), data)?;
    Ok(())
}

fn resolve(
    t: &mut Tables<'_>,
    r: &mut Recorder<'_>,
    fingerprint: &str,
    name: &str,
    seq: u64,
    cause: CorrelationId,
) -> Result<()> {
    let row = alert_row(fingerprint);
    let Some((episode, true)) = t.meta(&row)?.map(decode_alert) else { return Ok(()) };
    t.put_meta(&row, episode << 1)?;
    let data = EventData::AlertResolved { fingerprint: fingerprint.to_owned(), name: name.to_owned(), episode, cause };
    r.emit(t, EventScope::correlated(alert_key(fingerprint, episode)), None, Some(seq), data)?;
    Ok(())
}

/// `AlertDelivered`: state `state` of episode `episode` reached `channel`.
/// Recorded once; a second report (a retry that also got through, a new
/// leader's repeat) is `Unchanged`. Rejected for a state the alert never had.
pub(in crate::store) fn delivered(
    t: &mut Tables<'_>,
    r: &mut Recorder<'_>,
    fingerprint: &str,
    episode: u64,
    state: AlertState,
    channel: &str,
    attempts: u32,
) -> Result<Outcome> {
    let (latest, firing) = t.meta(&alert_row(fingerprint))?.map_or((0, false), decode_alert);
    let had = episode >= 1
        && (episode < latest || (episode == latest && (state == AlertState::Firing || !firing)))
        && !channel.is_empty();
    if !had {
        return Err(WardenError::BadInput(format!(
            "alert {fingerprint} has no {} episode {episode} to deliver to {channel:?}",
            state.as_str()
        )));
    }
    let row = delivery_row(fingerprint, episode, state, channel);
    if t.meta(&row)?.is_some() {
        return Ok((Response::Unchanged, None));
    }
    t.put_meta(&row, u64::from(attempts))?;
    let data = EventData::AlertDelivered {
        fingerprint: fingerprint.to_owned(),
        episode,
        state,
        channel: channel.to_owned(),
        attempts,
        delivery_id: delivery_id(fingerprint, episode, state),
    };
    let seq = r.emit(t, EventScope::correlated(alert_key(fingerprint, episode)), None, None, data)?;
    Ok((Response::Recorded { seq }, None))
}

#[cfg(test)]
mod tests {
    use super::super::testing::run;
    use crate::command::{Command, Response};
    use crate::domain::{AlertState, BreakerState, EventData};
    use crate::ids::CorrelationId;

    fn breaker(state: BreakerState) -> Command {
        Command::RecordEvent {
            correlation_id: CorrelationId("breaker:x".into()),
            data: EventData::BreakerChanged { capability: "x".into(), state },
        }
    }

    fn kinds(applied: &crate::store::machine::Applied) -> Vec<&'static str> {
        applied.events.iter().map(|e| e.kind().as_str()).collect()
    }

    #[test]
    fn an_alert_fires_once_per_episode_and_resolves_once() {
        let out = run(vec![
            breaker(BreakerState::Open),
            breaker(BreakerState::Open),
            breaker(BreakerState::HalfOpen),
            breaker(BreakerState::Closed),
            breaker(BreakerState::Closed),
            breaker(BreakerState::Open),
        ]);
        let out: Vec<_> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(kinds(&out[0]), ["breaker.changed", "alert.raised"]);
        assert_eq!(kinds(&out[1]), ["breaker.changed"], "a firing alert is not raised again");
        assert_eq!(kinds(&out[2]), ["breaker.changed"]);
        assert_eq!(kinds(&out[3]), ["breaker.changed", "alert.resolved"]);
        assert_eq!(kinds(&out[4]), ["breaker.changed"]);
        assert_eq!(kinds(&out[5]), ["breaker.changed", "alert.raised"]);
        let raised = &out[0].events[1];
        assert_eq!(raised.causation_seq, Some(out[0].events[0].seq), "caused by the breaker's event");
        let EventData::AlertRaised { episode, ref cause, ref labels, .. } = raised.data else { panic!() };
        assert_eq!((episode, cause.as_str()), (1, "breaker:x"));
        assert_eq!(labels["alertname"], "WardenBreakerOpen");
        let EventData::AlertRaised { episode, .. } = out[5].events[1].data else { panic!() };
        assert_eq!(episode, 2);
        assert_eq!(out[5].events[1].correlation_id, super::alert_key(&raised_fp(&out[0]), 2));
    }

    fn raised_fp(applied: &crate::store::machine::Applied) -> String {
        match &applied.events[1].data {
            EventData::AlertRaised { fingerprint, .. } => fingerprint.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_delivery_is_recorded_once_and_only_for_a_state_the_alert_had() {
        let fp = {
            let out = run(vec![breaker(BreakerState::Open)]);
            raised_fp(out[0].as_ref().unwrap())
        };
        let delivered = |episode, state, channel: &str| Command::AlertDelivered {
            fingerprint: fp.clone(),
            episode,
            state,
            channel: channel.into(),
            attempts: 2,
        };
        let out = run(vec![
            breaker(BreakerState::Open),
            delivered(1, AlertState::Resolved, "hook"),
            delivered(1, AlertState::Firing, "hook"),
            delivered(1, AlertState::Firing, "hook"),
            delivered(1, AlertState::Firing, "am"),
            delivered(2, AlertState::Firing, "hook"),
            breaker(BreakerState::Closed),
            delivered(1, AlertState::Resolved, "hook"),
        ]);
        assert!(out[1].is_err(), "episode 1 is still firing");
        let response = |i: usize| out[i].as_ref().unwrap().response.clone();
        assert!(matches!(response(2), Response::Recorded { .. }));
        assert_eq!(response(3), Response::Unchanged, "a repeat is recorded once");
        assert!(matches!(response(4), Response::Recorded { .. }), "each channel has its own record");
        assert!(out[5].is_err(), "episode 2 was never raised");
        assert!(matches!(response(7), Response::Recorded { .. }));
        let EventData::AlertDelivered { ref delivery_id, attempts, .. } = out[2].as_ref().unwrap().events[0].data
        else {
            panic!()
        };
        assert_eq!((delivery_id.as_str(), attempts), (format!("{fp}-1-firing").as_str(), 2));
    }
}

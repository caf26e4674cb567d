//! Alerts: what a person is told. An alert is identified by its label set
//! (like Alertmanager's): `alertname`, `severity` and the subject it is
//! about (`capability`, or `node`). Its fingerprint is a hash of those
//! labels, so the same condition raised twice is the same alert.
//!
//! Alerts are raised and resolved from timeline events by the rules below
//! (`changes_of`), applied inside the state machine in the same log entry as
//! the event that caused them: an alert can be no later than its cause and
//! is never lost between them. Adding a source is one arm in `change_of`.

use super::{AlertState, BreakerState, Event, EventData, SloSeverity};
use serde::Serialize;
use std::collections::BTreeMap;

/// An alert as a rule raises it: its labels and what to tell people.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertSpec {
    pub name: &'static str,
    pub severity: SloSeverity,
    /// `capability` or `node`, and its value.
    pub subject: (&'static str, String),
    pub summary: String,
    pub description: String,
    /// The figures that caused it (`p95_ms`, `burn_rate`, …), as text.
    pub figures: BTreeMap<String, String>,
}

impl AlertSpec {
    /// The label set: `alertname`, `severity`, the subject, `service="warden"`.
    pub fn labels(&self) -> BTreeMap<String, String> {
        alert_labels(self.name, self.severity, &self.subject)
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.labels())
    }

    /// Summary, description and the figures (each figure under its own name).
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let mut a = self.figures.clone();
        a.insert("summary".into(), self.summary.clone());
        a.insert("description".into(), self.description.clone());
        a
    }
}

fn alert_labels(name: &str, severity: SloSeverity, subject: &(&str, String)) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("alertname".to_owned(), name.to_owned()),
        ("severity".to_owned(), severity.as_str().to_owned()),
        (subject.0.to_owned(), subject.1.clone()),
        ("service".to_owned(), "warden".to_owned()),
    ])
}

/// 16 hex digits of SHA-256 over the sorted `name=value` lines of `labels`.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
        h.update(b"\n");
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// What an event does to an alert.
#[derive(Clone, Debug, PartialEq)]
pub enum AlertChange {
    Raise(AlertSpec),
    /// Resolves the alert with this label set, if it is firing.
    Resolve {
        fingerprint: String,
        name: &'static str,
    },
}

// Alert names, as receivers route on them.
pub const BREAKER_OPEN: &str = "WardenBreakerOpen";
pub const NODE_DOWN: &str = "WardenNodeDown";
pub const SLO_TREND: &str = "WardenSloTrend";
pub const SLO_BURN: &str = "WardenSloBurn";
pub const SLO_LATENCY_BREACHED: &str = "WardenSloLatencyBreached";
pub const SLO_BUDGET_EXHAUSTED: &str = "WardenSloBudgetExhausted";
pub const RESTART_LOOP: &str = "WardenRestartLoop";
pub const DLQ_GROWING: &str = "WardenDlqGrowing";
pub const POLICY_REJECTED: &str = "WardenPolicyRejected";
/// Recent restarts of one actor (within the supervisor's window) that make a restart loop.
pub const RESTART_LOOP_AT: u32 = 3;
/// Dead-letter entries of one capability never replayed that raise `DLQ_GROWING`…
pub const DLQ_GROWING_AT: u64 = 20;
/// …and how few resolve it again (half, so a queue near the line does not flap).
pub const DLQ_SHRUNK_AT: u64 = DLQ_GROWING_AT / 2;
/// Raised by a node itself, outside the log (which has no leader to write it).
pub const NO_LEADER: &str = "WardenNoLeader";

/// The alert a node raises when it has seen no leader since `since_ms`
/// (`now_ms` is when it says so): not in the log, which cannot be written
/// without a leader; its episode is `since_ms`, unique per node and outage.
pub fn no_leader(node: &str, since_ms: u64, now_ms: u64, resolved: bool) -> AlertRecord {
    let spec = AlertSpec {
        name: NO_LEADER,
        severity: SloSeverity::Page,
        subject: ("node", node.to_owned()),
        summary: format!("{node} sees no Raft leader"),
        description: format!(
            "{node} has had no leader for {} s: writes are refused and nothing new is recorded or delivered \
             through the log until a quorum elects one.",
            now_ms.saturating_sub(since_ms) / 1_000
        ),
        figures: BTreeMap::from([("leaderless_ms".to_owned(), now_ms.saturating_sub(since_ms).to_string())]),
    };
    AlertRecord {
        fingerprint: spec.fingerprint(),
        name: NO_LEADER.to_owned(),
        state: if resolved { AlertState::Resolved } else { AlertState::Firing },
        severity: spec.severity.as_str().to_owned(),
        episode: since_ms,
        labels: spec.labels(),
        annotations: spec.annotations(),
        starts_at: since_ms,
        ends_at: resolved.then_some(now_ms),
        cause: "raft:leader".to_owned(),
        raised_seq: 0,
        resolved_seq: None,
        delivered: Vec::new(),
    }
}

fn resolve(name: &'static str, severity: SloSeverity, subject: (&'static str, String)) -> Option<AlertChange> {
    Some(AlertChange::Resolve { fingerprint: fingerprint(&alert_labels(name, severity, &subject)), name })
}

fn figures<const N: usize>(pairs: [(&str, String); N]) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The alert changes `event` makes, in order. Pure: the state machine calls
/// it on every event it records.
pub fn changes_of(event: &Event) -> Vec<AlertChange> {
    match &event.data {
        // A fresh node has no loop and is not down.
        EventData::NodeStarted { node, .. } => [NODE_DOWN, RESTART_LOOP]
            .into_iter()
            .filter_map(|name| resolve(name, SloSeverity::Page, ("node", node.clone())))
            .collect(),
        _ => change_of(event).into_iter().collect(),
    }
}

/// The one alert change `event` makes, if any.
fn change_of(event: &Event) -> Option<AlertChange> {
    use SloSeverity::{Page, Ticket};
    match &event.data {
        EventData::BreakerChanged { capability, state } => {
            // Breakers are per node; the alert is per capability (the node is an annotation).
            let subject = ("capability", capability.clone());
            let node = event.node.clone();
            match state {
                BreakerState::Open => Some(AlertChange::Raise(AlertSpec {
                    name: BREAKER_OPEN,
                    severity: Page,
                    subject,
                    summary: format!("{capability}: circuit breaker open on {node}"),
                    description: format!(
                        "The tool behind {capability} failed often enough on {node} that its breaker opened: \
                         actions of {capability} fail fast there until a probe succeeds."
                    ),
                    figures: figures([("node", node)]),
                })),
                BreakerState::Closed => resolve(BREAKER_OPEN, Page, subject),
                BreakerState::HalfOpen => None,
            }
        }
        EventData::NodeDown { node, silence_ms, .. } => Some(AlertChange::Raise(AlertSpec {
            name: NODE_DOWN,
            severity: Page,
            subject: ("node", node.clone()),
            summary: format!("node {node} is down"),
            description: format!(
                "{node} was silent for {silence_ms} ms or lost its transport session; its attempts are taken over."
            ),
            figures: figures([("silence_ms", silence_ms.to_string())]),
        })),
        EventData::NodeJoined { node, .. } => resolve(NODE_DOWN, Page, ("node", node.clone())),
        EventData::ActorRestarted { actor, recent_restarts } if *recent_restarts >= RESTART_LOOP_AT => {
            let node = event.node.clone();
            Some(AlertChange::Raise(AlertSpec {
                name: RESTART_LOOP,
                severity: Page,
                subject: ("node", node.clone()),
                summary: format!("{node}: {actor} restarts in a loop"),
                description: format!(
                    "{actor} on {node} crashed and was restarted {recent_restarts} times within the supervisor's \
                     window; a few more and the node stops its actors. GET /v1/health on {node} names its last error."
                ),
                figures: figures([("actor", actor.clone()), ("recent_restarts", recent_restarts.to_string())]),
            }))
        }
        EventData::ActorsSettled { .. } => resolve(RESTART_LOOP, Page, ("node", event.node.clone())),
        EventData::DlqEntered { capability, waiting, dlq_id, .. } if *waiting >= DLQ_GROWING_AT => {
            Some(AlertChange::Raise(AlertSpec {
                name: DLQ_GROWING,
                severity: Ticket,
                subject: ("capability", capability.clone()),
                summary: format!("{capability}: {waiting} dead-letter entries wait for a decision"),
                description: format!(
                    "Actions of {capability} ran out of attempts {waiting} times without being replayed \
                     (the latest {dlq_id}). GET /v1/dlq lists them; replay them once the tool is fixed."
                ),
                figures: figures([("waiting", waiting.to_string()), ("latest", dlq_id.to_string())]),
            }))
        }
        EventData::DlqReplayed { capability, waiting, .. } if *waiting <= DLQ_SHRUNK_AT => {
            resolve(DLQ_GROWING, Ticket, ("capability", capability.clone()))
        }
        EventData::PolicyRejected { hash, revision, by, failures, .. } => Some(AlertChange::Raise(AlertSpec {
            name: POLICY_REJECTED,
            severity: Ticket,
            subject: ("policy", "push".to_owned()),
            summary: format!("policy bundle {revision} pushed by {by} was refused"),
            description: format!(
                "The gate refused bundle {hash} ({} failures, the first: {}). The active policy is unchanged; \
                 GET /v1/policies/audit has every failure.",
                failures.len(),
                failures.first().map_or("none given", String::as_str)
            ),
            figures: figures([("hash", hash.clone()), ("revision", revision.clone()), ("by", by.clone())]),
        })),
        EventData::PolicyActivated { .. } => resolve(POLICY_REJECTED, Ticket, ("policy", "push".to_owned())),
        EventData::SloTrend {
            capability,
            p95_ms,
            slo_p95_ms,
            slope_ms_per_min,
            projected_p95_ms,
            breach_in_ms,
            ..
        } => Some(AlertChange::Raise(AlertSpec {
            name: SLO_TREND,
            severity: Ticket,
            subject: ("capability", capability.clone()),
            summary: format!("{capability}: p95 heads for its {slo_p95_ms} ms SLO"),
            description: format!(
                "The p95 of {capability} is {p95_ms:.0} ms and rising {slope_ms_per_min:.1} ms/min; \
                     projected {projected_p95_ms:.0} ms within the horizon."
            ),
            figures: figures([
                ("p95_ms", format!("{p95_ms:.1}")),
                ("slo_p95_ms", slo_p95_ms.to_string()),
                ("slope_ms_per_min", format!("{slope_ms_per_min:.2}")),
                ("projected_p95_ms", format!("{projected_p95_ms:.1}")),
                ("breach_in_ms", breach_in_ms.map_or_else(|| "unknown".into(), |b| b.to_string())),
            ]),
        })),
        EventData::SloBurn {
            capability, severity, factor, long_window, short_window, long_rate, short_rate, ..
        } => Some(AlertChange::Raise(AlertSpec {
            name: SLO_BURN,
            severity: *severity,
            subject: ("capability", capability.clone()),
            summary: format!("{capability}: error budget burning at {long_rate:.1}× over {long_window}"),
            description: format!(
                "{capability} spends its error budget at ≥ {factor}× the sustainable rate over both \
                     {long_window} ({long_rate:.2}×) and {short_window} ({short_rate:.2}×)."
            ),
            figures: figures([
                ("burn_factor", factor.to_string()),
                ("long_window", long_window.clone()),
                ("long_rate", format!("{long_rate:.3}")),
                ("short_window", short_window.clone()),
                ("short_rate", format!("{short_rate:.3}")),
            ]),
        })),
        EventData::SloBreached { capability, objective, window, value, target, .. } => {
            let name = if objective == "latency" { SLO_LATENCY_BREACHED } else { SLO_BUDGET_EXHAUSTED };
            Some(AlertChange::Raise(AlertSpec {
                name,
                severity: Page,
                subject: ("capability", capability.clone()),
                summary: format!("{capability}: {objective} SLO missed ({value:.3} over {target:.3})"),
                description: format!("{capability} misses its {objective} objective over {window}."),
                figures: figures([
                    ("objective", objective.clone()),
                    ("window", window.clone()),
                    ("value", format!("{value:.3}")),
                    ("target", format!("{target:.3}")),
                ]),
            }))
        }
        EventData::SloRecovered { capability, advisory, .. } => {
            let subject = ("capability", capability.clone());
            match advisory.as_str() {
                "trend" => resolve(SLO_TREND, Ticket, subject),
                "burn.page" => resolve(SLO_BURN, Page, subject),
                "burn.ticket" => resolve(SLO_BURN, Ticket, subject),
                "breached.latency" => resolve(SLO_LATENCY_BREACHED, Page, subject),
                "breached.errors" => resolve(SLO_BUDGET_EXHAUSTED, Page, subject),
                _ => None,
            }
        }
        _ => None,
    }
}

/// One alert as the log holds it: its latest episode.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertRecord {
    pub fingerprint: String,
    pub name: String,
    pub state: AlertState,
    pub severity: String,
    pub episode: u64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<u64>,
    /// The correlation id of the event that raised it.
    pub cause: String,
    /// The seq of `alert.raised`, and of `alert.resolved` once resolved.
    pub raised_seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_seq: Option<u64>,
    /// Recorded deliveries: `(state, channel, attempts)`.
    pub delivered: Vec<(AlertState, String, u32)>,
}

impl AlertRecord {
    pub fn delivered_to(&self, state: AlertState, channel: &str) -> bool {
        self.delivered.iter().any(|(s, c, _)| *s == state && c == channel)
    }

    /// The delivery id of `state` of this episode: the same on every retry
    /// and every leader, so a receiver counts one per state change.
    pub fn delivery_id(&self, state: AlertState) -> String {
        delivery_id(&self.fingerprint, self.episode, state)
    }
}

impl AlertRecord {
    /// The alert one episode's events (in log order) describe; `None`
    /// without its `alert.raised`.
    pub fn from_events(events: &[Event]) -> Option<AlertRecord> {
        let mut alert: Option<AlertRecord> = None;
        for e in events {
            match (&e.data, alert.as_mut()) {
                (EventData::AlertRaised { fingerprint, name, severity, episode, labels, annotations, cause }, _) => {
                    alert = Some(AlertRecord {
                        fingerprint: fingerprint.clone(),
                        name: name.clone(),
                        state: AlertState::Firing,
                        severity: severity.clone(),
                        episode: *episode,
                        labels: labels.clone(),
                        annotations: annotations.clone(),
                        starts_at: e.ts,
                        ends_at: None,
                        cause: cause.as_str().to_owned(),
                        raised_seq: e.seq,
                        resolved_seq: None,
                        delivered: Vec::new(),
                    })
                }
                (EventData::AlertResolved { .. }, Some(a)) => {
                    a.state = AlertState::Resolved;
                    a.ends_at = Some(e.ts);
                    a.resolved_seq = Some(e.seq);
                }
                (EventData::AlertDelivered { state, channel, attempts, .. }, Some(a)) => {
                    a.delivered.push((*state, channel.clone(), *attempts))
                }
                _ => {}
            }
        }
        alert
    }
}

pub fn delivery_id(fingerprint: &str, episode: u64, state: AlertState) -> String {
    format!("{fingerprint}-{episode}-{}", state.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EventScope;
    use crate::ids::CorrelationId;

    fn event(node: &str, data: EventData) -> Event {
        Event::new(1, 0, node.into(), EventScope::correlated(CorrelationId("c".into())), None, None, data)
    }

    #[test]
    fn a_breaker_that_opens_raises_and_the_same_breaker_closing_resolves_it() {
        let open = event("a", EventData::BreakerChanged { capability: "x".into(), state: BreakerState::Open });
        let Some(AlertChange::Raise(spec)) = change_of(&open) else { panic!("no raise") };
        assert_eq!(spec.labels()["alertname"], BREAKER_OPEN);
        assert_eq!(spec.labels()["capability"], "x");
        let closed = event("b", EventData::BreakerChanged { capability: "x".into(), state: BreakerState::Closed });
        assert_eq!(
            change_of(&closed),
            Some(AlertChange::Resolve { fingerprint: spec.fingerprint(), name: BREAKER_OPEN })
        );
        let half = event("a", EventData::BreakerChanged { capability: "x".into(), state: BreakerState::HalfOpen });
        assert_eq!(change_of(&half), None);
    }

    #[test]
    fn fingerprints_differ_by_every_label_and_not_by_annotations() {
        let spec = |name, severity, cap: &str| AlertSpec {
            name,
            severity,
            subject: ("capability", cap.into()),
            summary: String::new(),
            description: String::new(),
            figures: BTreeMap::new(),
        };
        let base = spec(SLO_BURN, SloSeverity::Page, "x");
        assert_eq!(base.fingerprint().len(), 16);
        assert_ne!(base.fingerprint(), spec(SLO_BURN, SloSeverity::Ticket, "x").fingerprint());
        assert_ne!(base.fingerprint(), spec(SLO_BURN, SloSeverity::Page, "y").fingerprint());
        assert_ne!(base.fingerprint(), spec(SLO_TREND, SloSeverity::Page, "x").fingerprint());
        let mut other = base.clone();
        other.summary = "different words".into();
        assert_eq!(base.fingerprint(), other.fingerprint());
    }

    #[test]
    fn every_slo_advisory_that_recovers_resolves_the_alert_it_raised() {
        let cap = || "search.web".to_owned();
        let burn = EventData::SloBurn {
            capability: cap(),
            episode: 1,
            severity: SloSeverity::Ticket,
            factor: 6.0,
            long_window: "6h".into(),
            short_window: "30m".into(),
            long_rate: 7.0,
            short_rate: 8.0,
            error_budget: 0.01,
        };
        let Some(AlertChange::Raise(spec)) = change_of(&event("a", burn)) else { panic!() };
        let back = EventData::SloRecovered { capability: cap(), episode: 1, advisory: "burn.ticket".into() };
        assert_eq!(
            change_of(&event("a", back)),
            Some(AlertChange::Resolve { fingerprint: spec.fingerprint(), name: SLO_BURN })
        );
        let page = EventData::SloRecovered { capability: cap(), episode: 1, advisory: "burn.page".into() };
        assert_ne!(
            change_of(&event("a", page)),
            Some(AlertChange::Resolve { fingerprint: spec.fingerprint(), name: SLO_BURN })
        );
    }
    fn raised(change: Option<AlertChange>) -> AlertSpec {
        match change {
            Some(AlertChange::Raise(spec)) => spec,
            other => panic!("not a raise: {other:?}"),
        }
    }

    #[test]
    fn a_restart_loop_raises_from_its_third_restart_and_settling_or_a_fresh_start_resolves_it() {
        let restarted =
            |n| event("b", EventData::ActorRestarted { actor: "warden.executors".into(), recent_restarts: n });
        assert_eq!(change_of(&restarted(RESTART_LOOP_AT - 1)), None, "below the line");
        let spec = raised(change_of(&restarted(RESTART_LOOP_AT)));
        assert_eq!((spec.labels()["alertname"].as_str(), spec.labels()["node"].as_str()), (RESTART_LOOP, "b"));
        assert_eq!(spec.annotations()["actor"], "warden.executors");
        let back = AlertChange::Resolve { fingerprint: spec.fingerprint(), name: RESTART_LOOP };
        assert_eq!(changes_of(&event("b", EventData::ActorsSettled { quiet_ms: 30_000 })), vec![back.clone()]);
        assert!(changes_of(&event("a", EventData::ActorsSettled { quiet_ms: 30_000 })) != vec![back.clone()]);
        let started = changes_of(&event("b", EventData::NodeStarted { node: "b".into(), capabilities: 4 }));
        assert_eq!(started.len(), 2, "{started:?}");
        assert!(started.contains(&back), "a fresh node has no loop: {started:?}");
    }

    #[test]
    fn a_growing_dead_letter_queue_raises_at_its_line_and_resolves_at_half_of_it() {
        let entered = |waiting| {
            let data = EventData::DlqEntered {
                dlq_id: crate::ids::DlqId("dlq_9".into()),
                attempts: 3,
                error: None,
                capability: "files.write".into(),
                waiting,
            };
            change_of(&event("a", data))
        };
        let replayed = |waiting| {
            let data = EventData::DlqReplayed {
                dlq_id: crate::ids::DlqId("dlq_9".into()),
                action_id: crate::ids::ActionId("act_10".into()),
                original_action_id: crate::ids::ActionId("act_9".into()),
                principal: None,
                capability: "files.write".into(),
                waiting,
            };
            change_of(&event("a", data))
        };
        assert_eq!(entered(DLQ_GROWING_AT - 1), None);
        let spec = raised(entered(DLQ_GROWING_AT));
        assert_eq!(spec.labels()["capability"], "files.write");
        assert_eq!(spec.annotations()["waiting"], DLQ_GROWING_AT.to_string());
        assert_eq!(replayed(DLQ_SHRUNK_AT + 1), None, "not yet down to half");
        assert_eq!(
            replayed(DLQ_SHRUNK_AT),
            Some(AlertChange::Resolve { fingerprint: spec.fingerprint(), name: DLQ_GROWING })
        );
    }

    #[test]
    fn a_refused_push_raises_and_the_next_activation_resolves_it() {
        let rejected = EventData::PolicyRejected {
            hash: "c".repeat(64),
            revision: "rev-c".into(),
            by: "root".into(),
            failures: vec!["a.rego:1:9: unexpected token".into()],
            audit_seq: 3,
        };
        let spec = raised(change_of(&event("a", rejected)));
        assert_eq!(spec.labels()["alertname"], POLICY_REJECTED);
        assert!(spec.description.contains("a.rego:1:9: unexpected token"), "{}", spec.description);
        let activated = EventData::PolicyActivated {
            hash: "a".repeat(64),
            revision: "rev-a".into(),
            old_hash: None,
            change: crate::domain::PolicyChange::Push,
            by: "root".into(),
            reason: String::new(),
            audit_seq: 4,
        };
        assert_eq!(
            change_of(&event("b", activated)),
            Some(AlertChange::Resolve { fingerprint: spec.fingerprint(), name: POLICY_REJECTED })
        );
    }
}

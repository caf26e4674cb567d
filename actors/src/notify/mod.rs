//! Notifier: tells people about alerts, through the channels of
//! `[[notify]]` (`channel`: log, webhook, Alertmanager; `payload`: what each
//! is sent). Every node runs one; only the leader's delivers. It looks for
//! state changes the log holds without a delivery record for a channel —
//! at once when an `alert.*` event commits, and every `scan_every` on the
//! node's clock — so a new leader delivers what its predecessor raised but
//! did not deliver. Each delivery is recorded through the log
//! (`AlertDelivered`); a receiver may see a state change twice (a leader
//! died after sending, before recording), never not at all, and counts it
//! once by its `X-Warden-Delivery` id.

pub mod channel;
pub mod payload;

use crate::directory::{ActorName, ChildSpec};
use crate::domain::{AlertRecord, AlertState, EventKind};
use crate::runtime::Runtime;
use channel::{Channel, ChannelStatus, DeliveryKey, Job};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorMessage;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};

/// The actor's name in the node's directory.
pub const NAME: ActorName<NotifyMsg> = ActorName::new("notify");

#[derive(RactorMessage)]
pub enum NotifyMsg {
    /// Look for undelivered state changes (as of this time on the node's clock).
    Scan(u64),
    /// This node's leadership was confirmed by a quorum and its state caught
    /// up with the log (`Ok`), or not: the scan of this time goes on, or not.
    Confirmed(u64, bool),
    /// A delivery ended (through, or left to a later leader).
    Done(DeliveryKey),
    /// Every channel's queue, and the failing deliveries: (attempts, last error).
    Status(RpcReplyPort<NotifyStatus>),
}

/// What `/v1/alerts` adds to the log's alerts: this node's channels and its
/// deliveries in progress.
#[derive(Clone, Debug, Default)]
pub struct NotifyStatus {
    pub leader: bool,
    pub channels: Vec<ChannelStatus>,
    pub failing: BTreeMap<DeliveryKey, (u32, String)>,
}

pub struct Notifier;

pub struct NotifyState {
    rt: Arc<Runtime>,
    channels: Vec<Channel>,
    /// Handed to a channel and not yet through.
    in_flight: BTreeSet<DeliveryKey>,
    last_resend_ms: u64,
    /// A leadership confirmation is under way; `rescan`: a scan was asked meanwhile.
    confirming: bool,
    rescan: bool,
    /// Since when this node has seen no leader, and whether it said so.
    leaderless_since: Option<u64>,
    no_leader_sent: bool,
}

/// A leader that has heard no quorum this long (ms) counts as no leader.
const QUORUM_ACK_STALE_MS: u64 = 2_000;
/// A node that has seen no leader this long raises `WardenNoLeader` itself.
pub const NO_LEADER_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

pub fn child(rt: &Arc<Runtime>) -> ChildSpec {
    let rt = rt.clone();
    ChildSpec::new(NAME, move || (Notifier, rt.clone()))
}

/// Casts `Scan` every `scan_every` on the node's clock, and at once when an
/// alert is raised or resolved.
fn spawn_triggers(rt: &Arc<Runtime>, myself: &ActorRef<NotifyMsg>) {
    let (clock, every) = (rt.clock.clone(), rt.config.notify.scan_every.as_millis().max(1) as u64);
    let me = myself.clone();
    rt.tasks.spawn_unique(format!("notify:tick:{}", myself.get_id()), async move {
        let mut next = clock.now_ms() + every;
        loop {
            clock.sleep_until(next).await;
            if me.cast(NotifyMsg::Scan(next)).is_err() {
                return;
            }
            next = clock.now_ms() + every;
        }
    });
    let (me, clock, mut events) = (myself.clone(), rt.clock.clone(), rt.ledger.subscribe());
    rt.tasks.spawn_unique(format!("notify:events:{}", myself.get_id()), async move {
        loop {
            let changed = match events.recv().await {
                Ok(e) => matches!(e.kind(), EventKind::AlertRaised | EventKind::AlertResolved),
                Err(broadcast::error::RecvError::Lagged(_)) => true,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if changed && me.cast(NotifyMsg::Scan(clock.now_ms())).is_err() {
                return;
            }
        }
    });
}

impl NotifyState {
    /// Starts a scan: a node that believes it leads first confirms it with a
    /// quorum (a deposed leader, or one restarted on a vote naming itself,
    /// must not send) and applies what is committed (so it sees the
    /// deliveries its predecessor recorded). Off the mailbox: it may wait.
    fn confirm(&mut self, myself: &ActorRef<NotifyMsg>, now_ms: u64) {
        if self.channels.is_empty() || !self.rt.ledger.consensus().leads() {
            return;
        }
        if self.confirming {
            self.rescan = true;
            return;
        }
        self.confirming = true;
        let (rt, me) = (self.rt.clone(), myself.clone());
        // A task of the node's set, so shutdown stops it with the others.
        self.rt.tasks.spawn_unique(format!("notify:confirm:{}", myself.get_id()), async move {
            let confirmed = rt.ledger.consensus().read_barrier().await.is_ok() && rt.ledger.consensus().leads();
            let _ = me.cast(NotifyMsg::Confirmed(now_ms, confirmed));
        });
    }

    /// Without a leader nothing reaches the log, alerts included: a node that
    /// has seen none for `NO_LEADER_AFTER` sends `WardenNoLeader` (about
    /// itself) straight to its channels, and its resolution once a leader is
    /// back. Alertmanager merges the nodes' reports by label set; a webhook
    /// gets one per node and outage (its own delivery id).
    fn watch_leader(&mut self, now_ms: u64) {
        let raft = self.rt.ledger.consensus().status();
        // A leader cut off from its quorum keeps the role: it counts as none.
        let cut_off = raft.role == "leader" && raft.millis_since_quorum_ack.is_some_and(|ms| ms > QUORUM_ACK_STALE_MS);
        let has_leader = raft.leader.is_some() && !cut_off;
        let node = self.rt.node.clone();
        match (has_leader, self.leaderless_since) {
            (false, None) => self.leaderless_since = Some(now_ms),
            (false, Some(since)) if !self.no_leader_sent && now_ms >= since + NO_LEADER_AFTER.as_millis() as u64 => {
                self.no_leader_sent = true;
                self.send_direct(crate::domain::alert::no_leader(&node, since, now_ms, false), AlertState::Firing);
            }
            (true, Some(since)) => {
                if std::mem::take(&mut self.no_leader_sent) {
                    self.send_direct(crate::domain::alert::no_leader(&node, since, now_ms, true), AlertState::Resolved);
                }
                self.leaderless_since = None;
            }
            _ => {}
        }
    }

    fn send_direct(&self, alert: AlertRecord, state: AlertState) {
        tracing::warn!(name = %alert.name, state = state.as_str(), "alert sent outside the log");
        for channel in &self.channels {
            if channel.jobs.try_send(Job::Direct(Box::new(alert.clone()), state)).is_err() {
                channel.stats.overflowed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Hands every undelivered state change to its channel, in order
    /// (firing before resolved); a full queue leaves it to the next scan.
    fn scan(&mut self, now_ms: u64) {
        let alerts = match self.rt.store.alerts() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read alerts");
                return;
            }
        };
        for channel in &self.channels {
            for alert in &alerts {
                for &state in states_of(alert) {
                    if alert.delivered_to(state, &channel.config.name) {
                        continue;
                    }
                    let key = DeliveryKey {
                        fingerprint: alert.fingerprint.clone(),
                        episode: alert.episode,
                        state,
                        channel: channel.config.name.clone(),
                    };
                    if self.in_flight.contains(&key) {
                        continue;
                    }
                    match channel.jobs.try_send(Job::Deliver(Box::new(alert.clone()), state)) {
                        Ok(()) => {
                            self.in_flight.insert(key);
                        }
                        Err(_) => {
                            channel.stats.overflowed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(channel = %channel.config.name, fingerprint = %alert.fingerprint, "alert queue full: the change waits for the next scan");
                        }
                    }
                }
            }
        }
        self.resend_firing(&alerts, now_ms);
    }

    /// Alertmanager forgets a firing alert that is not sent again: every
    /// `resend_every`, the firing alerts already delivered there go again.
    fn resend_firing(&mut self, alerts: &[AlertRecord], now_ms: u64) {
        let every = self.rt.config.notify.resend_every.as_millis() as u64;
        if now_ms < self.last_resend_ms + every {
            return;
        }
        self.last_resend_ms = now_ms;
        for channel in self.channels.iter().filter(|c| c.config.kind == crate::config::ChannelKind::Alertmanager) {
            let firing: Vec<AlertRecord> = alerts
                .iter()
                .filter(|a| a.state == AlertState::Firing && a.delivered_to(AlertState::Firing, &channel.config.name))
                .cloned()
                .collect();
            if !firing.is_empty() && channel.jobs.try_send(Job::Resend(firing)).is_err() {
                channel.stats.overflowed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The state changes an episode has had, in order.
fn states_of(alert: &AlertRecord) -> &'static [AlertState] {
    match alert.state {
        AlertState::Firing => &[AlertState::Firing],
        AlertState::Resolved => &[AlertState::Firing, AlertState::Resolved],
    }
}

impl Actor for Notifier {
    type Msg = NotifyMsg;
    type State = NotifyState;
    type Arguments = Arc<Runtime>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        rt: Arc<Runtime>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let channels =
            rt.config.notify.channels.iter().map(|c| Channel::start(&rt, c.clone(), done_tx.clone())).collect();
        let me = myself.clone();
        rt.tasks.spawn_unique(format!("notify:done:{}", myself.get_id()), async move {
            while let Some(key) = done_rx.recv().await {
                if me.cast(NotifyMsg::Done(key)).is_err() {
                    return;
                }
            }
        });
        spawn_triggers(&rt, &myself);
        let _ = myself.cast(NotifyMsg::Scan(rt.clock.now_ms()));
        Ok(NotifyState {
            rt,
            channels,
            in_flight: BTreeSet::new(),
            last_resend_ms: 0,
            confirming: false,
            rescan: false,
            leaderless_since: None,
            no_leader_sent: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NotifyMsg::Scan(now_ms) => {
                state.watch_leader(now_ms);
                state.confirm(&myself, now_ms);
            }
            NotifyMsg::Confirmed(now_ms, confirmed) => {
                state.confirming = false;
                if confirmed {
                    state.scan(now_ms);
                }
                if std::mem::take(&mut state.rescan) {
                    state.confirm(&myself, state.rt.clock.now_ms());
                }
            }
            NotifyMsg::Done(key) => {
                state.in_flight.remove(&key);
            }
            NotifyMsg::Status(reply) => {
                let mut failing = BTreeMap::new();
                for c in &state.channels {
                    failing.extend(c.stats.failing.lock().iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                let channels = state.channels.iter().map(Channel::status).collect();
                let leader = state.rt.ledger.consensus().leads();
                let _ = reply.send(NotifyStatus { leader, channels, failing });
            }
        }
        Ok(())
    }
}

/// How long a resolved alert stays in `/v1/alerts`.
pub const RESOLVED_SHOWN: std::time::Duration = std::time::Duration::from_secs(3_600);

/// `/v1/alerts`: firing alerts and those resolved within `RESOLVED_SHOWN`,
/// each with its delivery per channel (from the log, and from this node's
/// channels while it delivers: attempts and last error of one in progress).
pub fn alerts_view(
    alerts: &[AlertRecord],
    status: &NotifyStatus,
    config: &crate::config::NotifyConfig,
    now_ms: u64,
) -> serde_json::Value {
    use serde_json::json;
    let shown_since = now_ms.saturating_sub(RESOLVED_SHOWN.as_millis() as u64);
    let mut out = Vec::new();
    for alert in alerts.iter().filter(|a| a.ends_at.is_none_or(|end| end >= shown_since)) {
        let mut deliveries = Vec::new();
        for channel in &config.channels {
            for &state in states_of(alert) {
                let recorded = alert.delivered.iter().find(|(s, c, _)| *s == state && *c == channel.name);
                let key = DeliveryKey {
                    fingerprint: alert.fingerprint.clone(),
                    episode: alert.episode,
                    state,
                    channel: channel.name.clone(),
                };
                let mut d = json!({
                    "channel": channel.name,
                    "kind": channel.kind,
                    "state": state.as_str(),
                    "delivery_id": alert.delivery_id(state),
                    "delivered": recorded.is_some(),
                    "attempts": recorded.map_or(0, |r| r.2),
                });
                if let (None, Some((attempts, error))) = (recorded, status.failing.get(&key)) {
                    d["attempts"] = json!(attempts);
                    d["last_error"] = json!(error);
                }
                deliveries.push(d);
            }
        }
        let mut a = payload::alert_json(alert, &config.dashboard_url);
        a["deliveries"] = json!(deliveries);
        out.push(a);
    }
    // Firing first, then the most recent.
    out.sort_by_key(|a| (a["state"] != "firing", std::cmp::Reverse(a["starts_at"].as_str().unwrap_or("").to_owned())));
    json!({"alerts": out, "channels": status.channels, "delivering": status.leader})
}

//! One notification channel: a bounded queue and the task that empties it.
//! A delivery is tried until it gets through (pauses growing exponentially
//! with jitter, on the node's clock) or this node stops leading; once
//! through, it is recorded through the log (`AlertDelivered`). Each channel
//! has its own task, so a receiver that hangs or fails holds up only its
//! own queue, never detection, the pipeline or another channel.

use super::payload::{self, DELIVERY_HEADER, SIGNATURE_HEADER};
use crate::backoff;
use crate::command::Command;
use crate::config::{ChannelConfig, ChannelKind, NotifyConfig};
use crate::domain::{AlertRecord, AlertState};
use crate::error::WardenError;
use crate::runtime::Runtime;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Tries at recording one delivery before leaving it to the next scan.
const RECORD_TRIES: usize = 5;
/// Tries at a change sent outside the log (`Job::Direct`).
pub const DIRECT_TRIES: u32 = 5;

/// Which state change of which alert, to which channel.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeliveryKey {
    pub fingerprint: String,
    pub episode: u64,
    pub state: AlertState,
    pub channel: String,
}

pub enum Job {
    /// A state change not yet recorded as delivered to this channel.
    Deliver(Box<AlertRecord>, AlertState),
    /// Alertmanager: firing alerts sent again so they stay firing there (not recorded).
    Resend(Vec<AlertRecord>),
    /// A change the log cannot hold (no leader): tried `DIRECT_TRIES` times, not recorded.
    Direct(Box<AlertRecord>, AlertState),
}

/// What the channel is doing, for `/v1/alerts`.
#[derive(Default)]
pub struct ChannelStats {
    /// Deliveries refused because the queue was full (they wait for the next scan).
    pub overflowed: AtomicU64,
    /// Failed tries of deliveries not yet through: (attempts, last error).
    pub failing: Mutex<BTreeMap<DeliveryKey, (u32, String)>>,
}

/// A channel's state as `/v1/alerts` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ChannelStatus {
    pub name: String,
    pub kind: ChannelKind,
    pub queued: usize,
    pub queue_limit: usize,
    pub overflowed: u64,
}

/// The Notifier's handle on one channel's queue.
pub struct Channel {
    pub config: ChannelConfig,
    pub jobs: mpsc::Sender<Job>,
    pub stats: Arc<ChannelStats>,
    pub queue_limit: usize,
}

impl Channel {
    /// Starts the channel's task; `done` hears of every delivery that ended
    /// (through, or abandoned because this node no longer leads).
    pub fn start(rt: &Arc<Runtime>, config: ChannelConfig, done: mpsc::UnboundedSender<DeliveryKey>) -> Channel {
        let settings = rt.config.notify.clone();
        let (jobs, mut rx) = mpsc::channel::<Job>(settings.queue_limit);
        let stats = Arc::new(ChannelStats::default());
        let http = reqwest::Client::builder().timeout(settings.request_timeout).build().unwrap_or_default();
        let sender =
            Sender { rt: rt.clone(), config: config.clone(), settings: settings.clone(), http, stats: stats.clone() };
        // Unique per channel and per start: a restarted Notifier's new task
        // runs beside the old one, which ends when its queue closes.
        let key = format!("notify:{}:{}", config.name, ulid::Ulid::new());
        rt.tasks.spawn_unique(key, async move {
            while let Some(job) = rx.recv().await {
                match job {
                    Job::Deliver(alert, state) => {
                        let alert = *alert;
                        let key = sender.key(&alert, state);
                        sender.deliver(&alert, state, &key).await;
                        sender.stats.failing.lock().remove(&key);
                        let _ = done.send(key);
                    }
                    Job::Resend(alerts) => sender.resend(&alerts).await,
                    Job::Direct(alert, state) => sender.direct(&alert, state).await,
                }
            }
        });
        Channel { config, jobs, stats, queue_limit: settings.queue_limit }
    }

    pub fn status(&self) -> ChannelStatus {
        ChannelStatus {
            name: self.config.name.clone(),
            kind: self.config.kind,
            queued: self.queue_limit - self.jobs.capacity(),
            queue_limit: self.queue_limit,
            overflowed: self.stats.overflowed.load(Ordering::Relaxed),
        }
    }
}

struct Sender {
    rt: Arc<Runtime>,
    config: ChannelConfig,
    settings: NotifyConfig,
    http: reqwest::Client,
    stats: Arc<ChannelStats>,
}

impl Sender {
    fn key(&self, alert: &AlertRecord, state: AlertState) -> DeliveryKey {
        DeliveryKey {
            fingerprint: alert.fingerprint.clone(),
            episode: alert.episode,
            state,
            channel: self.config.name.clone(),
        }
    }

    fn leads(&self) -> bool {
        self.rt.ledger.consensus().leads()
    }

    /// Tries until through or no longer leader; records it when through.
    async fn deliver(&self, alert: &AlertRecord, state: AlertState, key: &DeliveryKey) {
        let mut attempts = 0u32;
        while self.leads() {
            attempts += 1;
            match self.send(alert, state).await {
                Ok(()) => {
                    self.record(key, attempts).await;
                    return;
                }
                Err(error) => {
                    tracing::warn!(channel = %self.config.name, fingerprint = %alert.fingerprint, state = state.as_str(), attempts, %error, "alert delivery failed; retrying");
                    self.stats.failing.lock().insert(key.clone(), (attempts, error));
                    let pause =
                        jittered(backoff::nth(self.settings.retry_base, self.settings.retry_max, attempts as usize));
                    let clock = &self.rt.clock;
                    clock.sleep_until(clock.now_ms() + pause.as_millis() as u64).await;
                }
            }
        }
    }

    /// Sends a change the log cannot hold, a bounded number of times.
    async fn direct(&self, alert: &AlertRecord, state: AlertState) {
        for attempt in 1..=DIRECT_TRIES {
            match self.send(alert, state).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(channel = %self.config.name, name = %alert.name, attempt, %error, "alert not sent");
                    let pause =
                        jittered(backoff::nth(self.settings.retry_base, self.settings.retry_max, attempt as usize));
                    let clock = &self.rt.clock;
                    clock.sleep_until(clock.now_ms() + pause.as_millis() as u64).await;
                }
            }
        }
    }

    async fn send(&self, alert: &AlertRecord, state: AlertState) -> Result<(), String> {
        let dashboard = &self.settings.dashboard_url;
        match self.config.kind {
            ChannelKind::Log => {
                tracing::info!(
                    target: "warden::alert",
                    fingerprint = %alert.fingerprint,
                    name = %alert.name,
                    state = state.as_str(),
                    severity = %alert.severity,
                    episode = alert.episode,
                    summary = alert.annotations.get("summary").map_or("", String::as_str),
                    correlation_id = %alert.cause,
                    delivery_id = %alert.delivery_id(state),
                    "alert"
                );
                Ok(())
            }
            ChannelKind::Webhook => {
                let body = payload::webhook_body(alert, state, dashboard, self.rt.clock.now_ms());
                let secret = self.config.secret.as_deref().unwrap_or_default();
                let request = self
                    .http
                    .post(self.config.url.as_deref().unwrap_or_default())
                    .header("content-type", "application/json")
                    .header(SIGNATURE_HEADER, payload::signature(secret, &body))
                    .header(DELIVERY_HEADER, alert.delivery_id(state))
                    .body(body);
                answered(request.send().await)
            }
            ChannelKind::Alertmanager => {
                let mut alert = alert.clone();
                alert.state = state;
                self.post_alertmanager(&[alert]).await
            }
        }
    }

    async fn post_alertmanager(&self, alerts: &[AlertRecord]) -> Result<(), String> {
        let now = self.rt.clock.now_ms();
        let body: Vec<_> = alerts
            .iter()
            .map(|a| payload::alertmanager_alert(a, &self.settings.dashboard_url, now, self.settings.resend_every))
            .collect();
        let url = format!("{}/api/v2/alerts", self.config.url.as_deref().unwrap_or_default().trim_end_matches('/'));
        answered(self.http.post(url).json(&body).send().await)
    }

    async fn resend(&self, alerts: &[AlertRecord]) {
        if alerts.is_empty() || !self.leads() {
            return;
        }
        if let Err(error) = self.post_alertmanager(alerts).await {
            tracing::warn!(channel = %self.config.name, %error, "firing alerts not re-sent; next period");
        }
    }

    /// Records the delivery; a refusal or an unavailable log leaves it to
    /// the next scan (which delivers it again: receivers dedup by id).
    async fn record(&self, key: &DeliveryKey, attempts: u32) {
        let mut pauses = backoff::exponential(Duration::from_millis(50), Duration::from_secs(1));
        for _ in 0..RECORD_TRIES {
            let cmd = Command::AlertDelivered {
                fingerprint: key.fingerprint.clone(),
                episode: key.episode,
                state: key.state,
                channel: key.channel.clone(),
                attempts,
            };
            match self.rt.ledger.propose(cmd).await {
                Ok(_) => return,
                Err(e @ (WardenError::Unavailable(_) | WardenError::Overloaded(_) | WardenError::Storage(_))) => {
                    tracing::debug!(error = %e, "alert delivery not recorded yet");
                    tokio::time::sleep(pauses.next().unwrap_or(Duration::from_secs(1))).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "alert delivery refused by the log");
                    return;
                }
            }
        }
    }
}

/// A receiver's answer: any 2xx is through.
fn answered(r: reqwest::Result<reqwest::Response>) -> Result<(), String> {
    match r {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("answered {}", r.status())),
        Err(e) if e.is_timeout() => Err("timed out".into()),
        Err(e) => Err(format!("unreachable: {e}")),
    }
}

/// "Equal jitter": half the pause, plus a random share of the other half,
/// so retries of many alerts against one receiver spread out.
pub fn jittered(pause: Duration) -> Duration {
    let half = pause / 2;
    half + half.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_keeps_a_pause_between_half_and_all_of_it() {
        for ms in [1u64, 200, 30_000] {
            for _ in 0..100 {
                let p = jittered(Duration::from_millis(ms));
                assert!(p >= Duration::from_millis(ms) / 2 && p <= Duration::from_millis(ms), "{p:?} of {ms} ms");
            }
        }
    }
}

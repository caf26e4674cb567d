//! Prometheus metrics. Action outcomes and attempt latencies are counted from
//! the node's committed events (one subscriber task); breaker states, the
//! DLQ depth and storage (free space, tables, last snapshot) are read at
//! scrape time, so they are never stale.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use warden_actors::breaker::BreakerState;
use warden_actors::disk::{StorageReport, StorageState};
use warden_actors::domain::{AttemptOutcome, Event, EventData, Verdict};
use warden_actors::slo::SloView;
use warden_actors::Node;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    capability: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CapabilityLabels {
    capability: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WindowLabels {
    capability: String,
    window: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// This node's SLO view at scrape time (`GET /v1/slo?scope=node`): the
/// gauges that deploy/prometheus/warden.rules.yml reads.
#[derive(Default)]
struct SloGauges {
    p95: Family<WindowLabels, FloatGauge>,
    p99: Family<WindowLabels, FloatGauge>,
    error_ratio: Family<WindowLabels, FloatGauge>,
    burn_rate: Family<WindowLabels, FloatGauge>,
    objective_p95: Family<CapabilityLabels, FloatGauge>,
    error_budget: Family<CapabilityLabels, FloatGauge>,
    budget_remaining: Family<CapabilityLabels, FloatGauge>,
    advisories: Family<CapabilityLabels, Gauge>,
}

impl SloGauges {
    fn register(&self, r: &mut Registry) {
        r.register("slo_p95_seconds", "p95 attempt latency over the window (this node)", self.p95.clone());
        r.register("slo_p99_seconds", "p99 attempt latency over the window (this node)", self.p99.clone());
        r.register(
            "slo_error_ratio",
            "Failed attempts over attempts in the window (this node)",
            self.error_ratio.clone(),
        );
        r.register(
            "slo_burn_rate",
            "Error ratio over the error budget in the window (this node)",
            self.burn_rate.clone(),
        );
        r.register("slo_objective_p95_seconds", "The capability's p95 objective", self.objective_p95.clone());
        r.register("slo_error_budget", "The capability's error budget (share of attempts)", self.error_budget.clone());
        r.register(
            "slo_budget_remaining",
            "Share of the period's error budget left (this node)",
            self.budget_remaining.clone(),
        );
        r.register("slo_open_advisories", "SLO advisories the log holds open", self.advisories.clone());
    }

    fn set(&self, view: &SloView) {
        let secs = |ms: Option<u64>| ms.map_or(f64::NAN, |ms| ms as f64 / 1000.0);
        for c in &view.capabilities {
            let cap = CapabilityLabels { capability: c.capability.clone() };
            for w in &c.windows {
                let l = WindowLabels { capability: c.capability.clone(), window: w.window.clone() };
                self.p95.get_or_create(&l).set(secs(w.p95_ms));
                self.p99.get_or_create(&l).set(secs(w.p99_ms));
                self.error_ratio.get_or_create(&l).set(w.error_ratio);
            }
            for b in &c.burn {
                for (window, rate) in [(&b.long_window, b.long_rate), (&b.short_window, b.short_rate)] {
                    let l = WindowLabels { capability: c.capability.clone(), window: window.clone() };
                    self.burn_rate.get_or_create(&l).set(rate);
                }
            }
            self.objective_p95.get_or_create(&cap).set(c.slo.p95_ms as f64 / 1000.0);
            self.error_budget.get_or_create(&cap).set(c.slo.error_budget);
            self.budget_remaining.get_or_create(&cap).set(c.budget.remaining);
            self.advisories.get_or_create(&cap).set(c.advisories.len() as i64);
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    table: String,
}

/// This node's storage at scrape time (`GET /v1/health`'s `storage`): free
/// space against the watermark, the state's tables, the last snapshot.
#[derive(Default)]
struct StorageGauges {
    state: Gauge,
    free_bytes: Gauge,
    watermark_bytes: Gauge,
    table_rows: Family<TableLabels, Gauge>,
    table_bytes: Family<TableLabels, Gauge>,
    oldest_event: FloatGauge,
    oldest_event_seq: Gauge,
    archive_bytes: Gauge,
    archive_segments: Gauge,
    archive_events: Gauge,
    snapshot_bytes: Gauge,
    snapshot_build: FloatGauge,
}

impl StorageGauges {
    fn register(&self, r: &mut Registry) {
        r.register("storage_state", "Data dir storage: 0 ok, 1 under the low watermark, 2 failed", self.state.clone());
        r.register("storage_free_bytes", "Free bytes on the data dir's file system", self.free_bytes.clone());
        r.register(
            "storage_low_watermark_bytes",
            "Free bytes under which new work is refused (507 storage_full)",
            self.watermark_bytes.clone(),
        );
        r.register(
            "state_table_rows",
            "Rows per table of warden.redb and of the timeline index (measured every [storage] size_every_ms)",
            self.table_rows.clone(),
        );
        r.register(
            "state_table_bytes",
            "Bytes per table of warden.redb and of the timeline index: rows, branch pages, fragmentation",
            self.table_bytes.clone(),
        );
        r.register(
            "state_oldest_event_timestamp_seconds",
            "Time of the oldest event the state holds",
            self.oldest_event.clone(),
        );
        r.register(
            "state_oldest_event_seq",
            "Seq of the oldest event the state holds: those before it expired ([retention])",
            self.oldest_event_seq.clone(),
        );
        r.register("archive_bytes", "Bytes of this node's archive segments (compressed)", self.archive_bytes.clone());
        r.register("archive_segments", "Segment files in this node's archive", self.archive_segments.clone());
        r.register("archive_events", "Expired events this node's archive holds", self.archive_events.clone());
        r.register("snapshot_bytes", "Size of the last Raft snapshot this node built", self.snapshot_bytes.clone());
        r.register(
            "snapshot_build_seconds",
            "Time the last Raft snapshot took to build and persist",
            self.snapshot_build.clone(),
        );
    }

    fn set(&self, s: &StorageReport) {
        self.state.set(match s.state {
            StorageState::Ok => 0,
            StorageState::Full => 1,
            StorageState::Failed => 2,
        });
        self.free_bytes.set(s.free_bytes as i64);
        self.watermark_bytes.set(s.watermark_bytes as i64);
        for t in &s.size.tables {
            let labels = TableLabels { table: t.table.clone() };
            self.table_rows.get_or_create(&labels).set(t.rows as i64);
            self.table_bytes.get_or_create(&labels).set(t.bytes as i64);
        }
        if let Some(ms) = s.size.oldest_event_ms {
            self.oldest_event.set(ms as f64 / 1000.0);
        }
        if let Some(seq) = s.size.oldest_event_seq {
            self.oldest_event_seq.set(seq as i64);
        }
        self.archive_bytes.set(s.size.archive.bytes as i64);
        self.archive_segments.set(s.size.archive.segments as i64);
        self.archive_events.set(s.size.archive.events as i64);
        if let Some(snap) = &s.last_snapshot {
            self.snapshot_bytes.set(snap.bytes as i64);
            self.snapshot_build.set(snap.build_ms as f64 / 1000.0);
        }
    }
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~32 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    actions: Family<OutcomeLabels, Counter>,
    attempt_latency: Family<CapabilityLabels, Histogram, fn() -> Histogram>,
    breaker_state: Family<CapabilityLabels, Gauge>,
    /// Attempts by capability and `outcome` (`ok`, or `error`: what the SLO counts as failed).
    slo_attempts: Family<OutcomeLabels, Counter>,
    slo: SloGauges,
    storage: StorageGauges,
    dlq_depth: Gauge,
    resident_bytes: Gauge,
    /// Events the counting task missed because it fell behind.
    missed_events: Counter,
    last_seq: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("warden");
        let actions = Family::<OutcomeLabels, Counter>::default();
        registry.register("actions", "Actions that reached a terminal state, by outcome", actions.clone());
        let attempt_latency =
            Family::<CapabilityLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register("attempt_latency_seconds", "Tool call latency per attempt", attempt_latency.clone());
        let breaker_state = Family::<CapabilityLabels, Gauge>::default();
        registry.register("breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open", breaker_state.clone());
        let slo_attempts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "slo_attempts",
            "Attempts that reached their tool, by outcome as the SLO counts it (ok / error)",
            slo_attempts.clone(),
        );
        let slo = SloGauges::default();
        slo.register(&mut registry);
        let storage = StorageGauges::default();
        storage.register(&mut registry);
        let dlq_depth = Gauge::default();
        registry.register("dlq_depth", "Dead-lettered actions not yet replayed", dlq_depth.clone());
        let resident_bytes = Gauge::default();
        registry.register(
            "resident_memory_bytes",
            "The node process's resident set size (VmRSS), read at scrape",
            resident_bytes.clone(),
        );
        let missed_events = Counter::default();
        registry.register(
            "metrics_missed_events",
            "Events the metrics task skipped when lagging",
            missed_events.clone(),
        );
        Self {
            registry,
            actions,
            attempt_latency,
            breaker_state,
            slo_attempts,
            slo,
            storage,
            dlq_depth,
            resident_bytes,
            missed_events,
            last_seq: AtomicU64::new(0),
        }
    }

    /// Counts from committed events until the node's event stream closes.
    /// Holds the node weakly, so it never keeps a stopping node alive.
    pub fn spawn_collector(self: &Arc<Self>, node: &Arc<Node>) {
        let me = self.clone();
        let mut events = node.subscribe();
        let node = Arc::downgrade(node);
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => match node.upgrade() {
                        Some(node) => me.observe(&node, &event),
                        None => return,
                    },
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "metrics fell behind the event stream");
                        me.missed_events.inc_by(n);
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }

    fn observe(&self, node: &Node, event: &Event) {
        self.last_seq.store(event.seq, Ordering::Relaxed);
        let terminal = match &event.data {
            EventData::ActionAttempt { capability, latency_ms, outcome, .. } => {
                let labels = CapabilityLabels { capability: capability.clone() };
                self.attempt_latency.get_or_create(&labels).observe(*latency_ms as f64 / 1000.0);
                // As the SloMonitor counts: retryable failures are errors; a breaker-open fast fail never reached the tool.
                let counted = match outcome {
                    AttemptOutcome::BreakerOpen | AttemptOutcome::Interrupted => None,
                    AttemptOutcome::Retryable { .. } => Some("error"),
                    AttemptOutcome::Succeeded { .. } | AttemptOutcome::Permanent { .. } => Some("ok"),
                };
                if let Some(outcome) = counted {
                    let labels = OutcomeLabels { capability: capability.clone(), outcome: outcome.into() };
                    self.slo_attempts.get_or_create(&labels).inc();
                }
                false
            }
            EventData::ActionSucceeded { .. }
            | EventData::ActionFailed { .. }
            | EventData::ConfirmationExpired { .. } => true,
            EventData::PolicyDecided { decision, .. } => *decision == Verdict::Deny,
            EventData::ConfirmationGiven { approve, .. } => !approve,
            _ => false,
        };
        if !terminal {
            return;
        }
        let Some(action) = event.action_id.as_ref().and_then(|id| node.action(id).ok()) else { return };
        let outcome = serde_json::to_value(action.state).ok().and_then(|v| v.as_str().map(str::to_owned));
        let labels = OutcomeLabels { capability: action.capability, outcome: outcome.unwrap_or_default() };
        self.actions.get_or_create(&labels).inc();
    }

    /// The exposition text, with scrape-time gauges refreshed.
    pub async fn render(&self, node: &Node) -> String {
        if let Ok(breakers) = node.breakers().await {
            for b in breakers {
                let v = match b.state {
                    BreakerState::Closed => 0,
                    BreakerState::HalfOpen => 1,
                    BreakerState::Open => 2,
                };
                self.breaker_state.get_or_create(&CapabilityLabels { capability: b.capability }).set(v);
            }
        }
        if let Ok(view) = node.slo(true).await {
            self.slo.set(&view);
        }
        if let Ok(health) = node.health() {
            self.storage.set(&health.storage);
        }
        if let Ok(depth) = node.dlq_depth() {
            self.dlq_depth.set(depth as i64);
        }
        if let Some(bytes) = resident_bytes() {
            self.resident_bytes.set(bytes as i64);
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics encoding failed");
        }
        out
    }
}

/// This process's resident set size, from `VmRSS` in `/proc/self/status`;
/// `None` where there is no such file.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().strip_suffix("kB")?.trim();
    kb.parse::<u64>().ok().map(|kb| kb * 1024)
}

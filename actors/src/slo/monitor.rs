//! What one node's SloMonitor knows and decides, without the actor: each
//! capability's ring, its p95 series, and which advisories this node holds
//! open. `record` takes attempts, `evaluate` runs the detectors at a time
//! and returns the advisories that opened or ended. Pure and driven by the
//! times it is given, so hours replay in milliseconds.

use super::burn::{self, BurnRule, BurnView, Severity};
use super::ring::{Buckets, Counts, Ring, RingShape, WindowStats};
use super::trend::{self, TrendView};
use crate::config::SloConfig;
use crate::domain::{window_name, Capability, EventData, SloSpec};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// One advisory a capability can hold open (at most one of each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Advisory {
    Trend,
    Burn(Severity),
    BreachedLatency,
    BreachedErrors,
}

impl Advisory {
    pub fn as_str(self) -> &'static str {
        match self {
            Advisory::Trend => "trend",
            Advisory::Burn(Severity::Page) => "burn.page",
            Advisory::Burn(Severity::Ticket) => "burn.ticket",
            Advisory::BreachedLatency => "breached.latency",
            Advisory::BreachedErrors => "breached.errors",
        }
    }
}

/// An advisory that opened (with its figures) or ended on this node.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub capability: String,
    pub advisory: Advisory,
    pub at_ms: u64,
    pub change: Change,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Trend(TrendView),
    Burn(BurnView),
    Breached { objective: &'static str, window: String, value: f64, target: f64 },
    Ended,
}

impl Transition {
    pub fn opens(&self) -> bool {
        self.change != Change::Ended
    }

    /// The timeline event of this transition as episode `episode`.
    pub fn event(&self, slo: &SloSpec, episode: u64) -> EventData {
        let capability = self.capability.clone();
        match &self.change {
            Change::Trend(t) => EventData::SloTrend {
                capability,
                episode,
                p95_ms: round2(t.p95_ms),
                slo_p95_ms: slo.p95_ms,
                slope_ms_per_min: round2(t.slope_ms_per_min),
                projected_p95_ms: round2(t.projected_p95_ms),
                horizon_ms: t.horizon_ms,
                breach_in_ms: t.breach_in_ms,
            },
            Change::Burn(b) => EventData::SloBurn {
                capability,
                episode,
                severity: b.severity,
                factor: b.factor,
                long_window: b.long_window.clone(),
                short_window: b.short_window.clone(),
                long_rate: round2(b.long_rate),
                short_rate: round2(b.short_rate),
                error_budget: slo.error_budget,
            },
            Change::Breached { objective, window, value, target } => EventData::SloBreached {
                capability,
                episode,
                objective: (*objective).to_owned(),
                window: window.clone(),
                value: round2(*value),
                target: *target,
            },
            Change::Ended => EventData::SloRecovered { capability, episode, advisory: self.advisory.as_str().into() },
        }
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Durations of `SloConfig` in ms, and the ring's shape.
#[derive(Clone, Debug)]
pub struct Settings {
    pub shape: RingShape,
    pub windows: Vec<u64>,
    pub trend_window: u64,
    pub trend_span: u64,
    pub trend_min_points: usize,
    pub horizon: u64,
    pub min_samples: u64,
    pub hysteresis: f64,
    pub breach_window: u64,
    pub period: u64,
    pub rules: Vec<BurnRule>,
}

impl Settings {
    pub fn new(c: &SloConfig) -> Self {
        let ms = |d: std::time::Duration| d.as_millis().max(1) as u64;
        let slot_ms = ms(c.slot);
        let coarse_slot_ms = ms(c.coarse_slot).max(slot_ms);
        let rules = burn::rules(ms(c.period));
        // The coarse ring covers the period (the budget) and every burn window.
        let longest = rules.iter().map(|r| r.long_ms).max().unwrap_or(0).max(ms(c.period));
        Self {
            shape: RingShape {
                slot_ms,
                fine_slots: ms(c.keep).div_ceil(slot_ms) as usize,
                coarse_slot_ms,
                coarse_slots: longest.div_ceil(coarse_slot_ms) as usize,
            },
            windows: c.windows.iter().map(|d| ms(*d)).collect(),
            trend_window: ms(c.trend_window),
            trend_span: ms(c.trend_span),
            trend_min_points: c.trend_min_points,
            horizon: ms(c.horizon),
            min_samples: c.min_samples,
            hysteresis: c.hysteresis,
            breach_window: ms(c.breach_window),
            period: ms(c.period),
            rules,
        }
    }
}

/// Spacing of the trend series' points (or one slot, if slots are longer).
pub const TREND_STEP_MS: u64 = 60_000;
/// A burn rate counts only when the long window holds at least this many
/// errors' worth of budget (`BURN_MIN_BUDGET_ERRORS / error_budget` attempts):
/// a young or quiet window says nothing about a budget.
pub const BURN_MIN_BUDGET_ERRORS: f64 = 10.0;

struct CapabilityState {
    /// When this node started watching it: a window younger than its length is not judged.
    since_ms: u64,
    slo: SloSpec,
    windows: Vec<u64>,
    ring: Ring,
    /// `(time the point stands for, p95 ms)`, oldest first.
    series: VecDeque<(u64, f64)>,
    open: BTreeMap<Advisory, u64>,
}

/// One node's SLO state.
pub struct Monitor {
    settings: Settings,
    capabilities: BTreeMap<String, CapabilityState>,
}

/// One window of one capability as a node reports it: mergeable across nodes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowReport {
    pub window_ms: u64,
    pub counts: Counts,
    pub latency: Buckets,
}

/// One capability as a node reports it (`NodeSlo`), for merging.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CapabilityReport {
    pub capability: String,
    pub slo: SloSpec,
    pub windows: Vec<WindowReport>,
    /// Counts over each burn rule's windows, in `Settings::rules` order: `(long, short)`.
    pub burn: Vec<(Counts, Counts)>,
    /// Counts over the whole period (the budget) and over the last hour.
    pub period: Counts,
    pub last_hour: Counts,
    /// This node's trend (trends are not merged: each node fits what it sees).
    pub trend: Option<TrendView>,
}

impl Monitor {
    pub fn new(settings: Settings, capabilities: &[std::sync::Arc<Capability>], now_ms: u64) -> Self {
        let capabilities = capabilities
            .iter()
            .map(|c| {
                let windows = if c.slo.windows.is_empty() {
                    settings.windows.clone()
                } else {
                    c.slo.windows.iter().filter_map(|w| crate::domain::parse_window(w)).collect()
                };
                let state = CapabilityState {
                    since_ms: now_ms,
                    slo: c.slo.clone(),
                    windows,
                    ring: Ring::new(settings.shape, now_ms),
                    series: VecDeque::new(),
                    open: BTreeMap::new(),
                };
                (c.name.clone(), state)
            })
            .collect();
        Self { settings, capabilities }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// One attempt of `capability` that ended at `at_ms`. Unknown capabilities are ignored.
    pub fn record(&mut self, capability: &str, at_ms: u64, latency_ms: u64, ok: bool) {
        if let Some(c) = self.capabilities.get_mut(capability) {
            c.ring.record(at_ms, latency_ms, ok);
        }
    }

    /// Runs every detector at `now_ms`; returns what opened or ended.
    pub fn evaluate(&mut self, now_ms: u64) -> Vec<Transition> {
        let s = &self.settings;
        let mut out = Vec::new();
        for (name, c) in &mut self.capabilities {
            c.ring.roll(now_ms);
            let mut decide = |advisory: Advisory, opens: Option<Change>, ends: bool| {
                let held = c.open.contains_key(&advisory);
                let change = match (held, opens) {
                    (false, Some(change)) => {
                        c.open.insert(advisory, now_ms);
                        change
                    }
                    (true, _) if ends => {
                        c.open.remove(&advisory);
                        Change::Ended
                    }
                    _ => return,
                };
                out.push(Transition { capability: name.clone(), advisory, at_ms: now_ms, change });
            };
            let slo_ms = c.slo.p95_ms as f64;
            let relaxed = 1.0 - s.hysteresis;

            // Trend: a p95 point per step, stamped at the middle of its window
            // (so the fit is not a half-window late), once the window is full.
            let recent = c.ring.window(now_ms, s.trend_window);
            let full = now_ms >= c.since_ms + s.trend_window;
            let current = (full && recent.counts.count >= s.min_samples).then(|| recent.quantile_ms(0.95)).flatten();
            let step = TREND_STEP_MS.max(s.shape.slot_ms);
            let stamp = now_ms.saturating_sub(s.trend_window / 2);
            if let Some(p95) = current.filter(|_| c.series.back().is_none_or(|(t, _)| *t + step <= stamp)) {
                c.series.push_back((stamp, p95 as f64));
            }
            while c.series.front().is_some_and(|(t, _)| *t + s.trend_span < now_ms) {
                c.series.pop_front();
            }
            let series: Vec<(u64, f64)> = c.series.iter().copied().collect();
            // Looking one slot past the horizon (the next look is a slot away,
            // and a breach must still be announced a whole horizon ahead), at
            // the fit's upper 95 % bound (a noisy p95 series must not make a
            // real ramp look a minute later than it is).
            let ahead = s.horizon + s.shape.slot_ms;
            let fit = trend::project(&series, s.trend_min_points, now_ms, ahead, slo_ms);
            let now_p95 = current.map(|p| p as f64);
            let opens =
                fit.as_ref().filter(|f| f.projected_upper_p95_ms >= slo_ms && now_p95.is_some_and(|p| p < slo_ms));
            let ends = match (&fit, now_p95) {
                (Some(f), Some(p)) => f.projected_upper_p95_ms < slo_ms * relaxed && p < slo_ms * relaxed,
                // No traffic, or too little to fit: nothing heads for a breach.
                _ => current.is_none(),
            };
            let view = opens.map(|f| TrendView { horizon_ms: s.horizon, ..f.clone() });
            decide(Advisory::Trend, view.map(Change::Trend), ends);

            // Latency breach over the breach window.
            let breach = c.ring.window(now_ms, s.breach_window);
            let p95 = (breach.counts.count >= s.min_samples).then(|| breach.quantile_ms(0.95)).flatten();
            let breached = p95.filter(|p| *p as f64 > slo_ms).map(|p| Change::Breached {
                objective: "latency",
                window: window_name(s.breach_window),
                value: p as f64,
                target: slo_ms,
            });
            let recovered = p95.is_none_or(|p| (p as f64) < slo_ms * relaxed);
            decide(Advisory::BreachedLatency, breached, recovered);

            // Error budget: burn rates, and the period's budget.
            let budget = c.slo.error_budget;
            let enough = (BURN_MIN_BUDGET_ERRORS / budget).ceil() as u64;
            for severity in [Severity::Page, Severity::Ticket] {
                let views: Vec<BurnView> = s
                    .rules
                    .iter()
                    .filter(|r| r.severity == severity)
                    .map(|r| {
                        let long = c.ring.counts(now_ms, r.long_ms);
                        let short = c.ring.counts(now_ms, r.short_ms);
                        let mut view = burn::evaluate(r, long, short, budget);
                        view.firing &= long.count >= enough && short.count >= s.min_samples;
                        view
                    })
                    .collect();
                let firing = views.iter().find(|v| v.firing).cloned();
                let cooled = views.iter().all(|v| v.short_rate < v.factor * relaxed || v.long_rate < v.factor);
                decide(Advisory::Burn(severity), firing.map(Change::Burn), cooled);
            }
            let period = c.ring.counts(now_ms, s.period);
            let spent = consumed(period, budget);
            let exhausted = (spent >= 1.0 && period.count >= enough).then(|| Change::Breached {
                objective: "errors",
                window: window_name(s.period),
                value: period.error_ratio(),
                target: budget,
            });
            decide(Advisory::BreachedErrors, exhausted, spent < relaxed);
        }
        out
    }

    /// The advisories this node holds open: `(capability, advisory, since)`.
    pub fn open(&self) -> Vec<(String, Advisory, u64)> {
        let mut out = Vec::new();
        for (name, c) in &self.capabilities {
            out.extend(c.open.iter().map(|(a, since)| (name.clone(), *a, *since)));
        }
        out
    }

    /// The SLO of `capability`, if it is monitored.
    pub fn slo(&self, capability: &str) -> Option<&SloSpec> {
        self.capabilities.get(capability).map(|c| &c.slo)
    }

    /// This node's view of every capability at `now_ms`, mergeable with other nodes'.
    pub fn report(&self, now_ms: u64) -> Vec<CapabilityReport> {
        let s = &self.settings;
        self.capabilities
            .iter()
            .map(|(name, c)| {
                let windows = c
                    .windows
                    .iter()
                    .map(|&w| {
                        let stats = c.ring.window(now_ms, w);
                        WindowReport { window_ms: w, counts: stats.counts, latency: Buckets::of(&stats.latency) }
                    })
                    .collect();
                let burn = s
                    .rules
                    .iter()
                    .map(|r| (c.ring.counts(now_ms, r.long_ms), c.ring.counts(now_ms, r.short_ms)))
                    .collect();
                let series: Vec<(u64, f64)> = c.series.iter().copied().collect();
                let trend = trend::project(&series, s.trend_min_points, now_ms, s.horizon, c.slo.p95_ms as f64);
                CapabilityReport {
                    capability: name.clone(),
                    slo: c.slo.clone(),
                    windows,
                    burn,
                    period: c.ring.counts(now_ms, s.period),
                    last_hour: c.ring.counts(now_ms, 3_600_000),
                    trend,
                }
            })
            .collect()
    }

    /// Bytes held by every ring (the memory figure of docs/performance.md).
    pub fn memory_bytes(&self) -> usize {
        self.capabilities.values().map(|c| c.ring.memory_bytes() + c.series.capacity() * 16).sum()
    }
}

/// Share of the period's budget spent: errors over what the budget allows for the attempts seen.
pub fn consumed(period: Counts, budget: f64) -> f64 {
    if period.count == 0 || budget <= 0.0 {
        0.0
    } else {
        period.errors as f64 / (budget * period.count as f64)
    }
}

/// The merged window of several nodes' reports of one window.
pub fn merge_window<'a>(reports: impl IntoIterator<Item = &'a WindowReport>) -> WindowStats {
    let mut out = WindowStats::empty();
    for r in reports {
        out.counts.count += r.counts.count;
        out.counts.errors += r.counts.errors;
        r.latency.add_to(&mut out.latency);
    }
    out
}

//! `GET /v1/slo`: nodes' reports merged into one view. Windows merge by
//! adding histograms bucket by bucket and counts by summing, never by
//! averaging percentiles; burn rates are computed on the summed counts.

use super::burn::{self, BurnRule, BurnView};
use super::monitor::{consumed, merge_window, CapabilityReport};
use super::trend::TrendView;
use crate::domain::{window_name, SloEpisodeState, SloSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What one node's SloMonitor reports (sent between nodes as MessagePack).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeSlo {
    pub node: String,
    pub at_ms: u64,
    pub capabilities: Vec<CapabilityReport>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SloView {
    /// `cluster` or `node`.
    pub scope: String,
    /// The nodes whose reports were merged.
    pub nodes: Vec<String>,
    pub capabilities: Vec<CapabilitySlo>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CapabilitySlo {
    pub capability: String,
    pub slo: SloSpec,
    pub windows: Vec<WindowView>,
    pub burn: Vec<BurnView>,
    pub budget: BudgetView,
    /// The steepest node trend (trends are fitted per node), if any node has one.
    pub trend: Option<NodeTrend>,
    /// Open advisories, as the log records them (cluster-wide).
    pub advisories: Vec<SloEpisodeState>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowView {
    pub window: String,
    pub count: u64,
    pub errors: u64,
    pub error_ratio: f64,
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
    pub p99_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetView {
    pub period: String,
    pub error_budget: f64,
    /// Attempts and errors over the period (as far as the nodes remember it).
    pub count: u64,
    pub errors: u64,
    /// Share of the period's budget spent, and left.
    pub consumed: f64,
    pub remaining: f64,
    /// Share of the period's budget spent in the last hour.
    pub consumed_last_hour: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeTrend {
    pub node: String,
    #[serde(flatten)]
    pub trend: TrendView,
}

/// Merges `reports` (one per node) under `rules` and `period_ms`, with the
/// advisories the log holds open.
pub fn merge(
    scope: &str,
    reports: &[NodeSlo],
    rules: &[BurnRule],
    period_ms: u64,
    episodes: &[SloEpisodeState],
) -> SloView {
    let mut by_capability: BTreeMap<&str, Vec<(&str, &CapabilityReport)>> = BTreeMap::new();
    for r in reports {
        for c in &r.capabilities {
            by_capability.entry(c.capability.as_str()).or_default().push((r.node.as_str(), c));
        }
    }
    let capabilities =
        by_capability.into_iter().map(|(name, parts)| capability(name, &parts, rules, period_ms, episodes)).collect();
    let mut nodes: Vec<String> = reports.iter().map(|r| r.node.clone()).collect();
    nodes.sort();
    SloView { scope: scope.into(), nodes, capabilities }
}

fn capability(
    name: &str,
    parts: &[(&str, &CapabilityReport)],
    rules: &[BurnRule],
    period_ms: u64,
    episodes: &[SloEpisodeState],
) -> CapabilitySlo {
    let slo = parts[0].1.slo.clone();
    let mut window_lengths: Vec<u64> = parts.iter().flat_map(|(_, c)| c.windows.iter().map(|w| w.window_ms)).collect();
    window_lengths.sort_unstable();
    window_lengths.dedup();
    let windows = window_lengths
        .into_iter()
        .map(|len| {
            let merged =
                merge_window(parts.iter().flat_map(|(_, c)| c.windows.iter().filter(move |w| w.window_ms == len)));
            WindowView {
                window: window_name(len),
                count: merged.counts.count,
                errors: merged.counts.errors,
                error_ratio: merged.counts.error_ratio(),
                p50_ms: merged.quantile_ms(0.5),
                p95_ms: merged.quantile_ms(0.95),
                p99_ms: merged.quantile_ms(0.99),
            }
        })
        .collect();
    let burn = rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let (mut long, mut short) = Default::default();
            for (_, c) in parts {
                if let Some((l, s)) = c.burn.get(i) {
                    super::ring::Counts::add(&mut long, *l);
                    super::ring::Counts::add(&mut short, *s);
                }
            }
            burn::evaluate(rule, long, short, slo.error_budget)
        })
        .collect();
    let (mut period, mut hour) = (super::ring::Counts::default(), super::ring::Counts::default());
    for (_, c) in parts {
        period.add(c.period);
        hour.add(c.last_hour);
    }
    let spent = consumed(period, slo.error_budget);
    let budget = BudgetView {
        period: window_name(period_ms),
        error_budget: slo.error_budget,
        count: period.count,
        errors: period.errors,
        consumed: spent,
        remaining: 1.0 - spent,
        consumed_last_hour: if period.count == 0 {
            0.0
        } else {
            hour.errors as f64 / (slo.error_budget * period.count as f64)
        },
    };
    let trend = parts
        .iter()
        .filter_map(|(node, c)| c.trend.clone().map(|trend| NodeTrend { node: (*node).to_owned(), trend }))
        .max_by(|a, b| a.trend.slope_ms_per_min.total_cmp(&b.trend.slope_ms_per_min));
    let advisories = episodes.iter().filter(|e| e.open && e.capability == name).cloned().collect();
    CapabilitySlo { capability: name.into(), slo, windows, burn, budget, trend, advisories }
}

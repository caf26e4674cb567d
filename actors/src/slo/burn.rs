//! Error-budget burn: the SRE workbook's multi-window, multi-burn-rate alerts
//! (as Sloth and Pyrra generate them), scaled to the SLO period.
//!
//! For a 30-day period: page when the burn rate is ≥ 14.4 over 1 h and over
//! 5 m, or ≥ 6 over 6 h and over 30 m; ticket when ≥ 1 over 3 d and over 6 h.
//! A burn rate is the error ratio divided by the budget (1 = spending the
//! budget exactly over the period). For another period every window scales
//! by `period / 30 d`; the factors stay (each is a share of the budget spent
//! in the long window: 14.4 × 1 h / 30 d = 2 %).

use super::ring::Counts;
pub use crate::domain::{parse_window, window_name, SloSeverity as Severity};
use serde::{Deserialize, Serialize};

/// The period the workbook's table is written for.
pub const WORKBOOK_PERIOD_MS: u64 = 30 * 24 * 3_600_000;

/// One row of the table: burn ≥ `factor` over both windows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BurnRule {
    pub severity: Severity,
    pub factor: f64,
    pub long_ms: u64,
    pub short_ms: u64,
}

/// The workbook's rows at a 30-day period: (severity, factor, long, short) in minutes.
const TABLE: [(Severity, f64, u64, u64); 3] =
    [(Severity::Page, 14.4, 60, 5), (Severity::Page, 6.0, 360, 30), (Severity::Ticket, 1.0, 4_320, 360)];

/// The rules for an SLO period of `period_ms`.
pub fn rules(period_ms: u64) -> Vec<BurnRule> {
    let scale = |minutes: u64| ((minutes * 60_000) as u128 * period_ms as u128 / WORKBOOK_PERIOD_MS as u128) as u64;
    TABLE
        .iter()
        .map(|&(severity, factor, long, short)| BurnRule {
            severity,
            factor,
            long_ms: scale(long).max(1),
            short_ms: scale(short).max(1),
        })
        .collect()
}

/// Error ratio over budget; 0 without attempts or without a budget.
pub fn burn_rate(counts: Counts, budget: f64) -> f64 {
    if budget <= 0.0 {
        return 0.0;
    }
    counts.error_ratio() / budget
}

/// One rule evaluated (`GET /v1/slo`'s `burn`, and `slo.burn`'s figures).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BurnView {
    pub severity: Severity,
    pub factor: f64,
    pub long_window: String,
    pub short_window: String,
    pub long_rate: f64,
    pub short_rate: f64,
    pub firing: bool,
}

/// Evaluates `rule` on the counts of its two windows.
pub fn evaluate(rule: &BurnRule, long: Counts, short: Counts, budget: f64) -> BurnView {
    let long_rate = burn_rate(long, budget);
    let short_rate = burn_rate(short, budget);
    BurnView {
        severity: rule.severity,
        factor: rule.factor,
        long_window: window_name(rule.long_ms),
        short_window: window_name(rule.short_ms),
        long_rate,
        short_rate,
        firing: long_rate >= rule.factor && short_rate >= rule.factor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workbook_table_scales_with_the_period() {
        let r = rules(WORKBOOK_PERIOD_MS);
        let names: Vec<_> = r.iter().map(|r| (window_name(r.long_ms), window_name(r.short_ms))).collect();
        assert_eq!(names, [("1h".into(), "5m".into()), ("6h".into(), "30m".into()), ("3d".into(), "6h".into())]);
        let week = rules(7 * 86_400_000);
        assert_eq!(week[0].long_ms, 14 * 60_000, "1 h × 7/30");
        assert_eq!(week[2].long_ms, 7 * 86_400_000 / 10);
    }

    #[test]
    fn both_windows_must_burn() {
        let rule = rules(WORKBOOK_PERIOD_MS)[0];
        let hot = Counts { count: 1_000, errors: 150 };
        let cool = Counts { count: 1_000, errors: 10 };
        assert!(evaluate(&rule, hot, hot, 0.01).firing);
        assert!(!evaluate(&rule, hot, cool, 0.01).firing, "the short window has recovered");
        assert!(!evaluate(&rule, cool, hot, 0.01).firing, "a blip in the short window only");
    }

    #[test]
    fn window_names_round_trip() {
        for s in ["10s", "1m", "5m", "1h", "6h", "3d", "250ms", "90s"] {
            assert_eq!(window_name(parse_window(s).unwrap()), s);
        }
        assert_eq!(parse_window("5x"), None);
        assert_eq!(parse_window("0m"), None);
    }
}

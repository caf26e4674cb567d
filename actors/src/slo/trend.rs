//! The latency trend: an ordinary least-squares line through a p95 series
//! (what Prometheus's `predict_linear` fits), projected over a horizon.

use serde::{Deserialize, Serialize};

/// A straight line `value = intercept + slope · (t − t0)`, time in ms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fit {
    pub t0: f64,
    pub intercept: f64,
    /// Change of the value per ms.
    pub slope: f64,
    /// Residual standard error, points, mean time (from t0) and Σ(t − mean)².
    pub residual: f64,
    pub n: f64,
    pub mean_t: f64,
    pub sxx: f64,
}

/// One-sided 95 % normal quantile: the upper bound a trend advisory reads.
pub const UPPER_Z: f64 = 1.645;

impl Fit {
    pub fn at(&self, t_ms: u64) -> f64 {
        self.intercept + self.slope * (t_ms as f64 - self.t0)
    }

    /// The upper 95 % prediction bound of the line at `t_ms`: the fit plus
    /// what its noise allows (wider the further from the points).
    pub fn upper_at(&self, t_ms: u64) -> f64 {
        let dx = t_ms as f64 - self.t0 - self.mean_t;
        let se = self.residual * (1.0 / self.n + dx * dx / self.sxx).sqrt();
        self.at(t_ms) + UPPER_Z * se
    }
}

/// The least-squares line through `points` `(time ms, value)`; `None` with
/// fewer than two distinct times.
pub fn least_squares(points: &[(u64, f64)]) -> Option<Fit> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let t0 = points[0].0 as f64;
    let mean_t = points.iter().map(|(t, _)| *t as f64 - t0).sum::<f64>() / n;
    let mean_v = points.iter().map(|(_, v)| *v).sum::<f64>() / n;
    let (mut sxx, mut sxy) = (0.0, 0.0);
    for (t, v) in points {
        let dt = *t as f64 - t0 - mean_t;
        sxx += dt * dt;
        sxy += dt * (v - mean_v);
    }
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let intercept = mean_v - slope * mean_t;
    let sse: f64 = points
        .iter()
        .map(|(t, v)| {
            let e = v - (intercept + slope * (*t as f64 - t0));
            e * e
        })
        .sum();
    let residual = if points.len() > 2 { (sse / (n - 2.0)).sqrt() } else { 0.0 };
    Some(Fit { t0, intercept, slope, residual, n, mean_t, sxx })
}

/// What the trend says now (`GET /v1/slo`'s `trend`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrendView {
    /// Points in the fit.
    pub points: usize,
    pub slope_ms_per_min: f64,
    /// The fitted p95 now.
    pub p95_ms: f64,
    /// The fitted p95 at now + horizon.
    pub projected_p95_ms: f64,
    /// The upper 95 % prediction bound there (what the advisory compares with the SLO).
    pub projected_upper_p95_ms: f64,
    pub horizon_ms: u64,
    /// When the line crosses the SLO's p95, if it rises and has not crossed yet.
    pub breach_in_ms: Option<u64>,
}

/// Fits `series` and projects it `horizon_ms` past `now_ms`; `None` with
/// fewer than `min_points` points.
pub fn project(
    series: &[(u64, f64)],
    min_points: usize,
    now_ms: u64,
    horizon_ms: u64,
    slo_ms: f64,
) -> Option<TrendView> {
    if series.len() < min_points.max(2) {
        return None;
    }
    let fit = least_squares(series)?;
    let now = fit.at(now_ms);
    let breach_in_ms = (fit.slope > 0.0 && now < slo_ms).then(|| ((slo_ms - now) / fit.slope).ceil() as u64);
    Some(TrendView {
        points: series.len(),
        slope_ms_per_min: fit.slope * 60_000.0,
        p95_ms: now,
        projected_p95_ms: fit.at(now_ms + horizon_ms),
        projected_upper_p95_ms: fit.upper_at(now_ms + horizon_ms),
        horizon_ms,
        breach_in_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_straight_line_is_fitted_exactly() {
        let points: Vec<(u64, f64)> = (0..10).map(|i| (1_000 + i * 60_000, 100.0 + 5.0 * i as f64)).collect();
        let fit = least_squares(&points).unwrap();
        assert!((fit.slope * 60_000.0 - 5.0).abs() < 1e-9);
        assert!((fit.at(1_000 + 20 * 60_000) - 200.0).abs() < 1e-6);
    }

    #[test]
    fn projection_names_the_time_to_breach() {
        let points: Vec<(u64, f64)> = (0..15).map(|i| (i * 60_000, 100.0 + 10.0 * i as f64)).collect();
        let now = 14 * 60_000;
        let view = project(&points, 5, now, 600_000, 400.0).unwrap();
        assert!((view.p95_ms - 240.0).abs() < 1e-6);
        assert!((view.projected_p95_ms - 340.0).abs() < 1e-6);
        assert_eq!(view.breach_in_ms, Some(16 * 60_000));
        assert!(project(&points[..4], 5, now, 600_000, 400.0).is_none(), "too few points");
        let flat: Vec<(u64, f64)> = (0..15).map(|i| (i * 60_000, 100.0)).collect();
        assert_eq!(project(&flat, 5, now, 600_000, 400.0).unwrap().breach_in_ms, None);
    }
}

//! The SLO detectors on replayed hours: `Monitor` is pure and takes the
//! time with every call, so these scenarios run simulated days in seconds,
//! deterministically (seeded noise, no clock, no sleep).

use std::sync::Arc;
use warden_actors::breaker::{Breaker, BreakerState};
use warden_actors::config::SloConfig;
use warden_actors::domain::{BreakerSpec, Capability, SloSpec, Tier};
use warden_actors::slo::monitor::{Advisory, Change, Monitor, Settings, Transition};

const MIN: u64 = 60_000;
const SLO_P95_MS: u64 = 800;
/// The evaluation step: one slot.
const SLOT: u64 = 10_000;
/// z of the 95th percentile of a normal distribution.
const Z95: f64 = 1.644_853_6;
const SIGMA: f64 = 0.25;

fn capability() -> Arc<Capability> {
    let mut c = Capability::new("tool", Tier::Observe);
    c.slo = SloSpec { p95_ms: SLO_P95_MS, error_budget: 0.01, windows: Vec::new() };
    Arc::new(c)
}

fn monitor() -> Monitor {
    Monitor::new(Settings::new(&SloConfig::default()), &[capability()], 0)
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = rng.f64().max(f64::MIN_POSITIVE);
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A log-normal latency whose distribution has the given p95.
fn latency(rng: &mut fastrand::Rng, p95_ms: f64) -> u64 {
    let median = p95_ms / (Z95 * SIGMA).exp();
    (median * (SIGMA * normal(rng)).exp()).round() as u64
}

/// Feeds `per_slot` attempts per slot from `from` to `to` (ms), evaluating at
/// every slot boundary; `p95_at` and `fail_at` give the distribution at a time.
/// Stops early when `stop` says so. Returns every transition.
fn replay(
    m: &mut Monitor,
    rng: &mut fastrand::Rng,
    (from, to): (u64, u64),
    per_slot: u64,
    p95_at: impl Fn(u64) -> f64,
    fail_at: impl Fn(u64) -> f64,
    mut stop: impl FnMut(u64, bool) -> bool,
) -> Vec<Transition> {
    let mut out = Vec::new();
    let mut slot = from;
    while slot < to {
        for i in 0..per_slot {
            let at = slot + i * SLOT / per_slot;
            let ok = rng.f64() >= fail_at(at);
            m.record("tool", at, latency(rng, p95_at(at)), ok);
            if stop(at, ok) {
                return out;
            }
        }
        slot += SLOT;
        out.extend(m.evaluate(slot));
    }
    out
}

fn opened(ts: &[Transition], advisory: impl Fn(Advisory) -> bool) -> Option<&Transition> {
    ts.iter().find(|t| t.opens() && advisory(t.advisory))
}

#[test]
fn a_latency_ramp_is_announced_at_least_ten_minutes_before_it_breaches() {
    let base = 0.6 * SLO_P95_MS as f64;
    let start = 60 * MIN;
    // p95 growth in ms per minute: breaches 80, 53, 40 and 32 minutes into
    // the ramp. (A ramp that breaches sooner than span + horizon after it
    // starts is announced later: the 15-minute fit still sees the flat part.)
    for (slope, seed) in [4.0, 6.0, 8.0, 10.0].into_iter().flat_map(|s| (1..=5).map(move |seed| (s, seed))) {
        let mut m = monitor();
        let mut rng = fastrand::Rng::with_seed(seed);
        let p95_at = |t: u64| base + slope * t.saturating_sub(start) as f64 / MIN as f64;
        let breach_at = start + ((SLO_P95_MS as f64 - base) / slope * MIN as f64) as u64;
        let ts = replay(&mut m, &mut rng, (0, breach_at + 5 * MIN), 100, p95_at, |_| 0.0, |_, _| false);
        let trend = opened(&ts, |a| a == Advisory::Trend).unwrap_or_else(|| panic!("slope {slope}: no trend advisory"));
        let lead = breach_at as i64 - trend.at_ms as i64;
        println!("slope {slope} ms/min seed {seed}: slo.trend {:.1} min before the breach", lead as f64 / MIN as f64);
        assert!(trend.at_ms > start, "slope {slope}: fired before the ramp began");
        assert!(lead >= 10 * MIN as i64, "slope {slope}: slo.trend only {lead} ms before the breach");
        let Change::Trend(view) = &trend.change else { panic!("a trend opens with its view") };
        assert!(view.p95_ms < SLO_P95_MS as f64 && view.breach_in_ms.is_some(), "{view:?}");
        // The breach itself is seen around T (the 5m p95 has its own noise).
        let breached = opened(&ts, |a| a == Advisory::BreachedLatency).expect("the breach is seen").at_ms;
        assert!(breached.abs_diff(breach_at) <= 5 * MIN, "slope {slope}: breach seen at {breached}, T = {breach_at}");
        assert_eq!(ts.iter().filter(|t| t.advisory == Advisory::Trend && t.opens()).count(), 1, "one open advisory");
    }
}

#[test]
fn a_stationary_day_raises_no_advisory() {
    let mut m = monitor();
    let mut rng = fastrand::Rng::with_seed(24);
    let p95 = 0.6 * SLO_P95_MS as f64;
    let ts = replay(&mut m, &mut rng, (0, 24 * 60 * MIN), 20, |_| p95, |_| 0.002, |_, _| false);
    assert!(ts.is_empty(), "advisories on a stationary day: {ts:?}");
    let report = &m.report(24 * 60 * MIN - 1)[0];
    let hour = report.windows.iter().find(|w| w.window_ms == 60 * MIN).unwrap();
    assert_eq!(hour.counts.count, 360 * 20, "the hour window holds an hour");
    let ratio = report.period.error_ratio();
    assert!((0.001..0.003).contains(&ratio), "the day's error ratio is {ratio}");
}

#[test]
fn error_budget_burn_is_announced_before_the_breaker_opens() {
    let p95 = 0.6 * SLO_P95_MS as f64;
    let mut runs = 0;
    // Failure-rate growth per minute after an hour at 0.2 %.
    for slope in [0.005, 0.01, 0.02, 0.05] {
        for seed in 1..=10 {
            let mut m = monitor();
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut breaker = Breaker::new(BreakerSpec::default());
            let start = 60 * MIN;
            let fail_at = |t: u64| 0.002 + slope * t.saturating_sub(start) as f64 / MIN as f64;
            let mut opened_at = None;
            let stop = |at: u64, ok: bool| {
                if breaker.record(ok, at) == Some(BreakerState::Open) {
                    opened_at = Some(at);
                }
                opened_at.is_some()
            };
            let ts = replay(&mut m, &mut rng, (0, 6 * 60 * MIN), 10, |_| p95, fail_at, stop);
            let opened_at = opened_at.unwrap_or_else(|| panic!("slope {slope} seed {seed}: the breaker never opened"));
            let burn = opened(&ts, |a| matches!(a, Advisory::Burn(_))).unwrap_or_else(|| {
                panic!("slope {slope} seed {seed}: breaker open at {opened_at} ms, no slo.burn before")
            });
            assert!(burn.at_ms <= opened_at, "slope {slope} seed {seed}");
            runs += 1;
        }
    }
    assert_eq!(runs, 40);
}

#[test]
fn memory_of_a_hundred_capabilities_with_an_hour_of_slots() {
    let caps: Vec<Arc<Capability>> = (0..100)
        .map(|i| {
            let mut c = (*capability()).clone();
            c.name = format!("tool{i}");
            Arc::new(c)
        })
        .collect();
    let mut m = Monitor::new(Settings::new(&SloConfig::default()), &caps, 0);
    let mut rng = fastrand::Rng::with_seed(100);
    // An hour, every slot of every capability holding 10 attempts of a wide distribution.
    for slot in 0..360u64 {
        for c in 0..100 {
            for i in 0..10 {
                m.record(&format!("tool{c}"), slot * SLOT + i, latency(&mut rng, 480.0), true);
            }
        }
        m.evaluate((slot + 1) * SLOT);
    }
    let bytes = m.memory_bytes();
    println!("100 capabilities × 1 h of 10 s slots: {} KiB ({} B per capability)", bytes / 1024, bytes / 100);
    assert!(bytes < 64 << 20, "{bytes} bytes");
}

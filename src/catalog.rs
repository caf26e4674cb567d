//! The built-in demo catalog: one capability per tier, so a node started with
//! no configuration can be tried at once.

use warden_actors::domain::{BreakerSpec, Capability, ExecutorSpec, SloSpec, Tier};

pub fn demo_catalog() -> Vec<Capability> {
    let sim = |latency_ms, fail_rate| ExecutorSpec::Sim {
        latency_ms,
        jitter_ms: latency_ms / 4,
        fail_rate,
        ramp: Default::default(),
    };
    let cap = |name: &str, tier, executor| Capability { executor, ..Capability::new(name, tier) };
    let mut payments = cap("payments.send", Tier::Reversible, sim(40, 0.02));
    payments.amount_limit = Some(500.0);
    let mut flaky = cap("crm.update", Tier::Reversible, sim(30, 0.3));
    flaky.breaker = BreakerSpec { failure_threshold: 8, open_ms: 5_000 };
    flaky.slo = SloSpec { p95_ms: 200, error_budget: 0.05, windows: Vec::new() };
    vec![
        cap("search.web", Tier::Observe, sim(15, 0.0)),
        cap("notes.write", Tier::Reversible, sim(10, 0.0)),
        payments,
        flaky,
        cap("email.send", Tier::Confirm, sim(25, 0.0)),
        cap("db.drop_table", Tier::Forbidden, sim(5, 0.0)),
    ]
}

//! Native == Rego: the bundle's Rego and the native 4-tier rules give the
//! same decision and tier on the exhaustive matrix and on 10,000 generated
//! inputs (a fixed seed: every run checks the same inputs), and fire the
//! same rules (as many reasons).

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use warden_actors::authz::{matrix, Bundle, NativePolicy, PolicyEngine, PolicyInput, RegoPolicy, DEFAULT_EVAL_TIMEOUT};
use warden_actors::domain::{Capability, Tier, Trust};

/// Generated inputs checked per run.
const GENERATED_CASES: u32 = 10_000;
/// The seed of the generated inputs (32 bytes for ChaCha).
const SEED: [u8; 32] = *b"warden-policy-equivalence-seed!!";

fn rego() -> RegoPolicy {
    RegoPolicy::compile(&Bundle::embedded(), DEFAULT_EVAL_TIMEOUT).expect("the embedded bundle compiles")
}

fn agree(rego: &RegoPolicy, input: &PolicyInput) -> Result<(), String> {
    let (n, r) = (NativePolicy.decide(input), rego.decide(input));
    if (n.decision, n.tier, n.reasons.len()) != (r.decision, r.tier, r.reasons.len()) {
        return Err(format!("input {}\nnative {n:?}\nrego   {r:?}", input.document()));
    }
    Ok(())
}

#[test]
fn native_and_rego_agree_on_the_exhaustive_matrix() {
    let rego = rego();
    let inputs = matrix::exhaustive();
    assert_eq!(inputs.len(), 128);
    let disagreements: Vec<String> = inputs.iter().filter_map(|i| agree(&rego, i).err()).collect();
    assert!(disagreements.is_empty(), "{} disagreements:\n{}", disagreements.len(), disagreements.join("\n"));
}

/// Any JSON number a client may send, weighted towards the limit's neighbourhood.
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-1_000i64..1_000).prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        (-1e3f64..1e3).prop_map(|x| json!(x)),
        any::<f64>().prop_filter("JSON has no NaN or infinity", |x| x.is_finite()).prop_map(|x| json!(x)),
        Just(json!(1e308)),
        Just(json!(-1e308)),
        Just(json!(0.0)),
    ]
}

/// `args.amount`: absent, a number, or something else entirely.
fn amount() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        3 => number().prop_map(Some),
        1 => Just(None),
        1 => prop_oneof![
            Just(json!("100")),
            Just(json!(null)),
            Just(json!(true)),
            Just(json!([600])),
            Just(json!({"value": 600})),
        ]
        .prop_map(Some),
    ]
}

fn limit() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        1 => Just(None),
        2 => (0u32..1_000).prop_map(|n| Some(f64::from(n))),
        1 => (-1e3f64..1e3).prop_map(Some),
        1 => any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(Some),
    ]
}

fn input() -> impl Strategy<Value = PolicyInput> {
    (0u8..=3, limit(), amount(), any::<bool>(), proptest::collection::btree_map("[a-z_]{1,8}", number(), 0..3))
        .prop_map(|(level, limit, amount, low, extra)| {
            let mut cap = Capability::new("generated.tool", Tier::from_level(level));
            cap.amount_limit = limit;
            // Unknown args are ignored by both engines.
            let mut args: Map<String, Value> = extra.into_iter().filter(|(k, _)| k != "amount").collect();
            if let Some(a) = amount {
                args.insert("amount".into(), a);
            }
            let trust = if low { Trust::Low } else { Trust::Normal };
            PolicyInput::new(Arc::new(cap), Value::Object(args), trust)
        })
}

#[test]
fn native_and_rego_agree_on_10000_generated_inputs() {
    let rego = rego();
    let config = Config { cases: GENERATED_CASES, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &SEED));
    let checked = std::cell::Cell::new(0u32);
    let result = runner.run(&input(), |input| {
        checked.set(checked.get() + 1);
        agree(&rego, &input).map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("native and Rego disagree: {e}");
    }
    assert!(checked.get() >= GENERATED_CASES, "only {} inputs checked", checked.get());
}

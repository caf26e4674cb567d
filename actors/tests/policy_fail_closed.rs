//! A Rego policy that cannot decide denies: no result, an evaluation error,
//! a result of the wrong shape, an evaluation over the time limit. A bundle
//! that does not compile is refused before it can decide anything, with
//! `file:line:col` of the problem.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use warden_actors::authz::{
    Bundle, BundleSource, PolicyError, RegoPolicy, DEFAULT_EVAL_TIMEOUT, POLICY_ERROR, POLICY_TIMEOUT,
};
use warden_actors::domain::{Decision, Tier, Verdict};

fn bundle(rego: &str) -> Bundle {
    let files = BTreeMap::from([("warden/authz.rego".to_owned(), rego.to_owned())]);
    Bundle::from_files(files, BundleSource::Embedded).unwrap()
}

fn compile(rego: &str) -> RegoPolicy {
    RegoPolicy::compile(&bundle(rego), DEFAULT_EVAL_TIMEOUT).expect("compiles")
}

fn input() -> Value {
    json!({"capability": {"name": "t", "tier": 0}, "args": {}, "session": {"trust": "normal"}})
}

fn assert_denied(d: &Decision, code: &str) {
    assert_eq!(d.decision, Verdict::Deny, "{d:?}");
    assert_eq!(d.tier, Tier::Forbidden, "{d:?}");
    assert_eq!(d.reasons.first().map(String::as_str), Some(code), "{d:?}");
    assert_eq!(d.reasons.len(), 2, "the code, then what happened: {d:?}");
}

#[test]
fn an_undefined_decision_denies() {
    let policy = compile(
        "package warden.authz\nimport rego.v1\n\
         decision := {\"decision\": \"allow\", \"tier\": 0, \"reasons\": []} if input.capability.name == \"other\"\n",
    );
    let d = policy.decide_document(input());
    assert_denied(&d, POLICY_ERROR);
    assert!(d.reasons[1].contains("undefined"), "{d:?}");
    // The real bundle has no decision for a tier it does not know, and denies too.
    let real = RegoPolicy::compile(&Bundle::embedded(), DEFAULT_EVAL_TIMEOUT).unwrap();
    assert_denied(&real.decide_document(json!({"capability": {"name": "t", "tier": 7}, "args": {}})), POLICY_ERROR);
}

#[test]
fn an_evaluation_error_denies() {
    // Two values for one complete rule: an evaluation error in OPA and regorus alike.
    let policy = compile(
        "package warden.authz\nimport rego.v1\n\
         decision := {\"decision\": \"allow\", \"tier\": 0, \"reasons\": []} if input.args.a == 1\n\
         decision := {\"decision\": \"deny\", \"tier\": 3, \"reasons\": []} if input.args.b == 1\n",
    );
    let mut doc = input();
    doc["args"] = json!({"a": 1});
    assert_eq!(policy.decide_document(doc.clone()).decision, Verdict::Allow, "one value is fine");
    doc["args"] = json!({"a": 1, "b": 1});
    assert_denied(&policy.decide_document(doc), POLICY_ERROR);
}

#[test]
fn a_result_of_the_wrong_shape_denies() {
    for decision in [
        r#""allow""#,
        r#"{"decision": "maybe", "tier": 0, "reasons": []}"#,
        r#"{"decision": "allow", "tier": 9, "reasons": []}"#,
        r#"{"decision": "allow", "tier": 0.5, "reasons": []}"#,
        r#"{"decision": "allow", "tier": 0}"#,
        r#"{"decision": "allow", "tier": 0, "reasons": [1]}"#,
        r#"{"decision": "allow", "tier": 0, "reasons": [], "why": "extra"}"#,
    ] {
        let policy = compile(&format!("package warden.authz\nimport rego.v1\ndecision := {decision}\n"));
        let d = policy.decide_document(input());
        assert_denied(&d, POLICY_ERROR);
        assert!(d.reasons[1].contains("wrong shape"), "{decision}: {d:?}");
    }
}

#[test]
fn an_evaluation_over_the_time_limit_denies() {
    // Four million iterations: far beyond 10 ms, however fast the machine.
    let slow = "package warden.authz\nimport rego.v1\n\
                n := count([1 | some i in numbers.range(1, 2000); some j in numbers.range(1, 2000)])\n\
                decision := {\"decision\": \"allow\", \"tier\": 0, \"reasons\": [sprintf(\"%d\", [n])]}\n";
    let policy = RegoPolicy::compile(&bundle(slow), Duration::from_millis(10)).unwrap();
    let d = policy.decide_document(input());
    assert_denied(&d, POLICY_TIMEOUT);
    // The engine stays usable: the next decision is judged on its own time.
    assert_denied(&policy.decide_document(input()), POLICY_TIMEOUT);
}

#[test]
fn rego_that_does_not_compile_is_refused_with_its_location() {
    let err =
        RegoPolicy::compile(&bundle("package warden.authz\nimport rego.v1\n\ndecision := {\n"), DEFAULT_EVAL_TIMEOUT)
            .err()
            .expect("refused");
    let PolicyError::Compile(message) = &err else { panic!("{err:?}") };
    assert!(message.starts_with("warden/authz.rego:"), "{message}");
    let location: Vec<&str> = message.lines().next().unwrap().splitn(4, ':').collect();
    assert!(location[1].parse::<u32>().is_ok() && location[2].parse::<u32>().is_ok(), "file:line:col: {message}");
}

#[test]
fn a_bundle_without_the_decision_rule_is_refused() {
    let err = RegoPolicy::compile(&bundle("package warden.other\nimport rego.v1\nx := 1\n"), DEFAULT_EVAL_TIMEOUT);
    assert!(matches!(err, Err(PolicyError::Compile(_))), "{:?}", err.err());
}

#[test]
fn decisions_run_in_parallel_on_one_compiled_policy() {
    let policy = Arc::new(RegoPolicy::compile(&Bundle::embedded(), DEFAULT_EVAL_TIMEOUT).unwrap());
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let policy = policy.clone();
            std::thread::spawn(move || {
                (0..200)
                    .map(|i| {
                        let tier = (t + i) % 4;
                        let doc = json!({"capability": {"name": "t", "tier": tier}, "args": {}});
                        (tier, policy.decide_document(doc))
                    })
                    .filter(|(tier, d)| d.tier as u8 != *tier || d.reasons.len() != 1)
                    .map(|(tier, d)| format!("tier {tier}: {d:?}"))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for t in threads {
        let wrong = t.join().unwrap();
        assert!(wrong.is_empty(), "{} wrong decisions under concurrency, e.g. {}", wrong.len(), wrong[0]);
    }
}

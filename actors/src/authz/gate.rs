//! The promotion gate: what a bundle must pass before it may become the
//! active policy — on an operator's machine (`warden policy promote`) and on
//! the node that receives a push (`PUT /v1/policies`), the same code:
//!
//! 1. every module compiles (problems as `file:line:col: message`);
//! 2. the bundle's Rego unit tests all pass (and there is at least one);
//! 3. every line of `golden/decisions.jsonl` gets its expected decision.
//!
//! `diff` is the review aid: what changes between two policies over the
//! exhaustive input matrix.

use super::{matrix, suite, Bundle, PolicyEngine, PolicyError, RegoPolicy, GOLDEN_PATH};
use crate::domain::Decision;
use std::time::Duration;

/// A bundle that passed the gate, compiled, with what it passed.
pub struct Passed {
    pub policy: RegoPolicy,
    pub tests: usize,
    pub golden: usize,
}

/// Runs the gate; on refusal, every failure found (compilation problems
/// stop it before the tests, which need a compiled bundle).
pub fn check(bundle: &Bundle, eval_timeout: Duration) -> Result<Passed, Vec<String>> {
    let policy = RegoPolicy::compile(bundle, eval_timeout).map_err(|e| match e {
        // One `file:line:col: message` (and its excerpt) per problem.
        PolicyError::Compile(problems) => vec![problems],
        other => vec![other.to_string()],
    })?;
    let mut failures = Vec::new();
    let tests = match suite::run(bundle, false) {
        Ok(report) => {
            for o in &report.outcomes {
                match &o.result {
                    suite::TestResult::Pass => {}
                    suite::TestResult::Fail => failures.push(format!("test {}: FAIL", o.name)),
                    suite::TestResult::Error(e) => failures.push(format!("test {}: ERROR {e}", o.name)),
                }
            }
            if report.outcomes.is_empty() {
                failures.push("the bundle has no Rego unit tests (test_* rules)".to_owned());
            }
            report.outcomes.len()
        }
        Err(e) => {
            failures.push(e.to_string());
            0
        }
    };
    let golden = match bundle.golden().map(matrix::parse_golden) {
        None => {
            failures.push(format!("the bundle has no {GOLDEN_PATH}"));
            0
        }
        Some(Err(e)) => {
            failures.push(e.to_string());
            0
        }
        Some(Ok(cases)) => {
            for (i, case) in cases.iter().enumerate() {
                let d = policy.decide_document(case.input.clone());
                if (d.decision, d.tier) != (case.expected.decision, case.expected.tier) {
                    failures.push(format!(
                        "{GOLDEN_PATH}:{}: expected {}, got {} ({})",
                        i + 1,
                        verdict(case.expected.decision, case.expected.tier),
                        verdict(d.decision, d.tier),
                        d.reasons.join("; ")
                    ));
                }
            }
            cases.len()
        }
    };
    if failures.is_empty() {
        Ok(Passed { policy, tests, golden })
    } else {
        Err(failures)
    }
}

fn verdict(v: crate::domain::Verdict, t: crate::domain::Tier) -> String {
    let v = serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    format!("{v} (tier {})", t.level())
}

/// One input of the matrix the two policies decide differently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The input, named (`matrix.tier1.limited, amount 600 (above), normal trust`).
    pub input: String,
    pub before: Decision,
    pub after: Decision,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (b, a) = (&self.before, &self.after);
        write!(f, "{}: {} → {}", self.input, verdict(b.decision, b.tier), verdict(a.decision, a.tier))
    }
}

/// The matrix inputs whose decision or tier differ between `before` and `after`.
pub fn diff(before: &dyn PolicyEngine, after: &dyn PolicyEngine) -> Vec<Change> {
    matrix::exhaustive_named()
        .into_iter()
        .filter_map(|(name, input)| {
            let (b, a) = (before.decide(&input), after.decide(&input));
            ((b.decision, b.tier) != (a.decision, a.tier)).then_some(Change { input: name, before: b, after: a })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::{BundleSource, DEFAULT_EVAL_TIMEOUT};

    fn with(path: &str, edit: impl FnOnce(&str) -> String) -> Bundle {
        let mut files = Bundle::embedded().files().clone();
        let text = edit(&files[path]);
        files.insert(path.to_owned(), text);
        Bundle::from_files(files, BundleSource::Embedded).unwrap()
    }

    #[test]
    fn the_repository_bundle_passes() {
        let passed = check(&Bundle::embedded(), DEFAULT_EVAL_TIMEOUT).unwrap_or_else(|f| panic!("{f:#?}"));
        assert!(passed.tests >= 20 && passed.golden == 128, "{} tests, {} golden", passed.tests, passed.golden);
    }

    #[test]
    fn each_step_refuses_with_its_reason() {
        let broken = with("warden/authz.rego", |t| format!("{t}\nbroken := {{\n"));
        let failures = check(&broken, DEFAULT_EVAL_TIMEOUT).err().expect("refused");
        assert!(failures[0].starts_with("warden/authz.rego:"), "{failures:?}");

        let failing_test = with("warden/authz_test.rego", |t| format!("{t}\ntest_never if {{ false }}\n"));
        let failures = check(&failing_test, DEFAULT_EVAL_TIMEOUT).err().expect("refused");
        assert_eq!(failures, ["test data.warden.authz_test.test_never: FAIL"], "{failures:?}");

        let golden = with(GOLDEN_PATH, |t| {
            t.replacen(r#""expected":{"decision":"allow","tier":0}"#, r#""expected":{"decision":"deny","tier":3}"#, 1)
        });
        let failures = check(&golden, DEFAULT_EVAL_TIMEOUT).err().expect("refused");
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0].starts_with("golden/decisions.jsonl:1: expected deny (tier 3), got allow (tier 0)"),
            "{failures:?}"
        );
    }
}

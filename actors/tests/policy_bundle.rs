//! The repository's policy bundle (`policies/`): its Rego unit tests pass
//! (the same code as `warden policy test`), its golden decisions are the
//! exhaustive matrix decided by the native rules, and the Rego gives every
//! one of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use warden_actors::authz::matrix::{golden_text, parse_golden};
use warden_actors::authz::suite::{self, TestResult};
use warden_actors::authz::{Bundle, BundleSource, NativePolicy, RegoPolicy, DEFAULT_EVAL_TIMEOUT, GOLDEN_PATH};

fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

fn bundle() -> Bundle {
    Bundle::load_dir(&policies_dir()).expect("policies/ loads")
}

#[test]
fn the_bundle_rego_unit_tests_pass_with_full_coverage_of_the_rules() {
    let report = suite::run(&bundle(), true).unwrap();
    for line in report.lines() {
        println!("{line}");
    }
    assert!(report.outcomes.len() >= 20, "only {} tests", report.outcomes.len());
    assert!(report.ok(), "failing Rego tests:\n{}", report.lines().join("\n"));
    let coverage = report.coverage.expect("asked for coverage");
    let authz = coverage.iter().find(|f| f.path == "warden/authz.rego").expect("authz.rego is covered");
    assert!(authz.not_covered.is_empty(), "authz.rego lines no test runs: {:?}", authz.not_covered);
}

#[test]
fn a_wrong_expectation_fails_its_test_and_the_suite() {
    let mut files: BTreeMap<String, String> = bundle().files().clone();
    let tests = files.get_mut("warden/authz_test.rego").unwrap();
    let broken = tests.replace(
        "decide(cap(2), {}, \"normal\").decision == \"confirm\"",
        "decide(cap(2), {}, \"normal\").decision == \"allow\"",
    );
    assert_ne!(*tests, broken, "the test to break is still there");
    *tests = broken;
    let report = suite::run(&Bundle::from_files(files, BundleSource::Embedded).unwrap(), false).unwrap();
    let failed: Vec<_> = report.outcomes.iter().filter(|o| o.result != TestResult::Pass).collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].name, "data.warden.authz_test.test_tier_2_asks_for_confirmation");
    assert_eq!(failed[0].result, TestResult::Fail);
    assert!(!report.ok());
    assert!(report.lines().iter().any(|l| l.starts_with("FAIL: ")));
}

/// The committed golden file is exactly what the matrix generates; run with
/// `WARDEN_BLESS=1` to rewrite it after a deliberate change of the rules.
#[test]
fn the_golden_file_is_the_exhaustive_matrix_decided_by_the_native_rules() {
    let generated = golden_text(&NativePolicy);
    let path = policies_dir().join(GOLDEN_PATH);
    if std::env::var_os("WARDEN_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap();
    assert_eq!(parse_golden(&committed).unwrap().len(), 128);
    assert!(committed == generated, "{GOLDEN_PATH} is stale: rerun this test with WARDEN_BLESS=1 and review the diff");
}

#[test]
fn the_rego_policy_gives_every_golden_decision() {
    let bundle = bundle();
    let rego = RegoPolicy::compile(&bundle, DEFAULT_EVAL_TIMEOUT).unwrap();
    let cases = parse_golden(bundle.golden().expect("the bundle has golden decisions")).unwrap();
    assert_eq!(cases.len(), 128);
    for case in cases {
        let d = rego.decide_document(case.input.clone());
        assert_eq!((d.decision, d.tier), (case.expected.decision, case.expected.tier), "input {}", case.input);
        assert_eq!(d.policy_hash, bundle.hash());
    }
}

//! A bundle's Rego unit tests, run the way `opa test` runs them: every rule
//! named `test_*` in every module is evaluated with no input; `true` passes,
//! anything else fails, an evaluation error is an error. `warden policy
//! test` prints the outcome; `actors/tests/policy_bundle.rs` runs the same
//! code under `cargo nextest run`.

use super::rego::load_engine;
use super::{Bundle, PolicyError};
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::Value;
use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

/// Longest one unit test may run.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TestResult {
    Pass,
    /// The rule was undefined or not `true`.
    Fail,
    Error(String),
}

#[derive(Clone, Debug)]
pub struct TestOutcome {
    /// `data.<package>.<rule>`.
    pub name: String,
    pub result: TestResult,
    pub elapsed: Duration,
}

/// Lines of one module the tests evaluated, and those they did not.
#[derive(Clone, Debug)]
pub struct FileCoverage {
    pub path: String,
    pub covered: usize,
    pub not_covered: Vec<u32>,
}

impl FileCoverage {
    pub fn percent(&self) -> f64 {
        let total = self.covered + self.not_covered.len();
        if total == 0 {
            100.0
        } else {
            100.0 * self.covered as f64 / total as f64
        }
    }
}

#[derive(Clone, Debug)]
pub struct SuiteReport {
    pub outcomes: Vec<TestOutcome>,
    pub coverage: Option<Vec<FileCoverage>>,
}

impl SuiteReport {
    pub fn passed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.result == TestResult::Pass).count()
    }

    /// Every test passed (and there is at least one).
    pub fn ok(&self) -> bool {
        !self.outcomes.is_empty() && self.passed() == self.outcomes.len()
    }

    /// The report in `opa test`'s words: one line per test, then the tally.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .outcomes
            .iter()
            .map(|o| match &o.result {
                TestResult::Pass => format!("{}: PASS ({:?})", o.name, o.elapsed),
                TestResult::Fail => format!("{}: FAIL ({:?})", o.name, o.elapsed),
                TestResult::Error(e) => format!("{}: ERROR ({:?})\n  {e}", o.name, o.elapsed),
            })
            .collect();
        lines.push("-".repeat(80));
        let verdict = if self.ok() { "PASS" } else { "FAIL" };
        lines.push(format!("{verdict}: {}/{}", self.passed(), self.outcomes.len()));
        for file in self.coverage.iter().flatten() {
            let missing = if file.not_covered.is_empty() {
                String::new()
            } else {
                let lines: Vec<String> = file.not_covered.iter().map(u32::to_string).collect();
                format!(" (not covered: lines {})", lines.join(", "))
            };
            lines.push(format!("coverage: {} {:.1}%{missing}", file.path, file.percent()));
        }
        lines
    }
}

/// The test rules of a module: its package and every distinct `test_*` rule
/// defined at the start of a line.
fn tests_of(module: &str) -> Option<(String, Vec<String>)> {
    let package = module.lines().find_map(|l| l.trim().strip_prefix("package "))?.trim().to_owned();
    let mut seen = BTreeSet::new();
    let mut names = Vec::new();
    for line in module.lines() {
        if !line.starts_with("test_") {
            continue;
        }
        let name: String = line.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if seen.insert(name.clone()) {
            names.push(name);
        }
    }
    Some((package, names))
}

/// Runs every test of `bundle`; with `coverage`, also reports which lines ran.
pub fn run(bundle: &Bundle, coverage: bool) -> Result<SuiteReport, PolicyError> {
    let mut engine = load_engine(bundle)?;
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit: TEST_TIMEOUT,
        check_interval: NonZeroU32::new(64).expect("not zero"),
    });
    engine.set_enable_coverage(coverage);
    let mut outcomes = Vec::new();
    for (_, module) in bundle.modules() {
        let Some((package, names)) = tests_of(module) else { continue };
        for name in names {
            let rule = format!("data.{package}.{name}");
            let started = Instant::now();
            let result = match engine.eval_rule(rule.clone()) {
                Ok(Value::Bool(true)) => TestResult::Pass,
                Ok(_) => TestResult::Fail,
                Err(e) => TestResult::Error(e.to_string()),
            };
            outcomes.push(TestOutcome { name: rule, result, elapsed: started.elapsed() });
        }
    }
    let coverage = if coverage {
        let report = engine.get_coverage_report().map_err(|e| PolicyError::Compile(e.to_string()))?;
        Some(
            report
                .files
                .into_iter()
                .map(|f| FileCoverage {
                    path: f.path,
                    covered: f.covered.len(),
                    not_covered: f.not_covered.into_iter().collect(),
                })
                .collect(),
        )
    } else {
        None
    };
    Ok(SuiteReport { outcomes, coverage })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rules_are_found_by_name_once_each() {
        let module = "package a.b_test\n\nimport rego.v1\n\ntest_one if { true }\ntest_one if { 1 == 1 }\n\
                      helper_test_x := 1\ntest_two if {\n  true\n}\n";
        let (package, names) = tests_of(module).unwrap();
        assert_eq!(package, "a.b_test");
        assert_eq!(names, ["test_one", "test_two"]);
    }
}

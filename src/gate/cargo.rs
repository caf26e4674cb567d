//! The gates proven by the repository's own tests: `cargo` and `cargo
//! nextest` run in the source tree, and what their output says.

use super::Outcome;
use serde_json::json;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// What one command did: its exit, its combined output, how long it took.
pub struct Run {
    pub ok: bool,
    pub output: String,
    pub seconds: f64,
}

/// Runs `program args` in `root`, output captured.
pub fn run(root: &Path, program: &str, args: &[&str]) -> Run {
    let start = Instant::now();
    let out = Command::new(program).args(args).current_dir(root).stdin(Stdio::null()).output();
    let seconds = start.elapsed().as_secs_f64();
    match out {
        Ok(out) => {
            let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
            output.push_str(&String::from_utf8_lossy(&out.stderr));
            Run { ok: out.status.success(), output, seconds }
        }
        Err(e) => Run { ok: false, output: format!("cannot run {program}: {e}"), seconds },
    }
}

/// `(run, passed, failed)` from nextest's summary line
/// ("Summary [ 12.3s] 5 tests run: 5 passed, 1 skipped").
pub fn nextest_counts(output: &str) -> Option<(u64, u64, u64)> {
    let line = output.lines().rev().find(|l| l.trim_start().starts_with("Summary ["))?;
    let after = line.split(']').nth(1)?;
    let number_before = |word: &str| -> Option<u64> {
        let words: Vec<&str> =
            after.split(|c: char| c == ',' || c == ':' || c.is_whitespace()).filter(|w| !w.is_empty()).collect();
        let at = words.iter().position(|w| *w == word)?;
        words.get(at.checked_sub(1)?)?.parse().ok()
    };
    let run = number_before("tests").or_else(|| number_before("test"))?;
    let passed = number_before("passed").unwrap_or(0);
    let failed = number_before("failed").unwrap_or(0);
    Some((run, passed, failed))
}

/// Runs the tests `filter` selects (a nextest filterset) and judges them:
/// every selected test passes, and at least `min_tests` ran (a filter that
/// matches nothing fails).
pub fn nextest(root: &Path, filter: &str, min_tests: u64) -> Outcome {
    let r = run(root, "cargo", &["nextest", "run", "--workspace", "--locked", "--profile", "gate", "-E", filter]);
    let counts = nextest_counts(&r.output);
    let (ran, passed, failed) = counts.unwrap_or((0, 0, 0));
    let pass = r.ok && counts.is_some() && failed == 0 && ran >= min_tests && passed == ran;
    Outcome {
        pass,
        figure: format!("{passed}/{ran} tests passed in {:.0} s", r.seconds),
        figures: json!({"filter": filter, "tests_run": ran, "passed": passed, "failed": failed, "seconds": r.seconds}),
        log: (!pass).then_some(r.output),
    }
}

/// The figures of the last `--profile ci` suite run, from nextest's JUnit
/// report (`target/nextest/ci/junit.xml`, configured in `.config/nextest.toml`).
pub fn last_suite(root: &Path) -> Option<(u64, u64, String)> {
    let xml = std::fs::read_to_string(root.join("target/nextest/ci/junit.xml")).ok()?;
    let head = &xml[xml.find("<testsuites")?..];
    let head = &head[..head.find('>')?];
    let attr = |name: &str| -> Option<String> {
        let at = head.find(&format!(" {name}=\""))? + name.len() + 3;
        Some(head[at..].split('"').next()?.to_owned())
    };
    let tests = attr("tests")?.parse().ok()?;
    let failures: u64 = attr("failures")?.parse().ok()?;
    let errors: u64 = attr("errors").and_then(|e| e.parse().ok()).unwrap_or(0);
    Some((tests, failures + errors, attr("timestamp").unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nextest_summary_line_gives_run_passed_and_failed() {
        let ok = "        PASS [   0.6s] (2/2) warden::schema x\n────\n     Summary [   0.686s] 2 tests run: 2 passed, 0 skipped\n";
        assert_eq!(nextest_counts(ok), Some((2, 2, 0)));
        let bad = "     Summary [  61.0s] 5 tests run: 3 passed, 2 failed, 1 skipped\n";
        assert_eq!(nextest_counts(bad), Some((5, 3, 2)));
        let one = "     Summary [   1.0s] 1 test run: 1 passed, 4 skipped\n";
        assert_eq!(nextest_counts(one), Some((1, 1, 0)));
        assert_eq!(nextest_counts("error: no such filter"), None);
    }

    #[test]
    fn the_junit_report_gives_the_suite_figures() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("target/nextest/ci")).unwrap();
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="204" failures="1" errors="0" uuid="u" timestamp="2026-12-01T02:00:00.000+00:00" time="900.1">
<testsuite name="warden::http" tests="9" disabled="0" errors="0" failures="1">"#;
        std::fs::write(dir.path().join("target/nextest/ci/junit.xml"), xml).unwrap();
        assert_eq!(last_suite(dir.path()), Some((204, 1, "2026-12-01T02:00:00.000+00:00".into())));
        assert_eq!(last_suite(&dir.path().join("none")), None);
    }
}

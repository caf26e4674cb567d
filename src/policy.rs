//! `warden policy`: work on a policy bundle without a node — run its Rego
//! unit tests (`test`), or ask it for one decision (`eval`). Both use the
//! same engine code as a node (`warden_actors::policy`).

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::time::Duration;
use warden_actors::authz::{suite, Bundle, RegoPolicy, POLICY_ERROR, POLICY_TIMEOUT};

/// The bundle the commands read when given no directory.
pub const DEFAULT_DIR: &str = "policies";

fn load(dir: Option<&Path>) -> anyhow::Result<Bundle> {
    let dir = dir.map_or_else(|| PathBuf::from(DEFAULT_DIR), Path::to_path_buf);
    Bundle::load_dir(&dir).with_context(|| format!("no policy bundle at {}", dir.display()))
}

/// Runs the bundle's unit tests, prints them `opa test` style; false when any failed.
pub fn test(dir: Option<&Path>, coverage: bool) -> anyhow::Result<bool> {
    let bundle = load(dir)?;
    let report = suite::run(&bundle, coverage)?;
    for line in report.lines() {
        println!("{line}");
    }
    if report.outcomes.is_empty() {
        eprintln!("no test_ rules in {}", bundle.source());
    }
    Ok(report.ok())
}

/// Prints the decision the bundle gives the input document in `input`;
/// an error when the policy could not decide.
pub fn eval(dir: Option<&Path>, input: &Path, timeout: Duration) -> anyhow::Result<()> {
    let bundle = load(dir)?;
    let text = std::fs::read_to_string(input).with_context(|| format!("cannot read {}", input.display()))?;
    let document: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", input.display()))?;
    let policy = RegoPolicy::compile(&bundle, timeout)?;
    let decision = policy.decide_document(document);
    println!("{}", serde_json::to_string_pretty(&decision)?);
    if let Some(code @ (POLICY_ERROR | POLICY_TIMEOUT)) = decision.reasons.first().map(String::as_str) {
        bail!("the policy could not decide ({code})");
    }
    Ok(())
}

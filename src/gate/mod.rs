//! `warden gate [--quick]`: the roadmap's ten acceptance gates, run from the
//! source tree against local clusters started here. One line per gate (pass
//! or fail, the figure, the bound); the evidence (figures, versions, the
//! output of what failed) under `releases/<version>/`, and a summary in
//! `baseline-contract.json`. docs/gates.md maps each gate to what proves it.
//!
//! - `cargo`: the gates proven by the repository's tests (`cargo nextest`).
//! - `rollback`: the rollback drill (gate 10).

pub mod cargo;
pub mod rollback;

use crate::policy::{git, load, sha256_file, BASELINE_FILE};
use crate::soak::{self, SoakArgs};
use anyhow::Context;
use serde::Serialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use warden_actors::authz::{gate as policy_gate, suite, RegoPolicy, DEFAULT_EVAL_TIMEOUT};

#[derive(Clone, Debug)]
pub struct GateArgs {
    /// Only the gates that take under a minute each.
    pub quick: bool,
    /// Run the whole suite for gate 1 instead of reading the last CI-profile run.
    pub suite: bool,
    /// Run `scripts/clean-room.sh` for gate 8 instead of reading its evidence.
    pub clean_room: bool,
    /// The release rolled back to in gate 10 (a git tag); default the latest tag.
    pub previous: Option<String>,
    /// Only these gates (all when empty).
    pub only: Vec<u8>,
}

/// What one gate found.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub pass: bool,
    /// The one figure on its line.
    pub figure: String,
    pub figures: Value,
    /// What to keep when it failed (the output of the failed run).
    pub log: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
struct GateRecord {
    gate: u8,
    name: &'static str,
    status: &'static str,
    figure: String,
    bound: &'static str,
    seconds: f64,
    figures: Value,
    /// Where the output of a failed gate was kept (relative to the root).
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<String>,
}

struct Gate {
    n: u8,
    name: &'static str,
    bound: &'static str,
    quick: bool,
}

const GATES: [Gate; 10] = [
    Gate { n: 1, name: "full test suite", bound: "every test passes", quick: true },
    Gate { n: 2, name: "promotion checks", bound: "12 of 12 pass", quick: true },
    Gate {
        n: 3,
        name: "multi-node failover",
        bound: "0 acknowledged writes lost over >= 10 leader kills",
        quick: false,
    },
    Gate {
        n: 4,
        name: "predictive alert before SLO breach",
        bound: "advisory >= 10 min before the breach",
        quick: true,
    },
    Gate { n: 5, name: "policy hot swap", bound: "0 dropped requests", quick: false },
    Gate { n: 6, name: "incident timeline", bound: "100 % of a turn's events on its correlation chain", quick: true },
    Gate { n: 7, name: "chaos suite", bound: "kill, freeze, partition, rolling restart: nothing lost", quick: false },
    Gate { n: 8, name: "clean-room rebuild", bound: "two builds from frozen deps, same SHA-256", quick: false },
    Gate {
        n: 9,
        name: "soak",
        bound: ">= 500 actions, 3 nodes, kills: 0 lost, 0 duplicate effects, 0 SLO misses",
        quick: false,
    },
    Gate { n: 10, name: "rollback", bound: "< 60 s, 0 acknowledged lost, all terminal, digests equal", quick: true },
];

/// The twelve promotion checks (gate 2), in the order they run.
pub const PROMOTION_CHECKS: [&str; 12] = [
    "rustfmt",
    "clippy -D warnings",
    "policy compiles",
    "Rego unit tests",
    "golden decisions",
    "baseline contract (promoted policy, Cargo.lock, schemas, version)",
    "Rego = native rules (exhaustive matrix, 10 000 generated inputs)",
    "policy fails closed",
    "API contract (routes, roles, error shape)",
    "event JSON pinned",
    "determinism replay",
    "layering",
];

fn outcome(pass: bool, figure: impl Into<String>, figures: Value) -> Outcome {
    Outcome { pass, figure: figure.into(), figures, log: None }
}

fn failed(e: anyhow::Error) -> Outcome {
    Outcome { pass: false, figure: format!("error: {e:#}"), figures: Value::Null, log: Some(format!("{e:?}")) }
}

fn gate_1(root: &Path, args: &GateArgs) -> Outcome {
    if args.suite {
        let r = cargo::run(root, "cargo", &["nextest", "run", "--workspace", "--locked", "--profile", "ci"]);
        let (ran, passed, failed) = cargo::nextest_counts(&r.output).unwrap_or((0, 0, 0));
        let pass = r.ok && failed == 0 && ran > 0;
        return Outcome {
            pass,
            figure: format!("{passed}/{ran} tests passed in {:.0} s", r.seconds),
            figures: json!({"tests_run": ran, "passed": passed, "failed": failed, "seconds": r.seconds, "source": "run now"}),
            log: (!pass).then_some(r.output),
        };
    }
    match cargo::last_suite(root) {
        Some((tests, failures, at)) => outcome(
            failures == 0 && tests > 0,
            format!("{}/{tests} tests passed (last CI-profile run, {at})", tests - failures.min(tests)),
            json!({"tests_run": tests, "failed": failures, "at": at, "source": "target/nextest/ci/junit.xml"}),
        ),
        None => outcome(
            false,
            "no suite result (target/nextest/ci/junit.xml): run `cargo nextest run --profile ci`, or pass --suite",
            Value::Null,
        ),
    }
}

/// Check 6: what `baseline-contract.json` promised is what this tree is.
fn baseline_contract(root: &Path) -> anyhow::Result<(bool, String)> {
    let text = std::fs::read_to_string(root.join(BASELINE_FILE)).context("no baseline-contract.json")?;
    let baseline: Value = serde_json::from_str(&text)?;
    let dir = baseline["policy"]["dir"].as_str().unwrap_or("policies");
    let bundle = load(Some(&root.join(dir)))?;
    let checks = [
        ("policy hash", baseline["policy"]["hash"].as_str() == Some(bundle.hash())),
        ("Cargo.lock", baseline["cargo_lock_sha256"].as_str() == sha256_file(&root.join("Cargo.lock")).as_deref()),
        ("storage schema", baseline["storage_schema"].as_u64() == Some(warden_actors::version::STORAGE_SCHEMA)),
        ("wire schema", baseline["wire_schema"].as_u64() == Some(warden_actors::version::WIRE_SCHEMA as u64)),
        ("version", baseline["warden_version"].as_str() == Some(env!("CARGO_PKG_VERSION"))),
    ];
    let differ: Vec<&str> = checks.iter().filter(|(_, same)| !same).map(|(what, _)| *what).collect();
    if differ.is_empty() {
        Ok((true, "matches".into()))
    } else {
        Ok((false, format!("differs in {}: run `warden policy promote`", differ.join(", "))))
    }
}

fn gate_2(root: &Path) -> Outcome {
    let mut results: Vec<(&str, bool, String, Option<String>)> = Vec::new();
    let mut push_run = |name: &'static str, r: cargo::Run| {
        let log = (!r.ok).then(|| r.output.clone());
        results.push((name, r.ok, format!("{:.0} s", r.seconds), log));
    };
    push_run(PROMOTION_CHECKS[0], cargo::run(root, "cargo", &["fmt", "--all", "--", "--check"]));
    push_run(
        PROMOTION_CHECKS[1],
        cargo::run(root, "cargo", &["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]),
    );
    match load(Some(&root.join(crate::policy::DEFAULT_DIR))) {
        Ok(bundle) => {
            let compiled = RegoPolicy::compile(&bundle, DEFAULT_EVAL_TIMEOUT);
            results.push((
                PROMOTION_CHECKS[2],
                compiled.is_ok(),
                bundle.hash()[..12].to_owned(),
                compiled.err().map(|e| e.to_string()),
            ));
            let unit = suite::run(&bundle, false);
            let (ok, figure) = match &unit {
                Ok(r) => (r.ok() && !r.outcomes.is_empty(), format!("{} tests", r.outcomes.len())),
                Err(e) => (false, e.to_string()),
            };
            results.push((PROMOTION_CHECKS[3], ok, figure, None));
            match policy_gate::check(&bundle, DEFAULT_EVAL_TIMEOUT) {
                Ok(p) => results.push((PROMOTION_CHECKS[4], true, format!("{} decisions", p.golden), None)),
                Err(f) => {
                    results.push((PROMOTION_CHECKS[4], false, format!("{} failures", f.len()), Some(f.join("\n"))))
                }
            }
        }
        Err(e) => {
            for name in &PROMOTION_CHECKS[2..5] {
                results.push((name, false, "no bundle".into(), Some(format!("{e:#}"))));
            }
        }
    }
    match baseline_contract(root) {
        Ok((ok, figure)) => results.push((PROMOTION_CHECKS[5], ok, figure, None)),
        Err(e) => results.push((PROMOTION_CHECKS[5], false, format!("{e:#}"), None)),
    }
    let tests = [
        (PROMOTION_CHECKS[6], "binary(policy_equivalence)", 2),
        (PROMOTION_CHECKS[7], "binary(policy_fail_closed)", 7),
        (PROMOTION_CHECKS[8], "test(every_route_answers_each_caller) | test(bad_requests_get_clear_4xx_errors)", 2),
        (PROMOTION_CHECKS[9], "binary(event_json)", 3),
        (PROMOTION_CHECKS[10], "binary(determinism)", 1),
        (PROMOTION_CHECKS[11], "binary(layering)", 4),
    ];
    for (name, filter, min) in tests {
        let o = cargo::nextest(root, filter, min);
        results.push((name, o.pass, o.figure, o.log));
    }
    let passed = results.iter().filter(|r| r.1).count();
    let checks: Vec<Value> =
        results.iter().map(|(name, ok, figure, _)| json!({"check": name, "pass": ok, "figure": figure})).collect();
    let log: Vec<String> =
        results.iter().filter_map(|(name, _, _, log)| log.as_ref().map(|l| format!("== {name}\n{l}"))).collect();
    let failing: Vec<&str> = results.iter().filter(|r| !r.1).map(|r| r.0).collect();
    let figure = if failing.is_empty() {
        format!("{passed}/{} checks pass", results.len())
    } else {
        format!("{passed}/{} checks pass; failing: {}", results.len(), failing.join(", "))
    };
    Outcome {
        pass: passed == PROMOTION_CHECKS.len(),
        figure,
        figures: json!({"checks": checks}),
        log: (!log.is_empty()).then(|| log.join("\n")),
    }
}

/// Gate 8: the evidence `scripts/clean-room.sh` wrote, run now with `--clean-room`.
fn gate_8(root: &Path, dir: &Path, args: &GateArgs) -> Outcome {
    let evidence = dir.join("clean-room.json");
    if args.clean_room {
        let r = cargo::run(root, "bash", &["scripts/clean-room.sh", &evidence.display().to_string()]);
        if !r.ok {
            return Outcome {
                pass: false,
                figure: "scripts/clean-room.sh failed".into(),
                figures: Value::Null,
                log: Some(r.output),
            };
        }
    }
    let Some(found) = std::fs::read_to_string(&evidence).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok())
    else {
        return outcome(
            false,
            format!("no {} (run scripts/clean-room.sh, or pass --clean-room)", evidence.display()),
            Value::Null,
        );
    };
    let (a, b) = (found["sha256"][0].as_str().unwrap_or(""), found["sha256"][1].as_str().unwrap_or("-"));
    let lock = sha256_file(&root.join("Cargo.lock"));
    let same_lock = found["cargo_lock_sha256"].as_str() == lock.as_deref();
    let pass = a == b && !a.is_empty() && same_lock;
    let figure = match (a == b, same_lock) {
        (true, true) => format!("sha256 {} twice", &a[..a.len().min(16)]),
        (false, _) => format!("checksums differ: {a} / {b}"),
        (true, false) => "evidence is for another Cargo.lock: run it again".into(),
    };
    outcome(pass, figure, found)
}

async fn gate_9(dir: &Path) -> Outcome {
    let args = SoakArgs {
        nodes: 3,
        actions: 500,
        rate: 20.0,
        kill_every: Some(Duration::from_secs(10)),
        data_dir: dir.join("soak"),
        quiet: true,
        cache_mb: None,
    };
    match soak::run(args).await {
        Ok(r) => {
            let slo_missed = r.slo.iter().filter(|s| !s.met).count();
            let figures = json!({"acknowledged": r.acknowledged, "unacknowledged": r.unacknowledged,
                "lost": r.lost.len(), "effect_violations": r.effect_violations.len(),
                "unrecorded_executions": r.unrecorded_executions.len(), "slo_missed": slo_missed,
                "kills": r.kills, "takeovers": r.takeovers, "by_state": r.by_state});
            let pass = r.passed() && r.acknowledged >= 500 && r.kills > 0;
            let figure = format!(
                "{} acknowledged, {} kills: {} lost, {} duplicate effects, {slo_missed} SLO misses",
                r.acknowledged,
                r.kills,
                r.lost.len(),
                r.effect_violations.len()
            );
            Outcome { pass, figure, figures, log: (!pass).then(|| r.failures().join("\n")) }
        }
        Err(e) => failed(e),
    }
}

/// The tag rolled back to: the one named, else the latest tag reachable from HEAD.
fn previous_tag(root: &Path, args: &GateArgs) -> Option<String> {
    args.previous.clone().or_else(|| git(root, &["describe", "--tags", "--abbrev=0"]).ok().map(|t| t.trim().to_owned()))
}

async fn gate_10(root: &Path, dir: &Path, head: &Path, args: &GateArgs) -> Outcome {
    let this = format!("v{}", env!("CARGO_PKG_VERSION"));
    let head = head.to_owned();
    let tag = previous_tag(root, args);
    // Nothing older than this build to run: the single-node up/down variant on this build.
    let (previous, nodes, against) = match &tag {
        Some(t) if *t != this && !args.quick => match tokio::task::block_in_place(|| rollback::build_tag(root, t)) {
            Ok(exe) => (exe, 3, t.clone()),
            Err(e) => return failed(e),
        },
        _ => (head.clone(), 1, format!("{this} (itself)")),
    };
    let drill = rollback::Drill { nodes, previous, head, actions: 300, rate: 15.0, dir: dir.join("rollback") };
    match rollback::run(drill).await {
        Ok(r) => {
            let figure = format!(
                "{nodes} node(s) from {against}: rollback {:.1} s, upgrade {:.1} s, {} acknowledged, {} lost, {} not terminal, digests {}",
                r.rollback_ms as f64 / 1000.0,
                r.upgrade_ms as f64 / 1000.0,
                r.acknowledged,
                r.lost,
                r.not_terminal,
                if r.digests_equal { "equal" } else { "DIFFER" }
            );
            let mut figures = serde_json::to_value(&r).unwrap_or(Value::Null);
            figures["previous"] = json!(against);
            outcome(r.passed(), figure, figures)
        }
        Err(e) => failed(e),
    }
}

/// The versions the evidence is for.
fn versions(root: &Path) -> Value {
    let tool = |program: &str| cargo::run(root, program, &["--version"]).output.lines().next().unwrap_or("").to_owned();
    json!({
        "warden": env!("CARGO_PKG_VERSION"),
        "commit": git(root, &["rev-parse", "HEAD"]).ok().map(|c| c.trim().to_owned()),
        "dirty": git(root, &["status", "--porcelain"]).map(|s| !s.trim().is_empty()).ok(),
        "rustc": tool("rustc"),
        "cargo": tool("cargo"),
        "cargo_lock_sha256": sha256_file(&root.join("Cargo.lock")),
        "storage_schema": warden_actors::version::STORAGE_SCHEMA,
        "wire_version": warden_actors::version::WIRE.to_string(),
    })
}

/// Runs the gates; true when every gate run passed.
pub async fn run(args: GateArgs) -> anyhow::Result<bool> {
    let root = PathBuf::from(git(Path::new("."), &["rev-parse", "--show-toplevel"])?.trim());
    anyhow::ensure!(root.join("Cargo.toml").exists(), "{} is not warden's source tree", root.display());
    let release = root.join("releases").join(env!("CARGO_PKG_VERSION"));
    std::fs::create_dir_all(&release).with_context(|| format!("cannot create {}", release.display()))?;
    // Logs of an earlier run of this mode are not this run's.
    let mode = match (args.only.is_empty(), args.quick) {
        (false, _) => "partial",
        (true, true) => "quick",
        (true, false) => "full",
    };
    let mode_logs = format!("-{mode}.log");
    for entry in std::fs::read_dir(release.join("logs")).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().ends_with(&mode_logs) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let work = root.join("target/gate");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    // This executable as it is now: the test gates rebuild target/debug/warden
    // under it, and the rollback drill runs nodes of it.
    let this_exe = work.join("warden");
    std::fs::copy("/proc/self/exe", &this_exe).or_else(|_| std::fs::copy(std::env::current_exe()?, &this_exe))?;
    println!("warden gate ({mode}) for {} in {}", env!("CARGO_PKG_VERSION"), root.display());
    let started = Instant::now();
    let mut records = Vec::new();
    for g in &GATES {
        let skip = match (args.quick && !g.quick, !args.only.is_empty() && !args.only.contains(&g.n)) {
            (true, _) => Some("not in --quick"),
            (_, true) => Some("not in --only"),
            _ => None,
        };
        if let Some(why) = skip {
            println!("gate {:>2}  {:<36} skip  ({why})", g.n, g.name);
            records.push(GateRecord {
                gate: g.n,
                name: g.name,
                status: "skipped",
                figure: String::new(),
                bound: g.bound,
                seconds: 0.0,
                figures: Value::Null,
                log: None,
            });
            continue;
        }
        let t = Instant::now();
        let o = match g.n {
            1 => gate_1(&root, &args),
            2 => gate_2(&root),
            3 => cargo::nextest(&root, "test(killing_the_leader_repeatedly_loses_no_acknowledged_write) | test(killing_the_leader_under_load_loses_nothing)", 2),
            4 => cargo::nextest(&root, "binary(slo) | test(a_latency_ramp_on_the_manual_clock)", 4),
            5 => cargo::nextest(&root, "binary(policy_swap)", 1),
            6 => cargo::nextest(&root, "binary(timeline)", 4),
            7 => cargo::nextest(&root, "binary(chaos)", 6),
            8 => gate_8(&root, &release, &args),
            9 => gate_9(&work).await,
            _ => gate_10(&root, &work, &this_exe, &args).await,
        };
        let seconds = t.elapsed().as_secs_f64();
        let status = if o.pass { "pass" } else { "FAIL" };
        let log = match &o.log {
            Some(text) => {
                let path = release.join("logs").join(format!("gate-{}-{mode}.log", g.n));
                std::fs::create_dir_all(release.join("logs"))?;
                std::fs::write(&path, text)?;
                Some(path.strip_prefix(&root).unwrap_or(&path).display().to_string())
            }
            None => None,
        };
        println!("gate {:>2}  {:<36} {status}  {}  (bound: {})", g.n, g.name, o.figure, g.bound);
        records.push(GateRecord {
            gate: g.n,
            name: g.name,
            status,
            figure: o.figure,
            bound: g.bound,
            seconds,
            figures: o.figures,
            log,
        });
    }
    let run: Vec<&GateRecord> = records.iter().filter(|r| r.status != "skipped").collect();
    let passed = run.iter().filter(|r| r.status == "pass").count();
    let ok = passed == run.len();
    let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let evidence = json!({"mode": mode, "at": at, "seconds": started.elapsed().as_secs_f64(), "passed": ok,
        "versions": versions(&root), "promotion_checks": PROMOTION_CHECKS, "gates": records});
    let file = release.join(format!("gate-{mode}.json"));
    std::fs::write(&file, format!("{}\n", serde_json::to_string_pretty(&evidence)?))?;
    // The summary beside the baseline: per mode, what passed and where the
    // evidence is (a partial run is no gate result).
    if mode == "partial" {
        println!(
            "{passed}/{} gates passed; evidence in {}",
            run.len(),
            file.strip_prefix(&root).unwrap_or(&file).display()
        );
        return Ok(ok);
    }
    let baseline_path = root.join(BASELINE_FILE);
    let mut baseline: Value =
        std::fs::read_to_string(&baseline_path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(json!({}));
    let failing: Vec<u8> = run.iter().filter(|r| r.status != "pass").map(|r| r.gate).collect();
    baseline["gates"][mode] = json!({"version": env!("CARGO_PKG_VERSION"), "at": at, "passed": ok,
        "gates_run": run.len(), "gates_passed": passed, "failing": failing,
        "evidence": file.strip_prefix(&root).unwrap_or(&file).display().to_string()});
    std::fs::write(&baseline_path, format!("{}\n", serde_json::to_string_pretty(&baseline)?))?;
    println!(
        "{passed}/{} gates passed in {:.0} s; evidence in {}",
        run.len(),
        started.elapsed().as_secs_f64(),
        file.strip_prefix(&root).unwrap_or(&file).display()
    );
    Ok(ok)
}

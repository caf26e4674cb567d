//! Rego == OPA: every golden input, and 2,000 more generated ones, decided
//! by warden (regorus) and by real OPA (`tests/opa/eval.py`, OPA embedded
//! through the `opa-golib-python-bindings` package) — no difference in
//! decision, tier or reasons. `.ci/run` installs OPA and names its Python
//! in `WARDEN_OPA_PYTHON`; without it this test fails under CI and is
//! skipped, saying so, elsewhere.

use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use warden::warden_actors::authz::matrix::parse_golden;
use warden::warden_actors::authz::{Bundle, RegoPolicy, DEFAULT_EVAL_TIMEOUT};

/// Generated inputs checked on top of the golden ones.
const GENERATED: usize = 2_000;
const SEED: u64 = 14;

fn opa_python() -> Option<PathBuf> {
    match std::env::var_os("WARDEN_OPA_PYTHON") {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("WARDEN_OPA_PYTHON is not set: .ci/run installs OPA's Python bindings and sets it")
        }
        None => {
            eprintln!("SKIPPED: WARDEN_OPA_PYTHON is not set (a Python with opa-golib-python-bindings; see .ci/run)");
            None
        }
    }
}

/// Inputs the golden file does not have: odd amounts and limits, trust
/// values, unknown fields.
fn generated() -> Vec<Value> {
    let mut rng = fastrand::Rng::with_seed(SEED);
    let amount = |rng: &mut fastrand::Rng| match rng.u8(0..12) {
        9 => json!(rng.f64() * 1e-3),
        10 => json!(0.0),
        11 => json!(rng.f64() * 1e22),
        0 => json!(rng.i64(-1_000..1_000)),
        1 => json!(rng.i64(..)),
        2 => json!(rng.f64() * 2_000.0 - 500.0),
        3 => json!(rng.u64(..)),
        4 => json!(format!("{}", rng.u16(..))),
        5 => json!(null),
        6 => json!([rng.u8(..)]),
        7 => json!(1.5e300),
        _ => json!(rng.u32(0..1_000)),
    };
    (0..GENERATED)
        .map(|i| {
            let mut capability = json!({"name": format!("gen.{i}"), "tier": rng.u8(0..4)});
            match rng.u8(0..4) {
                0 => {}
                1 => capability["amount_limit"] = json!(rng.u32(0..1_000)),
                2 => capability["amount_limit"] = amount(&mut rng),
                _ => capability["amount_limit"] = json!(rng.f64() * 1_000.0),
            }
            let mut args = json!({"to": "someone", "n": rng.u8(..)});
            if rng.bool() {
                args["amount"] = amount(&mut rng);
            }
            let trust = ["normal", "low", "low"][rng.usize(0..3)];
            json!({
                "capability": capability,
                "args": args,
                "session": {"id": format!("ses_{i}"), "trust": trust},
                "turn": {"id": format!("turn_{i}")},
                "principal": {"name": "agent", "role": "agent"},
            })
        })
        .collect()
}

/// OPA's answer for each input, in order.
fn opa_decisions(python: &Path, bundle_dir: &Path, inputs: &[Value]) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/opa/eval.py");
    let mut child = Command::new(python)
        .arg(script)
        .arg(bundle_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let mut stdin = child.stdin.take().unwrap();
    let text: String = inputs.iter().map(|i| format!("{i}\n")).collect();
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "tests/opa/eval.py failed: {}", out.status);
    let answers: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(answers.len(), inputs.len(), "OPA answered {} of {} inputs", answers.len(), inputs.len());
    answers
}

#[test]
fn rego_in_warden_decides_as_opa_on_every_golden_and_generated_input() {
    let Some(python) = opa_python() else { return };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let bundle = Bundle::load_dir(&dir).unwrap();
    let golden = parse_golden(bundle.golden().unwrap()).unwrap();
    assert_eq!(golden.len(), 128);
    let mut inputs: Vec<Value> = golden.iter().map(|c| c.input.clone()).collect();
    inputs.extend(generated());
    let warden = RegoPolicy::compile(&bundle, DEFAULT_EVAL_TIMEOUT).unwrap();
    let opa = opa_decisions(&python, &dir, &inputs);
    let mut differences = Vec::new();
    for (input, opa) in inputs.iter().zip(&opa) {
        let d = warden.decide_document(input.clone());
        let ours = json!({"decision": d.decision, "tier": d.tier, "reasons": d.reasons});
        if opa.get("result") != Some(&ours) {
            differences.push(format!("input {input}\n  opa    {opa}\n  warden {ours}"));
        }
    }
    for (case, opa) in golden.iter().zip(&opa) {
        let expected = json!({"decision": case.expected.decision, "tier": case.expected.tier});
        assert_eq!(json!({"decision": opa["result"]["decision"], "tier": opa["result"]["tier"]}), expected);
    }
    assert!(
        differences.is_empty(),
        "{} of {} inputs decided differently:\n{}",
        differences.len(),
        inputs.len(),
        differences.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
}

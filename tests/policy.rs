//! Policy as code against the real binary: a node runs the bundle its
//! `policies_dir` names (a modified copy of `policies/` decides otherwise,
//! end to end over HTTP), refuses to start on Rego that does not compile,
//! runs the native rules when configured to; `warden policy test` and
//! `warden policy eval` work on a bundle directory.

mod common;

use common::process::NodeProcess;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use warden::warden_actors::authz::{Bundle, NATIVE_POLICY_HASH};

/// How long a node that must refuse to start may take to exit.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(30);

fn repo_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// A copy of `policies/` in `dir`, with `edit` applied to `warden/authz.rego`.
fn bundle_copy(dir: &Path, edit: impl Fn(&str) -> String) -> PathBuf {
    let copy = dir.join("policies");
    for (path, text) in Bundle::load_dir(&repo_policies()).unwrap().files() {
        let to = copy.join(path);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let text = if path == "warden/authz.rego" { edit(text) } else { text.clone() };
        std::fs::write(to, text).unwrap();
    }
    copy
}

fn config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("node.toml");
    std::fs::write(&path, extra).unwrap();
    path
}

async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("node answers");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn decide(node: &NodeProcess, body: Value) -> (u16, Value) {
    call(reqwest::Method::POST, format!("{}/v1/policies/decide", node.url), Some(body)).await
}

async fn active(node: &NodeProcess) -> Value {
    let (status, body) = call(reqwest::Method::GET, format!("{}/v1/policies", node.url), None).await;
    assert_eq!(status, 200, "{body}");
    body["active"].clone()
}

/// Submits `capability` in a new turn; the decision it was recorded with.
async fn submit(node: &NodeProcess, capability: &str) -> Value {
    let (s, turn) = call(reqwest::Method::POST, format!("{}/v1/sessions/ses_p/turns", node.url), Some(json!({}))).await;
    assert_eq!(s, 201, "{turn}");
    let body = json!({"turn_id": turn["turn_id"], "capability": capability, "args": {"to": "a@example.com"}});
    let (s, action) = call(reqwest::Method::POST, format!("{}/v1/actions", node.url), Some(body)).await;
    assert_eq!(s, 202, "{action}");
    action
}

#[tokio::test]
async fn a_node_decides_by_the_modified_bundle_its_policies_dir_names() {
    let dir = tempfile::tempdir().unwrap();
    // The change under review: email.send (tier 2 in the catalog) no longer needs a confirmation.
    let copy = bundle_copy(dir.path(), |rego| {
        let original = "\tt in {0, 1, 2, 3}\n}\n";
        assert!(rego.contains(original), "authz.rego changed shape");
        rego.replacen(
            original,
            "\tt in {0, 1, 2, 3}\n\tinput.capability.name != \"email.send\"\n}\n\n\
             base_tier := 1 if input.capability.name == \"email.send\"\n",
            1,
        )
    });
    let modified = Bundle::load_dir(&copy).unwrap();
    assert_ne!(modified.hash(), Bundle::embedded().hash());
    let cfg = config(dir.path(), &format!("policies_dir = {:?}\n", copy.display().to_string()));
    let node = NodeProcess::start(&dir.path().join("data"), Some(&cfg));

    let a = active(&node).await;
    assert_eq!((a["engine"].as_str(), a["hash"].as_str()), (Some("rego"), Some(modified.hash())), "{a}");
    assert_eq!(a["source"].as_str(), Some(copy.display().to_string().as_str()));
    assert_eq!(a["revision"], "warden-4tier-1");
    assert!(a["files"].as_array().unwrap().iter().any(|f| f["path"] == "warden/authz.rego"), "{a}");

    let (s, d) = decide(&node, json!({"capability": "email.send", "args": {}})).await;
    assert_eq!(s, 200, "{d}");
    assert_eq!((d["decision"].as_str(), d["tier"].as_u64()), (Some("allow"), Some(1)), "{d}");
    assert_eq!(d["policy_hash"].as_str(), Some(modified.hash()));
    // Everything else is as before: low trust still escalates, tier 3 still denies.
    let (_, d) = decide(&node, json!({"capability": "email.send", "args": {}, "trust": "low"})).await;
    assert_eq!((d["decision"].as_str(), d["tier"].as_u64()), (Some("confirm"), Some(2)), "{d}");
    let (_, d) = decide(&node, json!({"capability": "db.drop_table"})).await;
    assert_eq!(d["decision"], "deny", "{d}");

    // A real action is recorded with the new decision and runs without a confirmation.
    let action = submit(&node, "email.send").await;
    assert_eq!(action["decision"]["decision"], "allow", "{action}");
    assert_eq!(action["decision"]["policy_hash"].as_str(), Some(modified.hash()));
    assert_ne!(action["state"], "awaiting_confirmation", "{action}");
}

#[tokio::test]
async fn the_embedded_bundle_decides_by_default_and_the_native_rules_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&dir.path().join("a"), None);
    let a = active(&node).await;
    assert_eq!((a["engine"].as_str(), a["source"].as_str()), (Some("rego"), Some("embedded")), "{a}");
    assert_eq!(a["hash"].as_str(), Some(Bundle::embedded().hash()));
    let (_, d) = decide(&node, json!({"capability": "email.send"})).await;
    assert_eq!((d["decision"].as_str(), d["tier"].as_u64()), (Some("confirm"), Some(2)), "{d}");
    let action = submit(&node, "email.send").await;
    assert_eq!(action["state"], "awaiting_confirmation", "{action}");
    // "What if": a capability described inline, and the errors.
    let what_if = json!({"capability": {"name": "wire", "tier": 1, "amount_limit": 100}, "args": {"amount": 250}});
    let (s, d) = decide(&node, what_if).await;
    assert_eq!((s, d["decision"].as_str(), d["tier"].as_u64()), (200, Some("confirm"), Some(2)), "{d}");
    assert_eq!(d["reasons"], json!(["wire is tier 1", "amount 250 exceeds limit 100: +1"]));
    let (s, e) = decide(&node, json!({"capability": "no.such.tool"})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("unknown_capability")), "{e}");
    let (s, e) = decide(&node, json!({"capability": "email.send", "args": [1]})).await;
    assert_eq!(s, 400, "{e}");
    let (s, _) = call(reqwest::Method::PUT, format!("{}/v1/policies/decide", node.url), Some(json!({}))).await;
    assert_eq!(s, 405);
    drop(node);

    let native_dir = tempfile::tempdir().unwrap();
    let cfg = config(native_dir.path(), "policy_engine = \"native\"\n");
    let node = NodeProcess::start(&native_dir.path().join("a"), Some(&cfg));
    let a = active(&node).await;
    assert_eq!((a["engine"].as_str(), a["hash"].as_str()), (Some("native"), Some(NATIVE_POLICY_HASH)), "{a}");
    assert!(a["files"].as_array().unwrap().is_empty(), "{a}");
    let (_, d) = decide(&node, json!({"capability": "email.send"})).await;
    assert_eq!((d["decision"].as_str(), d["policy_hash"].as_str()), (Some("confirm"), Some(NATIVE_POLICY_HASH)));
}

#[test]
fn a_node_refuses_to_start_on_rego_that_does_not_compile_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let copy = bundle_copy(dir.path(), |rego| rego.replacen("max_tier := 3", "max_tier := := 3", 1));
    let cfg = config(dir.path(), &format!("policies_dir = {:?}\n", copy.display().to_string()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["node", "--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + REFUSAL_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the node did not exit on a policy that does not compile");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success());
    let line = stderr.lines().find(|l| l.contains("warden/authz.rego:")).unwrap_or_else(|| panic!("{stderr}"));
    let at = &line[line.find("warden/authz.rego:").unwrap()..];
    let parts: Vec<&str> = at.splitn(4, ':').collect();
    assert!(parts[1].parse::<u32>().is_ok() && parts[2].parse::<u32>().is_ok(), "file:line:col: {line}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"), "it must not serve");
    assert!(!dir.path().join("data").exists(), "nothing is written before the policy compiles");
}

fn warden(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_warden")).args(args).env("RUST_LOG", "warn").output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn warden_policy_test_reports_each_test_and_fails_on_a_failing_one() {
    let dir = repo_policies();
    let (ok, out) = warden(&["policy", "test", dir.to_str().unwrap(), "--coverage"]);
    assert!(ok, "{out}");
    let tests = out.lines().filter(|l| l.starts_with("data.warden.authz_test.test_")).count();
    assert!(tests >= 20, "{out}");
    assert!(out.lines().all(|l| !l.starts_with("data.") || l.contains(": PASS (")), "{out}");
    assert!(out.contains(&format!("PASS: {tests}/{tests}")), "{out}");
    assert!(out.contains("coverage: warden/authz.rego 100.0%"), "{out}");

    let tmp = tempfile::tempdir().unwrap();
    let broken = bundle_copy(tmp.path(), |rego| rego.replacen("\"confirm\", \"deny\"]", "\"deny\", \"deny\"]", 1));
    let (ok, out) = warden(&["policy", "test", broken.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(out.contains("test_tier_2_asks_for_confirmation: FAIL"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("FAIL: ") && l.ends_with(&format!("/{tests}"))), "{out}");
}

#[test]
fn warden_policy_eval_prints_the_decision_for_an_input_file() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input.json");
    let doc = json!({"capability": {"name": "payments.send", "tier": 1, "amount_limit": 500},
                     "args": {"amount": 900}, "session": {"id": "ses_1", "trust": "low"}});
    std::fs::write(&input, doc.to_string()).unwrap();
    let (ok, out) = warden(&["policy", "eval", repo_policies().to_str().unwrap(), "--input", input.to_str().unwrap()]);
    assert!(ok, "{out}");
    let d: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!((d["decision"].as_str(), d["tier"].as_u64()), (Some("deny"), Some(3)), "{d}");
    assert_eq!(d["policy_hash"].as_str(), Some(Bundle::load_dir(&repo_policies()).unwrap().hash()));
    std::fs::write(&input, json!({"capability": {"name": "x", "tier": 9}}).to_string()).unwrap();
    let (ok, out) = warden(&["policy", "eval", repo_policies().to_str().unwrap(), "--input", input.to_str().unwrap()]);
    assert!(!ok && out.contains("policy_error"), "{out}");
}

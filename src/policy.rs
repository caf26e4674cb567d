//! `warden policy`: work on a policy bundle without a node — run its Rego
//! unit tests (`test`), or ask it for one decision (`eval`). Both use the
//! same engine code as a node (`warden_actors::policy`).

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::time::Duration;
use warden_actors::authz::{suite, Bundle, RegoPolicy, POLICY_ERROR, POLICY_TIMEOUT};

/// The bundle the commands read when given no directory.
pub const DEFAULT_DIR: &str = "policies";

pub(crate) fn load(dir: Option<&Path>) -> anyhow::Result<Bundle> {
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

// ---------------------------------------------------------------------------
// Talking to a node: push, rollback, audit.

use serde_json::{json, Value};
use warden_actors::authz::{gate, NativePolicy, PolicyEngine, DEFAULT_EVAL_TIMEOUT};
use warden_actors::domain::AuditEntry;

/// Longest a push may take (the node runs the gate, then the cluster commits).
const PUSH_TIMEOUT: Duration = Duration::from_secs(60);
/// Audit entries asked for per request while reading the whole trail.
const AUDIT_PAGE: usize = 1_000;

/// The node a client command talks to, and how.
#[derive(Clone, Copy, Debug)]
pub struct Remote<'a> {
    pub target: &'a str,
    pub token: Option<&'a str>,
    /// PEM CA to trust for an HTTPS target (`--ca` / `$WARDEN_CA`).
    pub ca: Option<&'a Path>,
}

async fn send(
    remote: Remote<'_>,
    method: reqwest::Method,
    path: &str,
    body: &Value,
) -> anyhow::Result<(reqwest::StatusCode, Value)> {
    let http = crate::auth::client(PUSH_TIMEOUT, remote.token, remote.ca)?;
    let url = format!("{}{path}", remote.target.trim_end_matches('/'));
    let resp = http.request(method, &url).json(body).send().await.with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let text = resp.text().await?;
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, value))
}

/// What a node answered a push or a rollback; an error unless it activated
/// (or the bundle was already active).
fn activation_reply(status: reqwest::StatusCode, body: &Value) -> anyhow::Result<()> {
    if status.is_success() {
        if body["unchanged"] == true {
            println!("already active: {}", body["hash"].as_str().unwrap_or_default());
        } else {
            let previous = body["previous"].as_str().unwrap_or("the nodes' configured policy");
            println!(
                "activated {} (revision {}), replacing {previous}; audit entry {}",
                body["hash"].as_str().unwrap_or_default(),
                body["revision"].as_str().unwrap_or_default(),
                body["audit_seq"]
            );
        }
        return Ok(());
    }
    let error = &body["error"];
    eprintln!("{status}: {}", error["message"].as_str().unwrap_or(&body.to_string()));
    for failure in error["failures"].as_array().into_iter().flatten() {
        eprintln!("  {}", failure.as_str().unwrap_or_default().replace('\n', "\n    "));
    }
    bail!("the node did not activate the bundle ({})", error["code"].as_str().unwrap_or("error"))
}

/// `warden policy push`: the bundle at `dir` to `PUT /v1/policies`.
pub async fn push(remote: Remote<'_>, dir: Option<&Path>, reason: &str) -> anyhow::Result<()> {
    let bundle = load(dir)?;
    let body = json!({ "files": bundle.files(), "reason": reason });
    let (status, reply) = send(remote, reqwest::Method::PUT, "/v1/policies", &body).await?;
    activation_reply(status, &reply)
}

/// `warden policy rollback`: `POST /v1/policies/rollback`.
pub async fn rollback(remote: Remote<'_>, to: Option<&str>, reason: &str) -> anyhow::Result<()> {
    let mut body = json!({ "reason": reason });
    if let Some(to) = to {
        body["to"] = json!(to);
    }
    let (status, reply) = send(remote, reqwest::Method::POST, "/v1/policies/rollback", &body).await?;
    activation_reply(status, &reply)
}

/// The whole audit trail, oldest first.
pub async fn fetch_audit(remote: Remote<'_>) -> anyhow::Result<Vec<AuditEntry>> {
    let http = crate::auth::client(Duration::from_secs(10), remote.token, remote.ca)?;
    let mut entries = Vec::new();
    let mut after = 0;
    loop {
        let url = format!("{}/v1/policies/audit?after={after}&limit={AUDIT_PAGE}", remote.target.trim_end_matches('/'));
        let resp = http.get(&url).send().await.with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        let body: Value = resp.json().await.with_context(|| format!("{url}: not JSON"))?;
        if !status.is_success() {
            bail!("{url}: {status} {body}");
        }
        let page: Vec<AuditEntry> = serde_json::from_value(body["entries"].clone()).context("audit entries")?;
        entries.extend(page);
        match body["next"].as_u64() {
            Some(next) => after = next,
            None => return Ok(entries),
        }
    }
}

/// `warden policy audit [--verify]`: prints the trail; with `verify`,
/// recomputes the chain and fails at the first broken link.
pub async fn audit(remote: Remote<'_>, verify: bool) -> anyhow::Result<()> {
    let entries = fetch_audit(remote).await?;
    for e in &entries {
        let action = serde_json::to_value(e.action)?;
        println!(
            "{:>4} {} {:<8} {:<9} {} → {} rev {:?} cid {} {}",
            e.seq,
            e.at,
            e.principal,
            action.as_str().unwrap_or_default(),
            e.old_hash.as_deref().map_or("-", short),
            short(&e.new_hash),
            e.revision,
            e.correlation_id,
            e.reason.lines().next().unwrap_or_default()
        );
    }
    if verify {
        if let Some((seq, what)) = AuditEntry::verify_chain(&entries) {
            bail!("the audit chain is broken at entry {seq}: {what}");
        }
        let head = entries.last().map_or("(empty)", |e| e.hash.as_str());
        println!("audit chain verified: {} entries, head {head}", entries.len());
    }
    Ok(())
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

// ---------------------------------------------------------------------------
// Promotion: the gate, the decision diff, the git check, the baseline.

/// The known-good state of the repository, at its root.
pub const BASELINE_FILE: &str = "baseline-contract.json";

/// `warden policy promote [DIR]`.
pub struct Promote<'a> {
    pub dir: Option<&'a Path>,
    pub allow_dirty: bool,
}

pub(crate) fn git(repo: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("git").arg("-C").arg(repo).args(args).output().context("cannot run git")?;
    if !out.status.success() {
        bail!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The bundle the baseline names, read from git at the commit it was promoted from.
fn promoted_bundle(root: &Path, baseline: &Value, rel_dir: &str) -> Option<Bundle> {
    let commit = baseline["policy"]["commit"].as_str()?;
    let listing = git(root, &["ls-tree", "-r", "--name-only", commit, "--", rel_dir]).ok()?;
    let mut files = std::collections::BTreeMap::new();
    for path in listing.lines() {
        let rel = path.strip_prefix(rel_dir)?.trim_start_matches('/').to_owned();
        if rel.ends_with(".rego") || rel.ends_with("data.json") || rel == ".manifest" || rel == "golden/decisions.jsonl"
        {
            files.insert(rel, git(root, &["show", &format!("{commit}:{path}")]).ok()?);
        }
    }
    Bundle::from_files(files, warden_actors::authz::BundleSource::Embedded).ok()
}

pub(crate) fn sha256_file(path: &Path) -> Option<String> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).ok()?;
    Some(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

/// The fields that differ between two baselines, one `key: old → new` line each.
fn baseline_changes(old: &Value, new: &Value, prefix: &str, out: &mut Vec<String>) {
    let empty = Value::Object(Default::default());
    // No baseline yet: every field is new.
    let old = if old.is_null() && new.is_object() { &empty } else { old };
    if let (Value::Object(o), Value::Object(n)) = (old, new) {
        let keys: std::collections::BTreeSet<&String> = o.keys().chain(n.keys()).collect();
        for k in keys {
            let (ov, nv) = (o.get(k).unwrap_or(&Value::Null), n.get(k).unwrap_or(&Value::Null));
            baseline_changes(ov, nv, &format!("{prefix}{k}."), out);
        }
    } else if old != new {
        out.push(format!("{}: {old} → {new}", prefix.trim_end_matches('.')));
    }
}

/// Runs the promotion; false (after saying why) when it refuses.
pub fn promote(args: Promote<'_>) -> anyhow::Result<bool> {
    let dir = args.dir.map_or_else(|| PathBuf::from(DEFAULT_DIR), Path::to_path_buf);
    let bundle = load(Some(&dir))?;
    // 1–3: compile, unit tests, golden decisions.
    let passed = match gate::check(&bundle, DEFAULT_EVAL_TIMEOUT) {
        Ok(passed) => passed,
        Err(failures) => {
            eprintln!("{} does not pass the gate:", dir.display());
            for f in failures {
                eprintln!("  {}", f.replace('\n', "\n    "));
            }
            return Ok(false);
        }
    };
    println!("gate: compiles; {} Rego tests pass; {} golden decisions match", passed.tests, passed.golden);

    // 5 (before anything is written): the files are committed.
    let root = match git(&dir, &["rev-parse", "--show-toplevel"]) {
        Ok(root) => PathBuf::from(root.trim()),
        Err(e) if args.allow_dirty => {
            eprintln!("not in a git repository ({e}); going on (--allow-dirty)");
            std::env::current_dir()?
        }
        Err(e) => {
            eprintln!("{} is not in a git repository ({e}): commit the bundle, or pass --allow-dirty", dir.display());
            return Ok(false);
        }
    };
    let dirty = git(&dir, &["status", "--porcelain", "--", "."]).unwrap_or_default();
    if !dirty.trim().is_empty() {
        if !args.allow_dirty {
            eprintln!("the bundle has changes that are not committed (git status --porcelain):\n{}", dirty.trim_end());
            eprintln!("commit them, or pass --allow-dirty");
            return Ok(false);
        }
        eprintln!("promoting uncommitted changes (--allow-dirty)");
    }

    // 4: what changes against the bundle promoted last.
    let baseline_path = root.join(BASELINE_FILE);
    let old: Value =
        std::fs::read_to_string(&baseline_path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null);
    let abs_dir = std::fs::canonicalize(&dir)?;
    let rel_dir =
        abs_dir.strip_prefix(std::fs::canonicalize(&root)?).unwrap_or(Path::new("")).to_string_lossy().into_owned();
    let (previous, against): (Box<dyn PolicyEngine>, String) = match promoted_bundle(&root, &old, &rel_dir) {
        Some(prev) => {
            let label = format!("promoted bundle {} ({})", short(prev.hash()), prev.revision());
            (Box::new(RegoPolicy::compile(&prev, DEFAULT_EVAL_TIMEOUT)?), label)
        }
        None => (Box::new(NativePolicy), "the native reference rules (nothing promoted yet)".to_owned()),
    };
    let changes = gate::diff(previous.as_ref(), &passed.policy);
    println!(
        "decision diff against {against}: {} of {} inputs change",
        changes.len(),
        warden_actors::authz::matrix::exhaustive().len()
    );
    for c in &changes {
        println!("  {c}");
    }

    // 6: the baseline.
    let commit = git(&root, &["rev-parse", "HEAD"]).ok().map(|c| c.trim().to_owned());
    let new = json!({
        "warden_version": env!("CARGO_PKG_VERSION"),
        "cargo_lock_sha256": sha256_file(&root.join("Cargo.lock")),
        "policy": {
            "dir": rel_dir,
            "hash": bundle.hash(),
            "revision": bundle.revision(),
            "commit": commit,
        },
        "storage_schema": warden_actors::version::STORAGE_SCHEMA,
        "wire_schema": warden_actors::version::WIRE_SCHEMA,
        "wire_version": warden_actors::version::WIRE.to_string(),
    });
    // What `warden gate` last recorded stays: it is not the promotion's to change.
    let mut new = new;
    if let Some(gates) = old.get("gates") {
        new["gates"] = gates.clone();
    }
    let mut lines = Vec::new();
    baseline_changes(&old, &new, "", &mut lines);
    std::fs::write(&baseline_path, format!("{}\n", serde_json::to_string_pretty(&new)?))
        .with_context(|| format!("cannot write {}", baseline_path.display()))?;
    if lines.is_empty() {
        println!("{} unchanged", baseline_path.display());
    } else {
        println!("{} updated:", baseline_path.display());
        for l in lines {
            println!("  {l}");
        }
    }
    Ok(true)
}

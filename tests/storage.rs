//! Storage as an operator sees it.
//!
//! A full disk is an expected condition: a node on a 64 MiB tmpfs made by
//! the test, with a 16 MiB free-space low watermark, is pushed under it by a
//! filler file. It refuses new work with 507 `storage_full` while reads, a
//! confirmation of an already-admitted action and that action's result go
//! through; `/v1/health` is critical with `storage_full`; a flood of refused
//! requests logs one ERROR line; it admits again once the filler is gone,
//! without a restart; and after a kill -9 every acknowledged record is there.
//!
//! Mounting a tmpfs needs root (CAP_SYS_ADMIN). Under `CI=true` the test
//! fails when it cannot mount one (`.ci/run` runs as root); elsewhere it is
//! skipped, saying why.
//!
//! Visibility: `/v1/health`, `/metrics` and `warden status` show the state's
//! rows and bytes per table, the oldest event and the last snapshot.

mod common;

use common::api::Api;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use warden::warden_actors::disk::free_space;

const MIB: u64 = 1 << 20;
const TMPFS_BYTES: u64 = 64 * MIB;
const WATERMARK_BYTES: u64 = 16 * MIB;
/// How long a condition (health, recovery) may take to show: the watermark
/// is checked every 100 ms here.
const CONDITION_TIMEOUT: Duration = Duration::from_secs(15);
const REFUSED_FLOOD: usize = 300;

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(bytes: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output();
        let why = match out {
            Ok(o) if o.status.success() => return Some(Tmpfs { dir }),
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            Err(e) => e.to_string(),
        };
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("cannot mount a tmpfs for the disk-full test (needs root): {why}");
        }
        eprintln!("SKIPPED: cannot mount a tmpfs (needs root): {why}");
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// A `warden node` whose log goes to a file the test reads.
struct LoggedNode {
    child: Child,
    url: String,
    log: PathBuf,
}

impl LoggedNode {
    fn start(data_dir: &Path, config: &Path, log: &Path) -> LoggedNode {
        let stderr = File::options().create(true).append(true).open(log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
        cmd.args(["node", "--http-addr", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stderr(Stdio::from(stderr))
            .stdin(Stdio::null());
        let (child, url) = warden::local::spawn_node(&mut cmd, Duration::from_secs(30)).expect("warden node");
        LoggedNode { child, url, log: log.to_owned() }
    }

    fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn error_lines(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter(|l| l.contains(" ERROR ")).map(str::to_owned).collect()
    }

    fn log_has(&self, needle: &str) -> bool {
        std::fs::read_to_string(&self.log).unwrap_or_default().contains(needle)
    }
}

impl Drop for LoggedNode {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// This file's helpers on the shared client.
impl Api {
    async fn turn(&self, session: &str) -> (StatusCode, Value) {
        self.post(&format!("/v1/sessions/{session}/turns"), json!({})).await
    }

    async fn submit(&self, turn: &str, capability: &str) -> (StatusCode, Value) {
        self.post("/v1/actions", json!({"turn_id": turn, "capability": capability, "args": {}})).await
    }

    async fn put_memory(&self, key: &str, value: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::PUT, &format!("/v1/memory/disk/{key}"), Some(json!({"value": value}))).await
    }

    /// Long-polls until the action is terminal.
    async fn finished(&self, id: &str) -> Value {
        let deadline = Instant::now() + CONDITION_TIMEOUT;
        while Instant::now() < deadline {
            let (s, a) = self.get(&format!("/v1/actions/{id}?wait_ms=2000")).await;
            assert_eq!(s, StatusCode::OK, "{a}");
            if !matches!(a["state"].as_str(), Some("awaiting_confirmation" | "pending" | "running")) {
                return a;
            }
        }
        panic!("action {id} did not finish");
    }

    /// Polls `/v1/health` until `pred` holds for it.
    async fn health_until(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + CONDITION_TIMEOUT;
        loop {
            let (s, h) = self.get("/v1/health").await;
            assert_eq!(s, StatusCode::OK, "{h}");
            if pred(&h) {
                return h;
            }
            assert!(Instant::now() < deadline, "health never became {what}: {h}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("node.toml");
    let text = format!(
        r#"
[storage]
min_free_bytes = {WATERMARK_BYTES}
min_free_percent = 100
check_every_ms = 100

[[capability]]
name = "search.web"
tier = 0
[[capability]]
name = "email.send"
tier = 2
"#
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Fills the file system of `dir` until `keep` bytes are left free.
fn fill_until(dir: &Path, keep: u64) -> PathBuf {
    let path = dir.join("filler");
    let free = free_space(dir).unwrap().free_bytes;
    let mut left = free.saturating_sub(keep);
    let mut f = File::create(&path).unwrap();
    let chunk = vec![0xA5u8; MIB as usize];
    while left > 0 {
        let n = left.min(MIB) as usize;
        f.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    f.sync_all().unwrap();
    path
}

fn is_storage_full(h: &Value) -> bool {
    h["status"] == "critical" && h["reasons"].as_array().is_some_and(|r| r.iter().any(|r| r["kind"] == "storage_full"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_new_work_keeps_admitted_work_and_recovers_without_a_restart() {
    let Some(fs) = Tmpfs::mount(TMPFS_BYTES) else { return };
    let work = tempfile::tempdir().unwrap();
    let config = write_config(work.path());
    let data_dir = fs.path().join("node");
    let mut node = LoggedNode::start(&data_dir, &config, &work.path().join("node.log"));
    let api = Api::new(&node.url);
    api.health_until("ok", |h| h["status"] == "ok").await;

    // Acknowledged before the disk fills: a turn, finished actions, memory, one awaiting confirmation.
    let (s, turn) = api.turn("s-disk").await;
    assert_eq!(s, StatusCode::CREATED, "{turn}");
    let turn = turn["turn_id"].as_str().unwrap().to_owned();
    let mut done = Vec::new();
    for _ in 0..5 {
        let (s, a) = api.submit(&turn, "search.web").await;
        assert_eq!(s, StatusCode::ACCEPTED, "{a}");
        done.push(a["action_id"].as_str().unwrap().to_owned());
    }
    for id in &done {
        assert_eq!(api.finished(id).await["state"], "succeeded");
    }
    for i in 0..5 {
        let (s, b) = api.put_memory(&format!("k{i}"), json!(i)).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let (s, waiting) = api.submit(&turn, "email.send").await;
    assert_eq!((s, waiting["state"].as_str()), (StatusCode::ACCEPTED, Some("awaiting_confirmation")), "{waiting}");
    let waiting = waiting["action_id"].as_str().unwrap().to_owned();

    // Under the watermark (half of it left), well before the disk is actually full.
    let filler = fill_until(fs.path(), WATERMARK_BYTES / 2);
    let h = api.health_until("critical with storage_full", is_storage_full).await;
    assert!(h["storage"]["free_bytes"].as_u64().unwrap() < WATERMARK_BYTES, "{h}");
    let (s, cluster) = api.get("/v1/health?scope=cluster").await;
    assert_eq!(s, StatusCode::OK);
    let deadline = Instant::now() + CONDITION_TIMEOUT;
    let mut cluster = cluster;
    while cluster["verdict"] != "critical" {
        assert!(Instant::now() < deadline, "the cluster verdict never became critical: {cluster}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        cluster = api.get("/v1/health?scope=cluster").await.1;
    }
    assert!(cluster["reasons"].as_array().unwrap().iter().any(|r| r["kind"] == "storage_full"), "{cluster}");

    // New work: 507 storage_full, and nothing recorded.
    let (s, b) = api.submit(&turn, "search.web").await;
    assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::INSUFFICIENT_STORAGE, Some("storage_full")), "{b}");
    let (s, b) = api.put_memory("refused", json!(1)).await;
    assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::INSUFFICIENT_STORAGE, Some("storage_full")), "{b}");
    let (s, b) = api.turn("s-refused").await;
    assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::INSUFFICIENT_STORAGE, Some("storage_full")), "{b}");
    // Reads still go through.
    let (s, b) = api.get(&format!("/v1/actions/{}", done[0])).await;
    assert_eq!((s, b["state"].as_str()), (StatusCode::OK, Some("succeeded")), "{b}");
    let (s, b) = api.get("/v1/memory/disk?limit=100").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(!b.to_string().contains("refused"), "a refused write left a record: {b}");
    // The confirmation of admitted work, and its result, go through.
    let (s, b) = api.post(&format!("/v1/actions/{waiting}/confirmation"), json!({"approve": true, "by": "op"})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(api.finished(&waiting).await["state"], "succeeded");

    // A flood of refused requests is not a flood of log lines.
    for _ in 0..REFUSED_FLOOD {
        assert_eq!(api.submit(&turn, "search.web").await.0, StatusCode::INSUFFICIENT_STORAGE);
    }
    let errors = node.error_lines();
    assert_eq!(errors.len(), 1, "one ERROR line for the crossing, none per refusal: {errors:#?}");
    assert!(errors[0].contains("low watermark"), "{}", errors[0]);

    // Space returns: admitted again, without a restart.
    std::fs::remove_file(&filler).unwrap();
    api.health_until("ok again", |h| h["status"] == "ok").await;
    assert!(node.log_has("new work is admitted"), "the recovery is logged");
    let (s, b) = api.submit(&turn, "search.web").await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let after = b["action_id"].as_str().unwrap().to_owned();
    assert_eq!(api.finished(&after).await["state"], "succeeded");
    let (s, b) = api.put_memory("after", json!("back")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(node.error_lines().len(), 1, "{:#?}", node.error_lines());

    // Nothing acknowledged is lost, across a kill -9 too.
    node.kill_9();
    let node = LoggedNode::start(&data_dir, &config, &work.path().join("node.log"));
    let api = Api::new(&node.url);
    for id in done.iter().chain([&waiting, &after]) {
        let (s, a) = api.get(&format!("/v1/actions/{id}")).await;
        assert_eq!((s, a["state"].as_str()), (StatusCode::OK, Some("succeeded")), "{id}: {a}");
    }
    let (s, b) = api.get("/v1/memory/disk?limit=100").await;
    assert_eq!(s, StatusCode::OK);
    let keys: Vec<&str> = b["items"].as_array().unwrap().iter().filter_map(|i| i["key"].as_str()).collect();
    for key in ["k0", "k1", "k2", "k3", "k4", "after"] {
        assert!(keys.contains(&key), "memory {key} lost: {b}");
    }
    assert!(!keys.contains(&"refused"), "{b}");
}

/// A metric's value in the exposition text (with `labels` a subset of its labels).
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("exposition text");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Counter(v) => v,
            _ => f64::NAN,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_status_show_table_sizes_the_oldest_event_and_the_last_snapshot() {
    const WRITES: u64 = 120;
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("node.toml");
    std::fs::write(&config, "[storage]\nsize_every_ms = 100\n\n[raft]\nsnapshot_every = 50\n").unwrap();
    let node = LoggedNode::start(&work.path().join("node"), &config, &work.path().join("node.log"));
    let api = Api::new(&node.url);
    let started_ms = warden::warden_actors::clock::wall_ms();
    for i in 0..WRITES {
        let (s, b) = api.put_memory(&format!("k{i}"), json!(i)).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let rows_of = |h: &Value, table: &str| {
        h["storage"]["size"]["tables"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["table"] == table))
            .map(|t| (t["rows"].as_u64().unwrap(), t["bytes"].as_u64().unwrap()))
    };
    // Measured after the writes, and a snapshot built past index 50.
    let h = api
        .health_until("measured after the writes, with a snapshot", |h| {
            rows_of(h, "memory").is_some_and(|(rows, _)| rows == WRITES) && !h["storage"]["last_snapshot"].is_null()
        })
        .await;
    let (memory_rows, memory_bytes) = rows_of(&h, "memory").unwrap();
    assert!(memory_bytes > 0, "{h}");
    let (event_rows, _) = rows_of(&h, "events").unwrap();
    assert!(event_rows >= WRITES, "a memory.write event per write: {event_rows} events");
    let tables: Vec<&str> =
        h["storage"]["size"]["tables"].as_array().unwrap().iter().filter_map(|t| t["table"].as_str()).collect();
    for t in ["log", "sessions", "turns", "actions", "active_actions", "dlq", "idempotency", "memory", "events"] {
        assert!(tables.contains(&t), "table {t} missing from {tables:?}");
    }
    let oldest = h["storage"]["size"]["oldest_event_ms"].as_u64().expect("an oldest event");
    assert!(
        oldest >= started_ms.saturating_sub(60_000) && oldest <= warden::warden_actors::clock::wall_ms(),
        "{oldest}"
    );
    let snap = &h["storage"]["last_snapshot"];
    assert!(snap["bytes"].as_u64().unwrap() > 0 && snap["last_index"].as_u64().unwrap() >= 50, "{snap}");

    // The cluster view carries the same report.
    let (s, cluster) = api.get("/v1/health?scope=cluster").await;
    assert_eq!(s, StatusCode::OK);
    assert!(!cluster["nodes"][0]["report"]["storage"]["size"]["tables"].as_array().unwrap().is_empty(), "{cluster}");

    let text = reqwest::get(format!("{}/metrics", node.url)).await.unwrap().text().await.unwrap();
    let rows = metric(&text, "warden_state_table_rows", &[("table", "memory")]).expect("memory rows");
    assert_eq!(rows as u64, memory_rows);
    assert!(metric(&text, "warden_state_table_bytes", &[("table", "events")]).is_some_and(|b| b > 0.0), "{text}");
    assert!(metric(&text, "warden_snapshot_bytes", &[]).is_some_and(|b| b > 0.0), "{text}");
    assert!(metric(&text, "warden_snapshot_build_seconds", &[]).is_some_and(|s| s >= 0.0), "{text}");
    assert_eq!(metric(&text, "warden_storage_state", &[]), Some(0.0));
    assert!(metric(&text, "warden_storage_free_bytes", &[]).is_some_and(|b| b > 0.0), "{text}");
    let oldest_s = metric(&text, "warden_state_oldest_event_timestamp_seconds", &[]).expect("oldest event");
    assert_eq!((oldest_s * 1000.0).round() as u64, oldest);

    let out = Command::new(env!("CARGO_BIN_EXE_warden")).args(["status", "--target", &node.url]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("a ") && l.contains("low watermark"))
        .unwrap_or_else(|| panic!("no storage line for node a in:\n{text}"));
    assert!(line.contains("largest") && line.contains("last snapshot") && !line.contains("none built"), "{line}");
}

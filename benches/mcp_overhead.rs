//! What warden adds to an MCP tool call: the same MCP client (the Python
//! `mcp` SDK, `tests/mcp/client.py bench`) calls the upstream's `echo` tool
//! (`tests/mcp/upstream.py`) directly, and through `POST /mcp` of a
//! one-node warden — a `warden` process of this build (tokens on, its log
//! durable: every commit fsync'd), and a node in this process with the log
//! volatile (no fsync, open on loopback), which shows warden's own work —
//! in the same run, one call at a time in one session each. Prints
//! p50/p90/p99 per path and the p50 added.
//!
//! Run: WARDEN_MCP_PYTHON=<python with mcp> cargo bench --bench mcp_overhead
//! (`MCP_BENCH_CALLS`, default 2000, after 200 warm-up calls per path;
//! `MCP_BENCH_MODE`, the client's protocol mode: `auto`, the default, which
//! settles on 2026-07-28 on every path, or `legacy` for `initialize` and a
//! session).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use warden::config::{AccessSettings, Auth};
use warden::http::{routes, serve, Api};
use warden::metrics::Metrics;
use warden_actors::consensus::Durability;
use warden_actors::domain::{Capability, ExecutorSpec, Tier};
use warden_actors::{Node, NodeConfig};

#[path = "../tests/mcp/upstream.rs"]
mod upstream;

use upstream::{script, Upstream};

const WARMUP: usize = 200;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A warden node in front of `upstream_url`; its `/mcp` URL and an agent token.
fn node(dir: &Path, upstream_url: &str) -> (Killed, String, String) {
    std::fs::create_dir_all(dir).unwrap();
    let token = warden::auth::create_token(&dir.join("tokens.toml"), "bench", warden::auth::Role::Agent).unwrap();
    let config = format!(
        "token_file = \"tokens.toml\"\n[[capability]]\nname = \"bench.echo\"\ntier = 0\n\
         executor = {{ kind = \"mcp\", url = \"{upstream_url}\", tool = \"echo\" }}\n"
    );
    std::fs::write(dir.join("node.toml"), config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["node", "--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .arg("--config")
        .arg(dir.join("node.toml"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the node starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("a listening line").unwrap();
        if let Some(rest) = line.split(" listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    (Killed(child), format!("{url}/mcp"), token)
}

/// A volatile node in this process, served open on loopback; its `/mcp` URL.
async fn in_process(dir: &Path, upstream_url: &str) -> (tokio::sync::watch::Sender<bool>, String) {
    let echo = Capability {
        executor: ExecutorSpec::Mcp { url: Some(upstream_url.to_owned()), command: Vec::new(), tool: "echo".into() },
        ..Capability::new("bench.echo", Tier::Observe)
    };
    let mut config = NodeConfig::new("v", dir, vec![echo]);
    config.durability = Durability::Volatile;
    let node = Arc::new(Node::start(config).await.unwrap());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let api = Arc::new(Api {
        node,
        metrics: Arc::new(Metrics::new()),
        shutdown,
        cluster: None,
        access: AccessSettings { auth: Auth::Open { explicit: false }, metrics_open: true },
        mcp: Default::default(),
    });
    let listener = serve::listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(serve::serve(listener, routes(api), serve::Limits::default(), None, std::future::pending()));
    (stop, url)
}

/// Each call's latency in µs, after the warm-up.
fn calls(python: &Path, mode: &str, url: &str, token: &str, tool: &str, n: usize) -> Vec<u64> {
    let out = Command::new(python)
        .arg(script("client.py"))
        .args([url, token, "--mode", mode, "bench", tool, r#"{"text": "ping"}"#, &(WARMUP + n).to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("the client runs");
    assert!(out.status.success(), "the bench client failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["latencies_us"].as_array().unwrap().iter().skip(WARMUP).map(|x| x.as_u64().unwrap()).collect()
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let Some(python) = std::env::var_os("WARDEN_MCP_PYTHON").map(PathBuf::from) else {
        eprintln!("SKIPPED: WARDEN_MCP_PYTHON is not set (a Python with the `mcp` package; see .ci/run)");
        return;
    };
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("MCP_BENCH_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    let mode = std::env::var("MCP_BENCH_MODE").unwrap_or_else(|_| "auto".into());
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start(&python, &dir.path().join("upstream"));
    let up_url = up.url();
    let (_node, node_url, token) = node(&dir.path().join("node"), &up_url);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_stop, volatile_url) = rt.block_on(in_process(&dir.path().join("volatile"), &up_url));

    let mut rows = Vec::new();
    for (name, url, token, tool) in [
        ("direct", up_url.as_str(), "none", "echo"),
        ("warden, durable", node_url.as_str(), token.as_str(), "bench.echo"),
        ("warden, volatile", volatile_url.as_str(), "none", "bench.echo"),
    ] {
        let mut l = calls(&python, &mode, url, token, tool, n);
        l.sort_unstable();
        rows.push((name, pct(&l, 0.5), pct(&l, 0.9), pct(&l, 0.99)));
    }
    println!("mcp_overhead: {n} sequential calls per path (after {WARMUP} warm-up, client mode {mode}), µs");
    println!("{:<22} {:>8} {:>8} {:>8} {:>12}", "path", "p50", "p90", "p99", "p50 added");
    let direct = rows[0].1;
    for (name, p50, p90, p99) in rows {
        println!("{name:<22} {p50:>8} {p90:>8} {p99:>8} {:>12}", p50 as i64 - direct as i64);
    }
}

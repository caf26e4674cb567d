//! The Python upstream MCP server (`tests/mcp/upstream.py`), killed on
//! drop: shared by `tests/mcp.rs` and `benches/mcp_overhead.rs`.

// Each includer uses its own part of it.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest the server may take to listen after a (re)start.
const LISTEN: Duration = Duration::from_secs(60);

/// A file of `tests/mcp/`.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp").join(name)
}

pub struct Upstream {
    child: Child,
    python: PathBuf,
    port: u16,
    dir: PathBuf,
}

impl Upstream {
    /// Starts the server on a free loopback port, logging under `dir`, and
    /// waits until it listens.
    pub fn start(python: &Path, dir: &Path) -> Upstream {
        std::fs::create_dir_all(dir).unwrap();
        let port = warden::local::free_ports(1).expect("a free port");
        let child = Upstream::spawn(python, port, dir);
        let up = Upstream { child, python: python.to_owned(), port, dir: dir.to_owned() };
        up.wait_listening();
        up
    }

    fn spawn(python: &Path, port: u16, dir: &Path) -> Child {
        Command::new(python)
            .arg(script("upstream.py"))
            .args(["--port", &port.to_string(), "--dir"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the upstream MCP server starts")
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + LISTEN;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "the upstream did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// kill -9, then the same server on the same port and log.
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Upstream::spawn(&self.python, self.port, &self.dir);
        self.wait_listening();
    }

    /// Every start and completion it logged, in order.
    pub fn log(&self) -> Vec<Value> {
        log_in(&self.dir)
    }

    /// How often `event` ("start" or "done") was logged for `key`.
    pub fn count(&self, event: &str, key: &str) -> usize {
        self.log().iter().filter(|e| e["event"] == event && e["key"] == key).count()
    }

    pub fn ran(&self, tool: &str) -> Vec<Value> {
        self.log().into_iter().filter(|e| e["event"] == "done" && e["tool"] == tool).collect()
    }
}

/// Every start and completion a server logging under `dir` logged, in order
/// (also a stdio server warden started).
pub fn log_in(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("log.jsonl")).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

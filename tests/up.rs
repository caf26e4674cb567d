//! `warden up`: a local cluster of real processes that find each other, that
//! Ctrl-C stops completely, and whose log is quiet when all is well.

mod common;

use common::process::free_ports;
use common::serial::one_cluster_at_a_time;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `warden up` in its own process group: dropping this kills it and every
/// node it started, whatever the test did.
struct Up {
    child: Child,
    stdout: Receiver<String>,
    /// Everything the nodes (and `up`) wrote to stderr: their log.
    stderr: Arc<Mutex<Vec<String>>>,
    urls: Vec<String>,
    /// The admin token `up` printed.
    admin_token: String,
    /// The CA `up --tls` printed for clients.
    ca: Option<std::path::PathBuf>,
}

impl Up {
    /// Starts `warden up --nodes 3` with `extra` arguments, as a newcomer
    /// would (no RUST_LOG), and waits until it has printed its nodes.
    fn start(dir: &Path, extra: &[&str]) -> Up {
        let (http, cluster) = (free_ports(3), free_ports(3));
        let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["up", "--nodes", "3", "--http-port", &http.to_string(), "--cluster-port", &cluster.to_string()])
            .args(extra)
            .arg("--data-dir")
            .arg(dir)
            .env_remove("RUST_LOG")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, stdout) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (err, sink) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut up = Up { child, stdout, stderr, urls: Vec::new(), admin_token: String::new(), ca: None };
        loop {
            let line = up.stdout.recv_timeout(Duration::from_secs(60)).expect("warden up reports its nodes");
            if let Some(rest) = line.strip_prefix("node ").and_then(|l| l.split(": ").nth(1)) {
                up.urls.push(rest.split_whitespace().next().unwrap().to_owned());
            }
            if let Some(rest) = line.strip_prefix("admin token: ") {
                up.admin_token = rest.split_whitespace().next().unwrap().to_owned();
            }
            if let Some(rest) = line.strip_prefix("tls: ").and_then(|l| l.split("--ca ").nth(1)) {
                up.ca = Some(rest.split_whitespace().next().unwrap().into());
            }
            if line.starts_with("Ctrl-C stops") {
                break;
            }
        }
        let scheme = if extra.contains(&"--tls") { "https" } else { "http" };
        assert_eq!(up.urls, (0..3).map(|i| format!("{scheme}://127.0.0.1:{}", http + i)).collect::<Vec<_>>());
        assert_eq!(up.ca.is_some(), scheme == "https", "up --tls prints its CA, and only then");
        let stored = std::fs::read_to_string(dir.join("admin.token")).expect("admin.token is written");
        assert_eq!(up.admin_token, stored, "the printed admin token is the one in admin.token");
        assert!(dir.join("agent.token").exists() && dir.join("tokens.toml").exists());
        up
    }

    /// Waits until node a sees all three nodes up (asking with the admin token `up` printed).
    async fn all_up(&self) {
        let http = warden::auth::client(Duration::from_secs(5), Some(&self.admin_token), self.ca.as_deref()).unwrap();
        let anonymous = warden::auth::client(Duration::from_secs(5), None, self.ca.as_deref()).unwrap();
        let refused = anonymous.get(format!("{}/v1/cluster", self.urls[0])).send().await.unwrap();
        assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED, "up's nodes need a token");
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let view: Value =
                    http.get(format!("{}/v1/cluster", self.urls[0])).send().await.unwrap().json().await.unwrap();
                let up = view["nodes"].as_array().unwrap().iter().filter(|n| n["state"] == "up").count();
                if up == 3 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("node a sees all three nodes up");
    }

    /// Ctrl-C, then waits (bounded) for `warden up` to exit.
    fn interrupt(&mut self) -> ExitStatus {
        assert!(Command::new("kill").arg("-INT").arg(self.child.id().to_string()).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "warden up did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log lines at ERROR level (the fmt layer writes the level after the
    /// time), and panics.
    fn error_lines(&self) -> Vec<String> {
        let log = self.stderr.lock().unwrap();
        log.iter()
            .filter(|l| l.split_whitespace().nth(1) == Some("ERROR") || l.contains("panicked at"))
            .cloned()
            .collect()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        // `--`: procps-ng's kill 4.0 misreads a negative pid placed after the signal without it.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-s", "KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn up_starts_a_cluster_that_sees_itself_and_ctrl_c_stops_every_node() {
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let mut up = Up::start(dir.path(), &[]);
    assert!(dir.path().join("cookie").exists(), "a cookie is generated");
    up.all_up().await;

    let status = up.interrupt();
    assert!(status.success(), "{status:?}");
    for url in &up.urls {
        assert!(reqwest::get(format!("{url}/v1/health")).await.is_err(), "{url} still answers after Ctrl-C");
    }
}

/// How many demo actions must succeed before the cluster has shown its normal life.
const DEMO_SUCCEEDED: usize = 60;

#[tokio::test]
async fn up_with_the_demo_logs_no_error_from_start_through_load_to_ctrl_c() {
    demo_runs_without_error(&[]).await;
}

/// `up --tls`: the same demo, over HTTPS and a TLS cluster transport, with
/// the CA it printed; a client without that CA is not answered.
#[tokio::test]
async fn up_with_tls_runs_the_demo_over_https_with_the_ca_it_prints() {
    demo_runs_without_error(&["--tls"]).await;
}

async fn demo_runs_without_error(extra: &[&str]) {
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let mut up = Up::start(dir.path(), &[&["--demo"], extra].concat());
    up.all_up().await;
    if let Some(ca) = &up.ca {
        assert!(ca.starts_with(dir.path()), "the CA is under the data dir: {}", ca.display());
        assert!(reqwest::get(format!("{}/v1/health", up.urls[0])).await.is_err(), "a client without the CA");
    }
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let (base, token, ca) = (&up.urls[0], Some(up.admin_token.as_str()), up.ca.as_deref());
            let succeeded = warden::soak::workload::events_of_kind_as(base, "action.succeeded", token, ca).await;
            if succeeded.is_ok_and(|s| s.len() >= DEMO_SUCCEEDED) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await
    .expect("the demo workload runs");
    let status = up.interrupt();
    assert!(status.success(), "{status:?}");
    let errors = up.error_lines();
    let log = up.stderr.lock().unwrap().join("\n");
    assert!(errors.is_empty(), "ERROR lines in a healthy run:\n{}\n--- the whole log:\n{log}", errors.join("\n"));
}

//! `warden up`: a local cluster of real processes that find each other, and
//! that Ctrl-C stops completely.

mod common;

use common::process::free_ports;
use common::serial::one_cluster_at_a_time;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test]
async fn up_starts_a_cluster_that_sees_itself_and_ctrl_c_stops_every_node() {
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let (http, cluster) = (free_ports(3), free_ports(3));
    let mut up = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["up", "--nodes", "3", "--http-port", &http.to_string(), "--cluster-port", &cluster.to_string()])
        .arg("--data-dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct KillOnDrop(u32);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = Command::new("kill").arg("-KILL").arg(self.0.to_string()).status();
        }
    }
    let _guard = KillOnDrop(up.id());
    let stdout = up.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut urls = Vec::new();
    loop {
        let line = rx.recv_timeout(Duration::from_secs(60)).expect("warden up reports its nodes");
        if let Some(rest) = line.strip_prefix("node ").and_then(|l| l.split(": ").nth(1)) {
            urls.push(rest.split_whitespace().next().unwrap().to_owned());
        }
        if line.starts_with("Ctrl-C stops") {
            break;
        }
    }
    assert_eq!(urls, (0..3).map(|i| format!("http://127.0.0.1:{}", http + i)).collect::<Vec<_>>());
    assert!(dir.path().join("cookie").exists(), "a cookie is generated");

    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let view: Value = reqwest::get(format!("{}/v1/cluster", urls[0])).await.unwrap().json().await.unwrap();
            let up = view["nodes"].as_array().unwrap().iter().filter(|n| n["state"] == "up").count();
            if up == 3 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("node a sees all three nodes up");

    assert!(Command::new("kill").arg("-INT").arg(up.id().to_string()).status().unwrap().success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = up.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "warden up did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    for url in &urls {
        assert!(reqwest::get(format!("{url}/v1/health")).await.is_err(), "{url} still answers after Ctrl-C");
    }
}

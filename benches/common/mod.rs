//! A 3-node loopback cluster of release `warden node` processes for the
//! multi-node benches.

#[path = "../../tests/common/process.rs"]
#[allow(dead_code)]
mod process;

use process::{free_port, loopback, node_args, NodeProcess};
use serde_json::json;
use std::time::{Duration, Instant};

pub struct Cluster {
    _dir: tempfile::TempDir,
    pub nodes: Vec<NodeProcess>,
}

impl Cluster {
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url.clone()).collect()
    }
}

/// Starts nodes a, b, c founding one group; `config` (TOML) is given to each.
pub fn start_cluster(config: Option<&str>) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let cookie = dir.path().join("cookie");
    std::fs::write(&cookie, "bench-cookie-0123456789").unwrap();
    let config_path = dir.path().join("node.toml");
    if let Some(config) = config {
        std::fs::write(&config_path, config).unwrap();
    }
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let nodes = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let seeds: Vec<String> =
                ports.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, &p)| loopback(p)).collect();
            let mut args = node_args(name, ports[i], &seeds, &cookie);
            args.extend(["--bootstrap".into(), "a,b,c".into()]);
            NodeProcess::start_with(&dir.path().join(name), config.map(|_| config_path.as_path()), &args)
        })
        .collect();
    Cluster { _dir: dir, nodes }
}

/// Waits until every node accepts a write (a leader exists and all are connected).
pub async fn settle(client: &reqwest::Client, urls: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for url in urls {
        loop {
            let r = client.put(format!("{url}/v1/memory/settle/k")).json(&json!({"value": 1})).send().await;
            if r.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(Instant::now() < deadline, "{url} never accepted a write");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

//! A multi-process cluster for replication and chaos tests: N `warden node`
//! processes founding one Raft group, every link between two nodes routed
//! through its own fault proxy (node i dials node j > i through proxy (i, j),
//! and transitive dialling is off), so any pair can be partitioned. With
//! `start_tls`, every node serves HTTPS and runs its cluster transport over
//! mutual TLS (a throwaway CA under the test's directory), and the harness's
//! client trusts that CA.

use super::process::{free_ports, loopback, node_args, NodeProcess};
use super::proxy::Proxy;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bound on every wait for the cluster to reach a state.
pub const CLUSTER_WAIT: Duration = Duration::from_secs(30);

pub struct Cluster {
    pub names: Vec<String>,
    pub nodes: Vec<NodeProcess>,
    /// Each node's cluster transport port (the proxies forward to these).
    pub ports: Vec<u16>,
    proxies: BTreeMap<(usize, usize), Proxy>,
    pub dir: PathBuf,
    http: reqwest::Client,
    /// The CA the nodes' certificates chain to, when they run TLS.
    pub ca: Option<PathBuf>,
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap()
}

/// `warden node` arguments for a node's TLS files.
pub fn tls_args(files: &warden::tls::TlsFiles) -> Vec<String> {
    let mut args = vec!["--tls-cert".into(), files.cert.display().to_string()];
    args.extend(["--tls-key".into(), files.key.display().to_string()]);
    if let Some(ca) = &files.ca {
        args.extend(["--tls-ca".into(), ca.display().to_string()]);
    }
    args
}

/// `POST url` with a JSON body: (status, JSON reply).
pub async fn post(url: String, body: Value) -> (u16, Value) {
    let r = http().post(url).json(&body).send().await.expect("node answers");
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

/// `DELETE url`: (status, JSON reply).
pub async fn delete(url: String) -> (u16, Value) {
    let r = http().delete(url).send().await.expect("node answers");
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

impl Cluster {
    /// Starts `n` nodes named a, b, c… with `extra_config` appended to each
    /// node's TOML, and waits until they agree on a leader.
    pub fn start(dir: &Path, n: usize, extra_config: &str) -> Cluster {
        Self::start_each(dir, &vec![extra_config.to_owned(); n])
    }

    /// `start` with each node's own `extra_config` (one per node).
    pub fn start_each(dir: &Path, extra_configs: &[String]) -> Cluster {
        Self::start_with_tls(dir, extra_configs, false)
    }

    /// `start` over TLS: HTTPS and a mutual-TLS cluster transport, with
    /// certificates from `warden::tls::generate` under `dir/tls`.
    pub fn start_tls(dir: &Path, n: usize, extra_config: &str) -> Cluster {
        Self::start_with_tls(dir, &vec![extra_config.to_owned(); n], true)
    }

    fn start_with_tls(dir: &Path, extra_configs: &[String], tls: bool) -> Cluster {
        let n = extra_configs.len();
        let names: Vec<String> = (0..n).map(|i| ((b'a' + i as u8) as char).to_string()).collect();
        let cookie = dir.join("cookie");
        std::fs::write(&cookie, "test-cookie-0123456789").unwrap();
        let base = free_ports(n as u16);
        let ports: Vec<u16> = (0..n as u16).map(|i| base + i).collect();
        let mut proxies = BTreeMap::new();
        for i in 0..n {
            for (j, port) in ports.iter().enumerate().skip(i + 1) {
                proxies.insert((i, j), Proxy::start(loopback(*port).parse().unwrap()));
            }
        }
        let voters = names.join(",");
        let tls = tls.then(|| warden::tls::generate(&dir.join("tls"), &names).expect("certificates"));
        let mut nodes = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let config = dir.join(format!("{name}.toml"));
            std::fs::write(&config, format!("cluster_transitive = false\n{}\n", extra_configs[i])).unwrap();
            let seeds: Vec<String> = (i + 1..n).map(|j| proxies[&(i, j)].addr.to_string()).collect();
            let mut args = node_args(name, ports[i], &seeds, &cookie);
            args.extend(["--bootstrap".into(), voters.clone()]);
            if let Some(tls) = &tls {
                args.extend(tls_args(&tls.nodes[i]));
            }
            nodes.push(NodeProcess::start_with(&dir.join(name), Some(&config), &args));
        }
        let ca = tls.map(|t| t.ca);
        let http = match &ca {
            Some(ca) => {
                warden::auth::client(Duration::from_secs(15), None, Some(ca)).expect("a client trusting the CA")
            }
            None => http(),
        };
        Cluster { names, nodes, ports, proxies, dir: dir.to_owned(), http, ca }
    }

    /// The harness's client (it trusts the cluster's CA when there is one).
    pub fn client(&self) -> &reqwest::Client {
        &self.http
    }

    /// Waits until the start-up churn is over: a leader, every node connected
    /// to every other and seeing every other up (its Registry's heartbeats),
    /// and a write through each node acknowledged.
    pub async fn settled(&self) {
        let n = self.nodes.len();
        self.leader_among(&self.all(), 0).await;
        let deadline = Instant::now() + CLUSTER_WAIT;
        for i in self.all() {
            loop {
                let view = self.get(i, "/v1/cluster").await.unwrap_or_default();
                let connected = view["transport"]["peers"]
                    .as_array()
                    .map_or(0, |p| p.iter().filter(|p| p["state"] == "connected").count());
                let up = view["nodes"].as_array().map_or(0, |p| p.iter().filter(|p| p["state"] == "up").count());
                if connected == n - 1 && up == n && self.put_memory(i, "settle", &self.names[i]).await == Some(200) {
                    break;
                }
                assert!(Instant::now() < deadline, "node {i} did not settle: {view}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    pub fn index_of(&self, name: &str) -> usize {
        self.names.iter().position(|n| n == name).unwrap_or_else(|| panic!("no node {name}"))
    }

    pub fn url(&self, i: usize) -> &str {
        &self.nodes[i].url
    }

    pub async fn get(&self, i: usize, path: &str) -> Option<Value> {
        let r = self.http.get(format!("{}{path}", self.url(i))).send().await.ok()?;
        r.json().await.ok()
    }

    /// Opens a turn of `session` through node `i`; returns its id.
    pub async fn open_turn(&self, i: usize, session: &str) -> String {
        let r = self.http.post(format!("{}/v1/sessions/{session}/turns", self.url(i))).json(&json!({})).send().await;
        let r = r.expect("node answers");
        let (status, turn) = (r.status().as_u16(), r.json::<Value>().await.unwrap_or_default());
        assert_eq!(status, 201, "{turn}");
        turn["turn_id"].as_str().expect("a turn id").to_owned()
    }

    /// Node `i`'s Raft view (`GET /v1/cluster`'s `raft`), if it answers.
    pub async fn raft(&self, i: usize) -> Option<Value> {
        self.get(i, "/v1/cluster").await.map(|v| v["raft"].clone())
    }

    /// Waits until one of `among` says it leads (in a term above `after_term`)
    /// and returns its index and term.
    pub async fn leader_among(&self, among: &[usize], after_term: u64) -> (usize, u64) {
        let deadline = Instant::now() + CLUSTER_WAIT;
        loop {
            for &i in among {
                if let Some(r) = self.raft(i).await {
                    let term = r["term"].as_u64().unwrap_or(0);
                    if r["role"] == "leader" && term > after_term {
                        return (i, term);
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader among {among:?} within {CLUSTER_WAIT:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until node `via`'s view of the cluster shows at least `at_least`
    /// attempts running on node `on` (so a fault on `on` lands mid-attempt);
    /// returns the count seen.
    pub async fn running_on(&self, via: usize, on: usize, at_least: u64) -> u64 {
        let name = &self.names[on];
        let deadline = Instant::now() + CLUSTER_WAIT;
        loop {
            let view = self.get(via, "/v1/cluster").await.unwrap_or_default();
            let running = view["nodes"]
                .as_array()
                .and_then(|ns| ns.iter().find(|n| n["name"] == name.as_str()))
                .and_then(|n| n["running"].as_u64())
                .unwrap_or(0);
            if running >= at_least {
                return running;
            }
            assert!(Instant::now() < deadline, "never {at_least} attempts running on {name}: {view}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn all(&self) -> Vec<usize> {
        (0..self.nodes.len()).collect()
    }

    /// The proxy on the link between nodes `i` and `j`.
    pub fn link(&self, i: usize, j: usize) -> &Proxy {
        &self.proxies[&(i.min(j), i.max(j))]
    }

    /// Blackholes every link of node `i`: it stays up but hears nothing.
    pub fn isolate(&self, i: usize) {
        for j in self.all().into_iter().filter(|&j| j != i) {
            self.link(i, j).blackhole();
        }
    }

    pub fn heal_all(&self) {
        for p in self.proxies.values() {
            p.heal();
        }
    }

    /// Waits until every node in `among` has applied the same log index with
    /// the same state digest; returns that digest.
    pub async fn converged(&self, among: &[usize]) -> String {
        let deadline = Instant::now() + CLUSTER_WAIT;
        loop {
            let mut seen = Vec::new();
            for &i in among {
                seen.push(
                    self.get(i, "/v1/cluster/digest").await.map(|d| (d["applied_index"].clone(), d["digest"].clone())),
                );
            }
            if seen.iter().all(|s| s.is_some() && *s == seen[0]) {
                return seen[0].as_ref().unwrap().1.as_str().unwrap().to_owned();
            }
            assert!(Instant::now() < deadline, "nodes {among:?} did not converge: {seen:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every event on node `i`'s timeline, paged.
    pub async fn timeline(&self, i: usize) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = self.get(i, &format!("/v1/timeline?after={after}&limit=10000")).await.expect("timeline");
            let events = page["events"].as_array().unwrap().clone();
            if events.is_empty() {
                return out;
            }
            after = events.last().unwrap()["seq"].as_u64().unwrap();
            out.extend(events);
        }
    }

    /// `PUT /v1/memory/{ns}/{key}` on node `i`: Some(status) if it answered.
    pub async fn put_memory(&self, i: usize, ns: &str, key: &str) -> Option<u16> {
        let r = self
            .http
            .put(format!("{}/v1/memory/{ns}/{key}", self.url(i)))
            .json(&json!({"value": {"key": key}}))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        if status >= 300 {
            eprintln!("PUT {ns}/{key} on {}: {status} {}", self.names[i], r.text().await.unwrap_or_default());
        }
        Some(status)
    }
}

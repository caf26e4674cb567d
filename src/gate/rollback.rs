//! The rollback drill (gate 10): a local cluster of the previous release
//! under load is rolled to this build node by node, then back node by node.
//! Measured: how long the rollback takes, and that no acknowledged action is
//! lost, every one ends terminal, and the replicas' state digests agree.
//!
//! The previous release is built from its git tag in a worktree under
//! `target/rollback/` (release profile, cached there). When the previous tag
//! is this build's own version there is nothing older to run: the drill then
//! rolls this build to itself, which still stops and restarts every node on
//! its data dir under load.

use crate::local::{free_ports, LocalCluster, LocalSpec};
use crate::soak::workload::{self, settle, submit_all, Targets, WorkloadSpec};
use crate::soak::{catalog_toml, soak_catalog};
use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The bound of gate 10.
pub const ROLLBACK_BOUND: Duration = Duration::from_secs(60);
/// How long a restarted node gets to see a leader again.
const READY_WITHIN: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct Drill {
    pub nodes: usize,
    /// The previous release's executable, and the one rolled to.
    pub previous: PathBuf,
    pub head: PathBuf,
    pub actions: usize,
    pub rate: f64,
    pub dir: PathBuf,
}

#[derive(Clone, Debug, Serialize)]
pub struct DrillReport {
    pub nodes: usize,
    pub upgrade_ms: u64,
    pub rollback_ms: u64,
    pub submitted: usize,
    pub acknowledged: usize,
    pub unacknowledged: usize,
    /// Acknowledged actions not found at the end.
    pub lost: usize,
    /// Acknowledged actions found but not terminal at the end.
    pub not_terminal: usize,
    /// Each node's `(applied_index, digest)` at the end.
    pub digests: Vec<(u64, String)>,
    pub digests_equal: bool,
}

impl DrillReport {
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.not_terminal == 0
            && self.digests_equal
            && self.acknowledged > 0
            && Duration::from_millis(self.rollback_ms) < ROLLBACK_BOUND
    }
}

/// The previous release's `warden`: `tag` checked out in a worktree under
/// `<root>/target/rollback/<tag>` and built there in release mode (kept, so
/// a second drill builds nothing).
pub fn build_tag(root: &Path, tag: &str) -> anyhow::Result<PathBuf> {
    let base = root.join("target/rollback");
    let src = base.join(format!("{tag}-src"));
    let target = base.join("target");
    std::fs::create_dir_all(&base)?;
    if !src.exists() {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(["worktree", "add", "--detach"])
            .arg(&src)
            .arg(tag)
            .output()
            .context("cannot run git")?;
        if !out.status.success() {
            bail!("git worktree add {tag}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
    }
    let status = std::process::Command::new("cargo")
        .args(["build", "--release", "--locked", "--bin", "warden"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(&src)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("building {tag} failed");
    }
    Ok(target.join("release/warden"))
}

async fn view(http: &reqwest::Client, url: &str) -> Option<Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// Waits until node `i` names a leader (it has rejoined the group).
async fn ready(targets: &Targets, i: usize) -> anyhow::Result<()> {
    let http = workload::client();
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if let Some(v) = view(&http, &format!("{}/v1/cluster", targets.get(i))).await {
            if v["leader"].is_string() {
                return Ok(());
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "node {i} saw no leader within {READY_WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Restarts every node in turn on `exe`, each once the previous one is back; the time it took.
async fn roll(cluster: &Arc<parking_lot::Mutex<LocalCluster>>, targets: &Targets, exe: &Path) -> anyhow::Result<u64> {
    let start = Instant::now();
    for i in 0..targets.len() {
        let (c, exe) = (cluster.clone(), exe.to_owned());
        tokio::task::spawn_blocking(move || c.lock().restart_as(i, &exe)).await??;
        targets.set(i, cluster.lock().url(i).to_owned());
        ready(targets, i).await?;
    }
    Ok(start.elapsed().as_millis() as u64)
}

/// Every node's `(applied_index, digest)` once they all stand at one index
/// (bounded); what they last showed otherwise.
async fn digests(targets: &Targets) -> Vec<(u64, String)> {
    let http = workload::client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut out = Vec::new();
        for i in 0..targets.len() {
            let v = view(&http, &format!("{}/v1/cluster/digest", targets.get(i))).await.unwrap_or(Value::Null);
            out.push((v["applied_index"].as_u64().unwrap_or(0), v["digest"].as_str().unwrap_or_default().to_owned()));
        }
        let same_index = out.windows(2).all(|w| w[0].0 == w[1].0);
        if same_index || Instant::now() > deadline {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn run(drill: Drill) -> anyhow::Result<DrillReport> {
    std::fs::create_dir_all(&drill.dir).with_context(|| format!("cannot create {}", drill.dir.display()))?;
    let caps: Vec<_> = soak_catalog("http://127.0.0.1:9/unused").into_iter().filter(|c| c.name == "soak.sim").collect();
    let config = drill.dir.join("drill.toml");
    std::fs::write(&config, catalog_toml(&caps)?)?;
    let spec = LocalSpec {
        nodes: drill.nodes,
        http_port: free_ports(drill.nodes)?,
        cluster_port: free_ports(drill.nodes)?,
        data_dir: drill.dir.clone(),
        config: Some(config),
        log: "warn,ractor=error,ractor_cluster=error",
        log_to_files: true,
        token_file: None,
        tls: None,
        exe: Some(drill.previous.clone()),
    };
    let cluster = tokio::task::spawn_blocking(move || LocalCluster::start(&spec)).await??;
    let targets = Targets::new(cluster.urls());
    let cluster = Arc::new(parking_lot::Mutex::new(cluster));
    for i in 0..targets.len() {
        ready(&targets, i).await?;
    }
    let spec = WorkloadSpec {
        run_id: format!("drill{}", warden_actors::clock::wall_ms()),
        actions: drill.actions,
        rate: drill.rate,
        capabilities: caps.iter().map(|c| c.name.clone()).collect(),
    };
    let submitting = tokio::spawn({
        let (targets, spec) = (targets.clone(), spec.clone());
        async move { submit_all(&targets, &spec, || {}).await }
    });
    // Under load: the workload has begun before the first node stops.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let upgrade_ms = roll(&cluster, &targets, &drill.head).await?;
    let rollback_ms = roll(&cluster, &targets, &drill.previous).await?;
    let submitted = submitting.await?;
    let views = settle(&targets, &submitted.acks).await;
    let lost = views.iter().filter(|v| v.is_none()).count();
    let not_terminal = views
        .iter()
        .flatten()
        .filter(|v| matches!(v["state"].as_str(), Some("pending" | "running" | "awaiting_confirmation") | None))
        .count();
    let digests = digests(&targets).await;
    let digests_equal = !digests.is_empty() && digests.windows(2).all(|w| w[0] == w[1]) && !digests[0].1.is_empty();
    let mut cluster = Arc::try_unwrap(cluster).map_err(|_| anyhow::anyhow!("cluster still shared"))?.into_inner();
    tokio::task::spawn_blocking(move || cluster.stop(|_| {})).await?;
    Ok(DrillReport {
        nodes: drill.nodes,
        upgrade_ms,
        rollback_ms,
        submitted: drill.actions,
        acknowledged: submitted.acks.len(),
        unacknowledged: submitted.unacknowledged.len(),
        lost,
        not_terminal,
        digests,
        digests_equal,
    })
}

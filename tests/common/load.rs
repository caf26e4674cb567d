//! A 3-node proxied cluster running the soak workload against an idempotent
//! tool, and the end-of-run checks (`warden::soak::check`): shared by the
//! chaos and orchestrator tests.

use super::cluster::Cluster;
use std::time::Duration;
use tempfile::TempDir;
use warden::soak::check::{check, Evidence, Kill, Report};
use warden::soak::tool::ToolServer;
use warden::soak::workload::{events_of_kind, settle, submit_all, Submitted, Targets, WorkloadSpec};
use warden::soak::{catalog_toml, soak_catalog};
use warden_actors::clock::wall_ms as now_ms;
use warden_actors::domain::Capability;

/// How long the tool holds each request in the load scenarios: long enough
/// that every node has attempts in flight when a fault lands (about 7 each
/// at 30 actions/s).
pub const HOLD: Duration = Duration::from_millis(1_500);

pub struct Run {
    pub cluster: Cluster,
    pub tool: ToolServer,
    pub caps: Vec<Capability>,
    pub targets: Targets,
    _dir: TempDir,
}

/// Starts 3 nodes whose `soak.tool` calls a tool holding each request `hold`;
/// `extra` is appended to every node's config.
pub async fn start(hold: Duration, tool_timeout_ms: u64, extra: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let tool = ToolServer::start(hold).await.unwrap();
    let mut caps = soak_catalog(&tool.url);
    caps[0].timeout_ms = tool_timeout_ms;
    caps[0].slo.p95_ms = hold.as_millis() as u64 + 1_000;
    let config = format!("{extra}\n{}", catalog_toml(&caps).unwrap());
    let cluster = Cluster::start(dir.path(), 3, &config);
    cluster.settled().await;
    let targets = Targets::new(cluster.all().iter().map(|&i| cluster.url(i).to_owned()).collect());
    Run { cluster, tool, caps, targets, _dir: dir }
}

impl Run {
    /// Starts `actions` actions at `rate` per second across all nodes.
    pub fn load(&self, name: &str, actions: usize, rate: f64) -> tokio::task::JoinHandle<Submitted> {
        let spec = WorkloadSpec {
            run_id: format!("{name}{}", now_ms()),
            actions,
            rate,
            capabilities: self.caps.iter().map(|c| c.name.clone()).collect(),
        };
        let targets = self.targets.clone();
        tokio::spawn(async move { submit_all(&targets, &spec, || {}).await })
    }

    pub fn restart(&mut self, i: usize) {
        self.cluster.nodes[i].restart();
        self.targets.set(i, self.cluster.url(i).to_owned());
    }

    /// Waits for every acknowledged action, checks the invariants and that
    /// the nodes converged; returns the report.
    pub async fn finish(&self, requested: usize, submitted: Submitted, kills: &[Kill]) -> Report {
        let views = settle(&self.targets, &submitted.acks).await;
        let takeovers = events_of_kind(&self.targets.get(0), "action.takeover").await.unwrap();
        let report = check(&Evidence {
            requested,
            submitted: &submitted,
            views: &views,
            tool: &self.tool,
            capabilities: &self.caps,
            takeovers: &takeovers,
            kills,
        });
        report.print();
        assert!(report.passed(), "invariants broken: {:?}", report.failures());
        assert!(submitted.unacknowledged.is_empty(), "submissions refused: {:?}", submitted.unacknowledged);
        assert_eq!(report.by_state.get("succeeded").copied(), Some(requested as u64), "{:?}", report.by_state);
        self.cluster.converged(&self.cluster.all()).await;
        report
    }
}

pub fn kill_of(run: &Run, i: usize) -> Kill {
    Kill { node: run.cluster.names[i].clone(), at_ms: now_ms() }
}

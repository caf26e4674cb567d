//! `warden soak`: a local cluster under a steady action workload while nodes
//! are killed (`kill -9`) and restarted on their data dirs, ending with a
//! check of the invariants (`check.rs`) and a pass/fail report. The tool the
//! actions call is `tool.rs`, an idempotent endpoint served by this process.
//! The chaos tests drive the same workload and checks against their own
//! fault scripts.

pub mod check;
pub mod graphs;
pub mod memory;
pub mod tool;
pub mod workload;

use crate::local::{free_ports, LocalCluster, LocalSpec};
use anyhow::Context;
use check::{check, Evidence, Kill, Report};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tool::ToolServer;
use warden_actors::clock::wall_ms as now_ms;
use warden_actors::domain::{Capability, ExecutorSpec, SloSpec, Tier};
use workload::{events_of_kind, settle, submit_all, Targets, WorkloadSpec};

/// How long the tool holds each request: a slow tool, so that every node has
/// attempts in flight when it is killed.
pub const TOOL_HOLD: Duration = Duration::from_secs(1);
/// How long a killed node stays down before it is restarted.
pub const RESTART_AFTER: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct SoakArgs {
    pub nodes: usize,
    pub actions: usize,
    pub rate: f64,
    /// Time between kills; None runs without faults.
    pub kill_every: Option<Duration>,
    pub data_dir: PathBuf,
    pub quiet: bool,
    /// The nodes' `[storage] cache_mb`; their default without it.
    pub cache_mb: Option<u64>,
}

/// The capabilities a soak runs: one calling the tool over HTTP, one simulated.
pub fn soak_catalog(tool_url: &str) -> Vec<Capability> {
    let mut tool = Capability::new("soak.tool", Tier::Reversible);
    tool.executor = ExecutorSpec::Http { url: tool_url.to_owned() };
    tool.timeout_ms = 5_000;
    tool.backoff_ms = 100;
    tool.slo = SloSpec { p95_ms: 2_000, error_budget: 0.01, windows: Vec::new() };
    let mut sim = Capability::new("soak.sim", Tier::Observe);
    sim.executor = ExecutorSpec::Sim { latency_ms: 20, jitter_ms: 10, fail_rate: 0.0, ramp: Default::default() };
    sim.slo = SloSpec { p95_ms: 500, error_budget: 0.01, windows: Vec::new() };
    vec![tool, sim]
}

/// The TOML `[[capability]]` tables for `caps`.
pub fn catalog_toml(caps: &[Capability]) -> anyhow::Result<String> {
    #[derive(serde::Serialize)]
    struct File<'a> {
        capability: &'a [Capability],
    }
    toml::to_string(&File { capability: caps }).context("cannot write the soak catalog")
}

/// What the soak's local cluster runs: its catalog (with the tool) written
/// as a config file beside the nodes' data, ports picked free.
fn cluster_spec(args: &SoakArgs, caps: &[Capability], dir: &Path) -> anyhow::Result<LocalSpec> {
    let config = dir.join("soak.toml");
    let storage = args.cache_mb.map(|mb| format!("[storage]\ncache_mb = {mb}\n")).unwrap_or_default();
    std::fs::write(&config, format!("{storage}{}", catalog_toml(caps)?))?;
    let (http_port, cluster_port) = (free_ports(args.nodes)?, free_ports(args.nodes)?);
    let spec = LocalSpec {
        nodes: args.nodes,
        http_port,
        cluster_port,
        data_dir: dir.to_owned(),
        config: Some(config),
        log: "warn,ractor=error,ractor_cluster=error",
        log_to_files: true,
        token_file: None,
        tls: None,
        exe: None,
    };
    Ok(spec)
}

pub async fn run(args: SoakArgs) -> anyhow::Result<Report> {
    let tool = ToolServer::start(TOOL_HOLD).await?;
    let caps = soak_catalog(&tool.url);
    let run_id = format!("soak{}", now_ms());
    let dir = args.data_dir.join(&run_id);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cluster = cluster_spec(&args, &caps, &dir)?;
    let say = |line: String| {
        if !args.quiet {
            println!("{line}");
        }
    };
    say(format!("starting {} nodes under {} (logs there; tool at {})", args.nodes, dir.display(), tool.url));
    let cluster = tokio::task::spawn_blocking(move || LocalCluster::start(&cluster)).await??;
    let targets = Targets::new(cluster.urls());
    let cluster = Arc::new(parking_lot::Mutex::new(cluster));
    wait_for_leader(&targets).await?;

    let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(args.actions as u64) };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} actions acknowledged {elapsed}").expect("template"),
    );
    let spec = WorkloadSpec {
        run_id: run_id.clone(),
        actions: args.actions,
        rate: args.rate,
        capabilities: caps.iter().map(|c| c.name.clone()).collect(),
    };
    let (stop_sampling, sampling) = tokio::sync::watch::channel(false);
    let names = (0..targets.len()).map(|i| cluster.lock().name(i).to_owned()).collect();
    let memory = memory::sample(targets.clone(), names, sampling);
    let tick_bar = bar.clone();
    let submitting = tokio::spawn({
        let (targets, spec) = (targets.clone(), spec.clone());
        async move { submit_all(&targets, &spec, move || tick_bar.inc(1)).await }
    });
    let log = |line: String| match (args.quiet, bar.is_hidden()) {
        (true, _) => {}
        (false, true) => println!("{line}"),
        (false, false) => bar.println(line),
    };
    let kills = chaos(&cluster, &targets, args.kill_every, &submitting, &log).await?;
    let submitted = submitting.await?;
    bar.finish();

    say(format!("waiting for {} acknowledged actions to finish…", submitted.acks.len()));
    let views = settle(&targets, &submitted.acks).await;
    let _ = stop_sampling.send(true);
    let memory = memory.await?;
    let takeovers = events_of_kind(&targets.get(0), "action.takeover").await?;
    std::fs::write(dir.join("takeovers.json"), serde_json::to_vec_pretty(&takeovers)?)?;
    let (graphs_checked, graph_violations) = graphs::check(&targets.get(0), &views).await?;
    let mut report = check(&Evidence {
        requested: args.actions,
        submitted: &submitted,
        views: &views,
        tool: &tool,
        capabilities: &caps,
        takeovers: &takeovers,
        kills: &kills,
    });
    report.graphs_checked = graphs_checked;
    report.graph_violations = graph_violations;
    report.memory = memory;
    for e in submitted.unacknowledged.iter().take(5) {
        say(format!("not acknowledged: {e}"));
    }
    let mut cluster = Arc::try_unwrap(cluster).map_err(|_| anyhow::anyhow!("cluster still shared"))?.into_inner();
    tokio::task::spawn_blocking(move || cluster.stop(|_| {})).await?;
    Ok(report)
}

/// Kills a node every `every` while the workload runs (the leader on odd
/// rounds, the least-killed other node on even ones), restarting it after
/// `RESTART_AFTER`.
async fn chaos(
    cluster: &Arc<parking_lot::Mutex<LocalCluster>>,
    targets: &Targets,
    every: Option<Duration>,
    submitting: &tokio::task::JoinHandle<workload::Submitted>,
    log: &impl Fn(String),
) -> anyhow::Result<Vec<Kill>> {
    let mut kills = Vec::new();
    let Some(every) = every else { return Ok(kills) };
    let n = targets.len();
    let mut killed = vec![0u32; n];
    let start = Instant::now();
    for round in 1usize.. {
        let next = start + every * round as u32;
        while Instant::now() < next {
            if submitting.is_finished() {
                return Ok(kills);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let leader = current_leader(targets).await;
        // Odd rounds kill the leader; even ones the node killed least so far.
        let victim = match leader {
            Some(l) if round % 2 == 1 || n == 1 => l,
            _ => (0..n).filter(|&i| Some(i) != leader).min_by_key(|&i| (killed[i], i)).unwrap_or(0),
        };
        killed[victim] += 1;
        let name = cluster.lock().name(victim).to_owned();
        cluster.lock().kill_9(victim);
        kills.push(Kill { node: name.clone(), at_ms: now_ms() });
        let role = if Some(victim) == leader { "leader" } else { "follower" };
        log(format!("{:>6.1}s  kill -9 {name} ({role})", start.elapsed().as_secs_f64()));
        tokio::time::sleep(RESTART_AFTER).await;
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || c.lock().restart(victim)).await??;
        targets.set(victim, cluster.lock().url(victim).to_owned());
        log(format!("{:>6.1}s  restarted {name}", start.elapsed().as_secs_f64()));
    }
    Ok(kills)
}

/// The index of the node that says it leads, if one answers.
async fn current_leader(targets: &Targets) -> Option<usize> {
    let http = workload::client();
    for i in 0..targets.len() {
        let view: serde_json::Value =
            http.get(format!("{}/v1/cluster", targets.get(i))).send().await.ok()?.json().await.ok()?;
        if view["raft"]["role"] == "leader" {
            return Some(i);
        }
    }
    None
}

async fn wait_for_leader(targets: &Targets) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while current_leader(targets).await.is_none() {
        anyhow::ensure!(Instant::now() < deadline, "no leader elected within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

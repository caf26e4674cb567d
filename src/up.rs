//! `warden up`: a local cluster on this machine — one OS process per node,
//! one generated cookie, data under `--data-dir`. Prints each node's URL and
//! the dashboard, streams a compact status line, and on Ctrl-C stops every
//! node (SIGTERM, then SIGKILL after a grace period), leaving no process.

use crate::demo::{self, DemoArgs};
use crate::local::{node_name, LocalCluster, LocalSpec};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::local::MAX_NODES;
pub const STATUS_EVERY: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct UpArgs {
    pub nodes: usize,
    pub demo: bool,
    pub http_port: u16,
    pub cluster_port: u16,
    pub data_dir: PathBuf,
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let spec = LocalSpec {
        nodes: args.nodes,
        http_port: args.http_port,
        cluster_port: args.cluster_port,
        data_dir: args.data_dir.clone(),
        config: None,
        // Keep the terminal for the status line; nodes speak up only when something is wrong.
        log: "warn,ractor=error,ractor_cluster=error,openraft=error,warp::server=off",
        log_to_files: false,
    };
    let mut nodes = tokio::task::spawn_blocking(move || LocalCluster::start(&spec)).await??;
    for i in 0..nodes.len() {
        println!(
            "node {}: {}  (cluster 127.0.0.1:{}, data {})",
            nodes.name(i),
            nodes.url(i),
            args.cluster_port as usize + i,
            args.data_dir.join(nodes.name(i)).display()
        );
    }
    let urls = nodes.urls();
    println!("dashboard: {}/", urls[0]);
    println!("Ctrl-C stops every node.");

    let mut demos = tokio::task::JoinSet::new();
    if args.demo {
        for (i, url) in urls.iter().enumerate() {
            let demo = DemoArgs {
                target: url.clone(),
                actions: usize::MAX / 2,
                rate: 5.0,
                seed: i as u64 + 1,
                quiet: true,
                degrade: None,
            };
            demos.spawn(demo::run(demo));
        }
    }
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let mut ticker = tokio::time::interval(STATUS_EVERY);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = ticker.tick() => println!("{}", status_line(&http, &urls).await),
        }
    }
    demos.abort_all();
    println!("stopping {} nodes…", nodes.len());
    tokio::task::spawn_blocking(move || nodes.stop(|line| println!("{line}"))).await?;
    Ok(())
}

/// `a:up(b up, c up) b:… | actions 120 | dlq 3` — each node's view of the others.
async fn status_line(http: &reqwest::Client, urls: &[String]) -> String {
    let mut parts = Vec::new();
    let mut last_seq = 0;
    for (i, url) in urls.iter().enumerate() {
        let name = node_name(i);
        let view: Option<Value> = match http.get(format!("{url}/v1/cluster")).send().await {
            Ok(r) => r.json().await.ok(),
            Err(_) => None,
        };
        let Some(view) = view else {
            parts.push(format!("{name}:unreachable"));
            continue;
        };
        let peers: Vec<String> = view["nodes"]
            .as_array()
            .map(|ns| {
                ns.iter()
                    .filter(|n| n["self"] != true)
                    .map(|n| format!("{} {}", n["name"].as_str().unwrap_or("?"), n["state"].as_str().unwrap_or("?")))
                    .collect()
            })
            .unwrap_or_default();
        if let Ok(r) = http.get(format!("{url}/v1/health")).send().await {
            if let Ok(h) = r.json::<Value>().await {
                last_seq = last_seq.max(h["last_index"].as_u64().unwrap_or(0));
            }
        }
        parts.push(format!("{name}:up({})", peers.join(", ")));
    }
    format!("{}  | log index max {last_seq}", parts.join("  "))
}

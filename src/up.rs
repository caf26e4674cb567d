//! `warden up`: a local cluster on this machine — one OS process per node,
//! one generated cookie, data under `--data-dir`. Prints each node's URL and
//! the dashboard, streams a compact status line, and on Ctrl-C stops every
//! node (SIGTERM, then SIGKILL after a grace period), leaving no process.

use crate::demo::{self, DemoArgs};
use anyhow::{bail, Context};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Most nodes `warden up` starts on one machine.
pub const MAX_NODES: usize = 9;
/// How long a node may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long nodes get to stop after SIGTERM before they are killed.
pub const STOP_GRACE: Duration = Duration::from_secs(15);
pub const STATUS_EVERY: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct UpArgs {
    pub nodes: usize,
    pub demo: bool,
    pub http_port: u16,
    pub cluster_port: u16,
    pub data_dir: PathBuf,
}

/// The node processes; killed on drop whatever happened.
struct Nodes(Vec<(String, Child)>);

impl Nodes {
    fn stop(&mut self) {
        for (_, child) in &self.0 {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        }
        let deadline = std::time::Instant::now() + STOP_GRACE;
        for (name, child) in &mut self.0 {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        println!("node {name} stopped ({status})");
                        break;
                    }
                    Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                    _ => {
                        println!("node {name} did not stop in {STOP_GRACE:?}; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        self.0.clear();
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The cluster's cookie: reused from `<data_dir>/cookie`, else generated there.
fn cookie_file(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let path = data_dir.join("cookie");
    if !path.exists() {
        let mut rng = fastrand::Rng::new();
        let cookie: String = (0..40).map(|_| rng.alphanumeric()).collect();
        std::fs::write(&path, cookie).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(path)
}

fn node_name(i: usize) -> String {
    ((b'a' + i as u8) as char).to_string()
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    if args.nodes == 0 || args.nodes > MAX_NODES {
        bail!("--nodes must be 1..={MAX_NODES}");
    }
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let cookie = cookie_file(&args.data_dir)?;
    let exe = std::env::current_exe().context("cannot find the warden executable")?;
    let cluster: Vec<String> =
        (0..args.nodes).map(|i| format!("127.0.0.1:{}", args.cluster_port as usize + i)).collect();
    let mut nodes = Nodes(Vec::new());
    let mut urls = Vec::new();
    let voters = (0..args.nodes).map(node_name).collect::<Vec<_>>().join(",");
    for i in 0..args.nodes {
        let name = node_name(i);
        let mut cmd = Command::new(&exe);
        cmd.arg("node")
            .args(["--name", &name])
            .arg("--data-dir")
            .arg(args.data_dir.join(&name))
            .args(["--http-addr", &format!("127.0.0.1:{}", args.http_port as usize + i)])
            .args(["--cluster-addr", &cluster[i]])
            .arg("--cookie-file")
            .arg(&cookie)
            .args(["--bootstrap", &voters]);
        for (j, seed) in cluster.iter().enumerate() {
            if j != i {
                cmd.args(["--seed", seed]);
            }
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        if std::env::var_os("RUST_LOG").is_none() {
            // Keep the terminal for the status line; nodes speak up only when something is wrong.
            cmd.env("RUST_LOG", "warn,ractor=error,ractor_cluster=error,openraft=error");
        }
        let mut child = cmd.spawn().with_context(|| format!("cannot start node {name}"))?;
        let stdout = child.stdout.take().context("node stdout")?;
        nodes.0.push((name.clone(), child));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
                }
            }
        });
        let url = rx.recv_timeout(START_TIMEOUT).with_context(|| format!("node {name} did not start"))?;
        println!("node {name}: {url}  (cluster {}, data {})", cluster[i], args.data_dir.join(&name).display());
        urls.push(url);
    }
    println!("dashboard: {}/", urls[0]);
    println!("Ctrl-C stops every node.");

    let mut demos = tokio::task::JoinSet::new();
    if args.demo {
        for (i, url) in urls.iter().enumerate() {
            let demo =
                DemoArgs { target: url.clone(), actions: usize::MAX / 2, rate: 5.0, seed: i as u64 + 1, quiet: true };
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
    println!("stopping {} nodes…", nodes.0.len());
    tokio::task::spawn_blocking(move || nodes.stop()).await?;
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

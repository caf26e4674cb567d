//! `warden up`: a local cluster on this machine — one OS process per node,
//! one generated cookie, data under `--data-dir`. Prints each node's URL and
//! the dashboard, streams a compact status line, and on Ctrl-C stops every
//! node (SIGTERM, then SIGKILL after a grace period), leaving no process.
//! Requests need a token: `up` keeps an admin and an agent token in
//! `<data-dir>/admin.token` and `<data-dir>/agent.token` (their hashes in
//! `<data-dir>/tokens.toml`), prints the admin one, and runs `--demo` as the
//! agent (its confirmations as the admin, the human in the loop).

use crate::auth::{create_token, write_private, Role, Tokens};
use crate::demo::{self, DemoArgs};
use crate::local::{node_name, LocalCluster, LocalSpec};
use anyhow::Context;
use serde_json::Value;
use std::path::{Path, PathBuf};
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
    /// HTTPS and a TLS cluster transport, with certificates made under `<data-dir>/tls`.
    pub tls: bool,
}

/// The admin and agent tokens of a local cluster, and their token file.
pub struct UpTokens {
    pub admin: String,
    pub agent: String,
    pub file: PathBuf,
}

/// Reuses the tokens of `data_dir` when the token file still accepts them,
/// else writes a new token file with a new admin and agent token.
pub fn ensure_tokens(data_dir: &Path) -> anyhow::Result<UpTokens> {
    let file = data_dir.join("tokens.toml");
    let (admin_path, agent_path) = (data_dir.join("admin.token"), data_dir.join("agent.token"));
    let read = |p: &Path| std::fs::read_to_string(p).ok().map(|t| t.trim().to_owned());
    if let (Some(admin), Some(agent), Ok(tokens)) = (read(&admin_path), read(&agent_path), Tokens::load(&file)) {
        let role = |t: &str| tokens.authenticate(t).map(|p| p.role);
        if role(&admin) == Some(Role::Admin) && role(&agent) == Some(Role::Agent) {
            return Ok(UpTokens { admin, agent, file });
        }
    }
    let _ = std::fs::remove_file(&file);
    let admin = create_token(&file, "admin", Role::Admin)?;
    let agent = create_token(&file, "agent", Role::Agent)?;
    write_private(&admin_path, &admin)?;
    write_private(&agent_path, &agent)?;
    Ok(UpTokens { admin, agent, file })
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let tokens = ensure_tokens(&args.data_dir)?;
    // A new CA and certificates on every start: they are throwaway, like the cluster.
    let tls = match args.tls {
        true => {
            Some(crate::tls::generate(&args.data_dir.join("tls"), &(0..args.nodes).map(node_name).collect::<Vec<_>>())?)
        }
        false => None,
    };
    let ca = tls.as_ref().map(|t| t.ca.clone());
    let spec = LocalSpec {
        nodes: args.nodes,
        http_port: args.http_port,
        cluster_port: args.cluster_port,
        data_dir: args.data_dir.clone(),
        config: None,
        // Keep the terminal for the status line; nodes speak up only when something is wrong.
        log: "warn,ractor=error,ractor_cluster=error,openraft=error,warp::server=off",
        log_to_files: false,
        token_file: Some(tokens.file.clone()),
        tls,
        exe: None,
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
    println!(
        "admin token: {}  (also in {}; the agent's in {})",
        tokens.admin,
        args.data_dir.join("admin.token").display(),
        args.data_dir.join("agent.token").display()
    );
    if let Some(ca) = &ca {
        println!(
            "tls: HTTPS and cluster transport; clients trust the CA with --ca {0} (or WARDEN_CA={0})",
            ca.display()
        );
    }
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
                token: Some(tokens.agent.clone()),
                confirm_token: Some(tokens.admin.clone()),
                ca: ca.clone(),
                degrade: None,
            };
            demos.spawn(demo::run(demo));
        }
    }
    let http = crate::auth::client(Duration::from_secs(2), Some(&tokens.admin), ca.as_deref())?;
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

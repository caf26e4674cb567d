//! A cluster of `warden node` processes on this machine: what `warden up`
//! and `warden soak` run. Consecutive ports, one generated cookie, data under
//! one directory; nodes can be killed and restarted on their data dir; every
//! process is killed when this is dropped, whatever happened.

use anyhow::{bail, Context};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Most nodes one machine runs.
pub const MAX_NODES: usize = 9;
/// How long a node may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long nodes get to stop after SIGTERM before they are killed.
pub const STOP_GRACE: Duration = Duration::from_secs(15);

#[derive(Clone, Debug)]
pub struct LocalSpec {
    pub nodes: usize,
    pub http_port: u16,
    pub cluster_port: u16,
    pub data_dir: PathBuf,
    /// A node config every node loads (capabilities, tuning), if any.
    pub config: Option<PathBuf>,
    /// RUST_LOG for the nodes when the caller's environment sets none.
    pub log: &'static str,
    /// Nodes log to `<data_dir>/<name>.log` instead of this terminal.
    pub log_to_files: bool,
    /// The token file every node loads (requests then need a token).
    pub token_file: Option<PathBuf>,
    /// Each node's TLS files (in node order): HTTPS and a TLS cluster transport.
    pub tls: Option<crate::tls::Generated>,
    /// The warden executable the nodes run (default: this one); a node can
    /// be restarted on another (`restart_as`), as a rolling upgrade does.
    pub exe: Option<PathBuf>,
}

struct LocalNode {
    name: String,
    exe: PathBuf,
    cmd_args: Vec<String>,
    child: Option<Child>,
    url: String,
}

pub struct LocalCluster {
    log: &'static str,
    log_dir: Option<PathBuf>,
    nodes: Vec<LocalNode>,
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

pub fn node_name(i: usize) -> String {
    ((b'a' + i as u8) as char).to_string()
}

/// Where `free_ports` picks: below Linux's default ephemeral range
/// (32768–60999). A port picked there could be taken between the pick and the
/// node's bind by any outgoing connection or port-0 listener on the machine.
const PICK_PORTS: std::ops::Range<u16> = 10_000..32_000;

/// The first of `n` consecutive free ports on loopback.
pub fn free_ports(n: usize) -> anyhow::Result<u16> {
    let mut rng = fastrand::Rng::new();
    for _ in 0..1_000 {
        let base = rng.u16(PICK_PORTS.start..PICK_PORTS.end - n as u16);
        if (0..n as u16).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return Ok(base);
        }
    }
    bail!("no {n} consecutive free ports on 127.0.0.1")
}

/// Spawns `cmd` (a `warden node`; its stdout is taken here) and waits for
/// the "listening on <url>" line it prints once serving; returns the process
/// and that URL. A process that does not listen within `timeout` is killed.
pub fn spawn_node(cmd: &mut Command, timeout: Duration) -> anyhow::Result<(Child, String)> {
    let mut child = cmd.stdout(Stdio::piped()).spawn().context("cannot start the process")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
            }
        }
    });
    match rx.recv_timeout(timeout) {
        Ok(url) => Ok((child, url)),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("it did not start listening within {timeout:?}")
        }
    }
}

impl LocalCluster {
    /// Starts every node and waits until each listens.
    pub fn start(spec: &LocalSpec) -> anyhow::Result<LocalCluster> {
        if spec.nodes == 0 || spec.nodes > MAX_NODES {
            bail!("--nodes must be 1..={MAX_NODES}");
        }
        std::fs::create_dir_all(&spec.data_dir)
            .with_context(|| format!("cannot create {}", spec.data_dir.display()))?;
        let cookie = cookie_file(&spec.data_dir)?;
        let cluster: Vec<String> =
            (0..spec.nodes).map(|i| format!("127.0.0.1:{}", spec.cluster_port as usize + i)).collect();
        let voters = (0..spec.nodes).map(node_name).collect::<Vec<_>>().join(",");
        let exe = match &spec.exe {
            Some(exe) => exe.clone(),
            None => std::env::current_exe().context("cannot find the warden executable")?,
        };
        let mut this = LocalCluster {
            log: spec.log,
            log_dir: spec.log_to_files.then(|| spec.data_dir.clone()),
            nodes: Vec::new(),
        };
        for i in 0..spec.nodes {
            let name = node_name(i);
            let mut args: Vec<String> = vec!["node".into(), "--name".into(), name.clone(), "--data-dir".into()];
            args.push(spec.data_dir.join(&name).display().to_string());
            args.extend(["--http-addr".into(), format!("127.0.0.1:{}", spec.http_port as usize + i)]);
            args.extend(["--cluster-addr".into(), cluster[i].clone()]);
            args.extend(["--cookie-file".into(), cookie.display().to_string(), "--bootstrap".into(), voters.clone()]);
            for (_, seed) in cluster.iter().enumerate().filter(|(j, _)| *j != i) {
                args.extend(["--seed".into(), seed.clone()]);
            }
            if let Some(config) = &spec.config {
                args.extend(["--config".into(), config.display().to_string()]);
            }
            if let Some(tokens) = &spec.token_file {
                args.extend(["--token-file".into(), tokens.display().to_string()]);
            }
            if let Some(files) = spec.tls.as_ref().and_then(|t| t.nodes.get(i)) {
                args.extend(["--tls-cert".into(), files.cert.display().to_string()]);
                args.extend(["--tls-key".into(), files.key.display().to_string()]);
                if let Some(ca) = &files.ca {
                    args.extend(["--tls-ca".into(), ca.display().to_string()]);
                }
            }
            this.nodes.push(LocalNode { name, exe: exe.clone(), cmd_args: args, child: None, url: String::new() });
            this.spawn(i)?;
        }
        Ok(this)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        let mut cmd = Command::new(&node.exe);
        cmd.args(&node.cmd_args).stdin(Stdio::null());
        match &self.log_dir {
            Some(dir) => {
                let path = dir.join(format!("{}.log", node.name));
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                cmd.stderr(file);
            }
            None => {
                cmd.stderr(Stdio::inherit());
            }
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", self.log);
        }
        let (child, url) = spawn_node(&mut cmd, START_TIMEOUT).with_context(|| format!("node {}", node.name))?;
        node.child = Some(child);
        node.url = url;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    pub fn url(&self, i: usize) -> &str {
        &self.nodes[i].url
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url.clone()).collect()
    }

    /// The node's command line (for printing a reproducible recipe).
    pub fn args(&self, i: usize) -> &[String] {
        &self.nodes[i].cmd_args
    }

    /// SIGKILL: no cleanup of any kind.
    pub fn kill_9(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether node `i` has a process (it may be stopped by a signal).
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// A new process for node `i` on the same data dir and ports.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill_9(i);
        self.spawn(i)
    }

    /// SIGTERM to node `i`, then SIGKILL if it is still up after the grace
    /// period; then a new process for it on the same data dir and ports,
    /// running `exe`: one step of a rolling upgrade or rollback.
    pub fn restart_as(&mut self, i: usize, exe: &Path) -> anyhow::Result<()> {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + STOP_GRACE;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.nodes[i].exe = exe.to_owned();
        self.spawn(i)
    }

    /// SIGTERM to every node, then SIGKILL to those still up after the grace period.
    pub fn stop(&mut self, report: impl Fn(&str)) {
        for node in &self.nodes {
            if let Some(child) = &node.child {
                let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        for node in &mut self.nodes {
            let Some(mut child) = node.child.take() else { continue };
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        report(&format!("node {} stopped ({status})", node.name));
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                    _ => {
                        report(&format!("node {} did not stop in {STOP_GRACE:?}; killing it", node.name));
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

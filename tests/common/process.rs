//! Real `warden` processes for tests: started on a free port with their own
//! data dir, waited on by condition (the "listening" line), killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a node may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct NodeProcess {
    child: Child,
    pub url: String,
    data_dir: PathBuf,
    config: Option<PathBuf>,
    args: Vec<String>,
}

/// A free TCP port on loopback (for listeners that cannot take port 0),
/// outside the ephemeral range: a port the OS hands out for port 0 could be
/// taken by an outgoing connection before the node binds it.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `n` consecutive free ports on loopback.
pub fn free_ports(n: u16) -> u16 {
    warden::local::free_ports(n.into()).expect("consecutive free ports")
}

/// `warden node` arguments for a cluster member on loopback: its name, its
/// cluster transport port, the addresses it dials, the cookie file.
pub fn node_args(name: &str, port: u16, seeds: &[String], cookie: &Path) -> Vec<String> {
    let mut args = vec!["--name".into(), name.into(), "--cluster-addr".into(), loopback(port)];
    for s in seeds {
        args.extend(["--seed".into(), s.clone()]);
    }
    args.extend(["--cookie-file".into(), cookie.display().to_string()]);
    args
}

/// `127.0.0.1:<port>`.
pub fn loopback(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

impl NodeProcess {
    /// Starts `warden node` on 127.0.0.1:0 and waits for its listening line.
    pub fn start(data_dir: &Path, config: Option<&Path>) -> NodeProcess {
        NodeProcess::start_with(data_dir, config, &[])
    }

    /// `start` with more `warden node` arguments (kept for `restart`).
    pub fn start_with(data_dir: &Path, config: Option<&Path>, args: &[String]) -> NodeProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
        cmd.args(["node", "--http-addr", "127.0.0.1:0", "--data-dir"]).arg(data_dir).args(args);
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        cmd.env("RUST_LOG", "warn").stderr(Stdio::inherit()).stdin(Stdio::null());
        let (child, url) =
            warden::local::spawn_node(&mut cmd, START_TIMEOUT).unwrap_or_else(|e| panic!("warden node: {e:#}"));
        NodeProcess {
            child,
            url,
            data_dir: data_dir.to_owned(),
            config: config.map(Path::to_owned),
            args: args.to_vec(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, like `kill -9`: no cleanup of any kind.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (e.g. "STOP", "CONT") and returns at once.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -{signal} failed");
    }

    /// Sends `signal` (e.g. "TERM") and waits for the exit status, bounded.
    pub fn signal_and_wait(&mut self, signal: &str, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.signal(signal);
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// A new process on an emptied data dir, without `--bootstrap` and with
    /// `extra` arguments (a seed: so that it waits to be added to the group).
    pub fn restart_fresh(&mut self, extra: &[String]) {
        self.kill_9();
        let _ = std::fs::remove_dir_all(&self.data_dir);
        let mut args = Vec::new();
        let mut it = self.args.iter();
        while let Some(a) = it.next() {
            if a == "--bootstrap" {
                it.next();
            } else {
                args.push(a.clone());
            }
        }
        args.extend(extra.iter().cloned());
        *self = NodeProcess::start_with(&self.data_dir, self.config.as_deref(), &args);
    }

    /// A new process on the same data dir and config.
    pub fn restart(&mut self) {
        self.kill_9();
        *self = NodeProcess::start_with(&self.data_dir, self.config.as_deref(), &self.args);
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! The `warden` command.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use warden::auth::Role;
use warden::config::{Overrides, Settings};
use warden::demo::{self, Degrade, DemoArgs};
use warden::soak::{self, SoakArgs};
use warden::up::{self, UpArgs};

#[derive(Parser)]
#[command(name = "warden", version, about = "A supervised runtime between AI agents and the tools they call")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A local cluster: one process per node (HTTP 8000, 8001, …), a generated cookie; Ctrl-C stops all.
    Up {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Also drive a realistic agent workload against every node.
        #[arg(long)]
        demo: bool,
        #[arg(long, default_value_t = 8000)]
        http_port: u16,
        /// First cluster transport port (nodes use consecutive ports).
        #[arg(long, default_value_t = 7400)]
        cluster_port: u16,
        #[arg(long, default_value = ".warden")]
        data_dir: PathBuf,
        /// Serve HTTPS and run the cluster transport over TLS, with a throwaway
        /// CA and certificates made under <data-dir>/tls (its CA is printed for clients).
        #[arg(long)]
        tls: bool,
    },
    /// Bearer tokens for the HTTP API.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Run one node: HTTP API and dashboard (default 127.0.0.1:8000), until SIGINT/SIGTERM.
    Node {
        /// Node config (TOML). Without one: node "a", data in .warden/a, the built-in demo catalog.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Address of the HTTP API; port 0 picks a free one (printed at start).
        #[arg(long)]
        http_addr: Option<SocketAddr>,
        /// Join a cluster: this node's cluster transport address.
        #[arg(long)]
        cluster_addr: Option<SocketAddr>,
        /// A peer's cluster address to join through (repeat for several).
        #[arg(long = "seed")]
        seeds: Vec<SocketAddr>,
        /// File holding the cluster cookie (else $WARDEN_COOKIE).
        #[arg(long)]
        cookie_file: Option<PathBuf>,
        /// Found a new cluster with these voters (comma-separated names, this node included).
        #[arg(long, value_delimiter = ',')]
        bootstrap: Option<Vec<String>>,
        /// Token file (`warden token create`): requests then need a bearer token.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// PEM certificate (chain): serve HTTPS (config `tls_cert`).
        #[arg(long)]
        tls_cert: Option<PathBuf>,
        /// PEM private key of --tls-cert (config `tls_key`).
        #[arg(long)]
        tls_key: Option<PathBuf>,
        /// PEM CA of the cluster peers' certificates: the cluster transport runs mutual TLS (config `tls_ca`).
        #[arg(long)]
        tls_ca: Option<PathBuf>,
    },
    /// Drive a realistic agent workload against a node and check nothing is lost.
    Demo {
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        target: String,
        #[arg(long, default_value_t = 200)]
        actions: usize,
        /// Actions started per second.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Bearer token for the agent workload.
        #[arg(long, env = "WARDEN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Bearer token (operator or admin) for the confirmations; default: --token.
        #[arg(long, hide_env_values = true)]
        confirm_token: Option<String>,
        /// PEM CA file to trust for an https:// target.
        #[arg(long, env = "WARDEN_CA")]
        ca: Option<PathBuf>,
        /// Make this sim capability go slowly bad during the run (half the steps call it).
        #[arg(long)]
        degrade: Option<String>,
        /// Latency growth of the degraded capability, ms per minute (from 100 ms).
        #[arg(long, default_value_t = 60.0)]
        degrade_latency_ms_per_min: f64,
        /// Failure-chance growth of the degraded capability, per minute.
        #[arg(long, default_value_t = 0.01)]
        degrade_fail_per_min: f64,
    },
    /// The cluster at a glance: leader, health verdict and reasons, nodes, breakers, DLQ (exit 0 ok, 2 degraded, 3 critical).
    Status {
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        target: String,
        /// Bearer token (operator or admin).
        #[arg(long, env = "WARDEN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// PEM CA file to trust for an https:// target.
        #[arg(long, env = "WARDEN_CA")]
        ca: Option<PathBuf>,
    },
    /// Policy bundles: run their Rego unit tests, evaluate an input.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The roadmap's ten acceptance gates, from the source tree (docs/gates.md):
    /// one line per gate, evidence under releases/<version>/; exits 1 if one fails.
    Gate {
        /// Only the gates that take under a minute each (what CI runs).
        #[arg(long)]
        quick: bool,
        /// Gate 1: run the whole suite now instead of reading the last CI-profile run.
        #[arg(long)]
        suite: bool,
        /// Gate 8: run scripts/clean-room.sh now instead of reading its evidence.
        #[arg(long)]
        clean_room: bool,
        /// Gate 10: the release tag rolled back to (default: the latest tag).
        #[arg(long)]
        previous: Option<String>,
        /// Run only this gate (repeat for several).
        #[arg(long)]
        only: Vec<u8>,
    },
    /// A node's archive: what retention removed from the replicated state.
    Archive {
        #[command(subcommand)]
        command: ArchiveCommand,
    },
    /// Put warden in front of MCP servers.
    Mcp {
        #[command(subcommand)]
        command: McpCommand,
    },
    /// Start a local cluster, drive actions while killing and restarting nodes, check nothing was lost.
    Soak {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long, default_value_t = 500)]
        actions: usize,
        /// Actions started per second.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        /// Time between kills (e.g. 10s); "0s" runs without faults.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        kill_every: std::time::Duration,
        /// Each run gets its own directory under this one.
        #[arg(long, default_value = ".warden-soak")]
        data_dir: PathBuf,
        /// The nodes' page cache (`[storage] cache_mb`), in MiB.
        #[arg(long)]
        cache_mb: Option<u64>,
    },
}

#[derive(Subcommand)]
enum ArchiveCommand {
    /// Copy the archive segments of a time window out of a node's data dir (docs/operations.md).
    Export {
        /// The node's data dir (its archive is `<data-dir>/archive`).
        #[arg(long)]
        data_dir: PathBuf,
        /// Start of the window: RFC 3339 or milliseconds since the epoch.
        #[arg(long, value_parser = warden::archive::parse_time)]
        from: u64,
        /// End of the window (exclusive); default now.
        #[arg(long, value_parser = warden::archive::parse_time)]
        to: Option<u64>,
        /// The directory the segments are copied to (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum McpCommand {
    /// List an upstream MCP server's tools and write a `[[capability]]` stanza for each (docs/mcp.md).
    Import {
        /// The upstream's Streamable HTTP endpoint, e.g. http://127.0.0.1:9000/mcp.
        #[arg(long)]
        url: Option<String>,
        /// The tier every tool gets until the operator chooses (default 2: nothing runs unconfirmed).
        #[arg(long, default_value_t = 2)]
        tier: u8,
        /// Prefixed to each tool's name to make its capability's name (e.g. "crm.").
        #[arg(long, default_value = "")]
        prefix: String,
        /// Write a new capabilities file here (never overwrites) instead of printing the stanzas.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Instead of --url: the command of an upstream that speaks stdio, after `--`
        /// (e.g. `-- python3 server.py --stdio`); started for the listing only.
        #[arg(last = true)]
        command: Vec<String>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Adds a token to the token file and prints it, once: only its hash is kept.
    Create {
        /// The principal's name, recorded with what it does.
        #[arg(long)]
        name: String,
        /// agent, operator or admin.
        #[arg(long)]
        role: Role,
        #[arg(long, default_value = "tokens.toml")]
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Run the bundle's Rego unit tests (`test_*` rules), `opa test` style; exits 1 on any failure.
    Test {
        /// The bundle directory (default: ./policies).
        dir: Option<PathBuf>,
        /// Also report which lines of each module the tests ran.
        #[arg(long)]
        coverage: bool,
    },
    /// Print the decision the bundle gives one input document (JSON, see docs/policy.md).
    Eval {
        /// The bundle directory (default: ./policies).
        dir: Option<PathBuf>,
        #[arg(long)]
        input: PathBuf,
        /// Longest the evaluation may run.
        #[arg(long, default_value_t = 10)]
        timeout_ms: u64,
    },
    /// The promotion gate: compile, Rego tests, golden decisions, the decision diff against the
    /// bundle promoted last, the git check; then rewrites baseline-contract.json at the repository root.
    Promote {
        /// The bundle directory (default: ./policies).
        dir: Option<PathBuf>,
        /// Promote files that are not committed in git.
        #[arg(long)]
        allow_dirty: bool,
    },
    /// Send the bundle to a node (PUT /v1/policies): the node runs the gate, then the cluster activates it.
    Push {
        /// The bundle directory (default: ./policies).
        dir: Option<PathBuf>,
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        target: String,
        /// Why (recorded in the audit).
        #[arg(long, default_value = "")]
        reason: String,
        /// Bearer token (admin).
        #[arg(long, env = "WARDEN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// PEM CA to trust for an HTTPS target.
        #[arg(long, env = "WARDEN_CA")]
        ca: Option<PathBuf>,
    },
    /// Activate a bundle of the cluster's history again (the one before the active one by default).
    Rollback {
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        target: String,
        /// The hash of the bundle to return to.
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
        /// Bearer token (admin).
        #[arg(long, env = "WARDEN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// PEM CA to trust for an HTTPS target.
        #[arg(long, env = "WARDEN_CA")]
        ca: Option<PathBuf>,
    },
    /// Print the policy audit trail; with --verify, recompute its hash chain (exit 1 at a broken link).
    Audit {
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        target: String,
        #[arg(long)]
        verify: bool,
        /// Bearer token (operator or admin).
        #[arg(long, env = "WARDEN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// PEM CA to trust for an HTTPS target.
        #[arg(long, env = "WARDEN_CA")]
        ca: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    warden::logging::init();
    match Cli::parse().command {
        Command::Node {
            config,
            name,
            data_dir,
            http_addr,
            cluster_addr,
            seeds,
            cookie_file,
            bootstrap,
            token_file,
            tls_cert,
            tls_key,
            tls_ca,
        } => {
            let overrides = Overrides {
                name,
                data_dir,
                http_addr,
                cluster_addr,
                seeds,
                cookie_file,
                bootstrap,
                token_file,
                tls_cert,
                tls_key,
                tls_ca,
            };
            let settings = Settings::load(config.as_deref(), overrides)?;
            warden::server::run_node(settings).await
        }
        Command::Up { nodes, demo, http_port, cluster_port, data_dir, tls } => {
            up::run(UpArgs { nodes, demo, http_port, cluster_port, data_dir, tls }).await
        }
        Command::Token { command: TokenCommand::Create { name, role, file } } => {
            let token = warden::auth::create_token(&file, &name, role)?;
            eprintln!("token {name:?} ({role}) added to {}; it is shown only now:", file.display());
            println!("{token}");
            Ok(())
        }
        Command::Demo {
            target,
            actions,
            rate,
            seed,
            token,
            confirm_token,
            ca,
            degrade,
            degrade_latency_ms_per_min,
            degrade_fail_per_min,
        } => {
            let confirm_token = confirm_token.or_else(|| token.clone());
            let degrade = degrade.map(|capability| Degrade {
                capability,
                base_latency_ms: 100.0,
                latency_ms_per_min: degrade_latency_ms_per_min,
                fail_per_min: degrade_fail_per_min,
            });
            let args = DemoArgs { target, actions, rate, seed, quiet: false, token, confirm_token, ca, degrade };
            let summary = demo::run(args).await?;
            summary.print();
            if summary.lost > 0 || summary.accounted() != summary.submitted {
                anyhow::bail!("{} of {} actions did not reach a terminal state", summary.lost, summary.submitted);
            }
            Ok(())
        }
        Command::Status { target, token, ca } => {
            let code = warden::status::run(&target, token.as_deref(), ca.as_deref()).await?;
            std::process::exit(code);
        }
        Command::Policy { command: PolicyCommand::Test { dir, coverage } } => {
            if !warden::policy::test(dir.as_deref(), coverage)? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Policy { command: PolicyCommand::Eval { dir, input, timeout_ms } } => {
            warden::policy::eval(dir.as_deref(), &input, std::time::Duration::from_millis(timeout_ms))
        }
        Command::Policy { command: PolicyCommand::Promote { dir, allow_dirty } } => {
            if !warden::policy::promote(warden::policy::Promote { dir: dir.as_deref(), allow_dirty })? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Policy { command: PolicyCommand::Push { dir, target, reason, token, ca } } => {
            let remote = warden::policy::Remote { target: &target, token: token.as_deref(), ca: ca.as_deref() };
            warden::policy::push(remote, dir.as_deref(), &reason).await
        }
        Command::Policy { command: PolicyCommand::Rollback { target, to, reason, token, ca } } => {
            let remote = warden::policy::Remote { target: &target, token: token.as_deref(), ca: ca.as_deref() };
            warden::policy::rollback(remote, to.as_deref(), &reason).await
        }
        Command::Policy { command: PolicyCommand::Audit { target, verify, token, ca } } => {
            let remote = warden::policy::Remote { target: &target, token: token.as_deref(), ca: ca.as_deref() };
            warden::policy::audit(remote, verify).await
        }
        Command::Gate { quick, suite, clean_room, previous, only } => {
            let args = warden::gate::GateArgs { quick, suite, clean_room, previous, only };
            let passed = warden::gate::run(args).await?;
            if !passed {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Archive { command: ArchiveCommand::Export { data_dir, from, to, out } } => {
            let to = to.unwrap_or_else(warden_actors::clock::wall_ms);
            warden::archive::export(&data_dir, from, to, &out)
        }
        Command::Mcp { command: McpCommand::Import { url, tier, prefix, out, command } } => {
            let upstream = warden::mcp_import::upstream(url, command)?;
            warden::mcp_import::run(&upstream, tier, &prefix, out.as_deref()).await
        }
        Command::Soak { nodes, actions, rate, kill_every, data_dir, cache_mb } => {
            let kill_every = (!kill_every.is_zero()).then_some(kill_every);
            let args = SoakArgs { nodes, actions, rate, kill_every, data_dir, quiet: false, cache_mb };
            let report = soak::run(args).await?;
            report.print();
            if !report.passed() {
                anyhow::bail!("the soak run broke {} invariants", report.failures().len());
            }
            Ok(())
        }
    }
}

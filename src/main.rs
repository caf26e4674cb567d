//! The `warden` command.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use warden::catalog::demo_catalog;
use warden_actors::{Node, NodeConfig};

#[derive(Parser)]
#[command(name = "warden", version, about = "A supervised runtime between AI agents and the tools they call")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node until Ctrl-C (built-in demo catalog).
    Node {
        #[arg(long, default_value = "a")]
        name: String,
        #[arg(long, default_value = ".warden/a")]
        data_dir: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match Cli::parse().command {
        Command::Node { name, data_dir } => {
            let node = Node::start(NodeConfig::new(&name, data_dir, demo_catalog())).await?;
            tracing::info!(node = %name, "node started; Ctrl-C stops it");
            tokio::signal::ctrl_c().await?;
            node.shutdown().await?;
        }
    }
    Ok(())
}

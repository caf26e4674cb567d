//! The warden node: configuration, the HTTP API and dashboard, metrics, the
//! demo workload and the process that runs them. The actors, state machine
//! and domain live in `warden-actors`.

pub mod archive;
pub mod auth;
pub mod catalog;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod gate;
pub mod http;
pub mod local;
pub mod logging;
pub mod mcp_import;
pub mod metrics;
pub mod policy;
pub mod server;
pub mod soak;
pub mod status;
pub mod tls;
pub mod up;

pub use warden_actors;

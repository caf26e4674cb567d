//! warden's actors crate: the domain model, the commands and the deterministic
//! state machine they drive, storage, and one module per supervised actor.

pub mod authz;
pub mod backoff;
pub mod breaker;
pub mod clock;
pub mod command;
pub mod config;
pub mod consensus;
pub mod directory;
pub mod disk;
pub mod domain;
pub mod error;
pub mod executor;
pub mod health;
pub mod ids;
pub mod indexer;
pub mod ledger;
pub mod limits;
pub mod mcp;
pub mod memory;
pub mod node;
pub mod notify;
pub mod orchestrator;
pub mod pipeline;
pub mod policy;
pub mod registry;
pub mod report;
pub mod retention;
pub mod runtime;
pub mod sessions;
pub mod slo;
pub mod store;
pub mod supervisor;
pub mod timeline;
pub mod version;

pub use clock::Clock;
pub use config::NodeConfig;
pub use error::{Result, WardenError};
pub use node::Node;

//! Durable state: the command log and the tables the state machine keeps, all
//! in one redb database under the node's data dir.
//!
//! - `tables`: table definitions and typed record helpers.
//! - `machine`: the deterministic state machine (`apply`).
//! - `ledger`: the local log writer: group commit of proposals, then apply.
//!   It is the seam openraft's log replaces: `apply` does not change.
//! - `query`: read-only views (MVCC snapshots, never blocked by the writer).

mod ledger;
mod machine;
mod query;
mod tables;

pub use ledger::{now_ms, Durability, Ledger};
pub use machine::{replay_log, Applied, StateMachine};
pub use query::{RecallQuery, Store, TimelineQuery};
pub use tables::open_database;

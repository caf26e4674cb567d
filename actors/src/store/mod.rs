//! Durable state: the command log and the tables the state machine keeps, all
//! in one redb database under the node's data dir.
//!
//! - `tables`: table definitions and typed record helpers.
//! - `machine`: the deterministic state machine (`apply`), which routes each
//!   command to its handler in `apply/` (one file per domain).
//! - `ledger`: how actors change state: commands proposed through Raft
//!   (`crate::consensus`), outcomes returned once committed and applied.
//! - `snapshot`: the whole state as one value (Raft snapshots).
//! - `query`: read-only views (MVCC snapshots, never blocked by the writer).

mod apply;
mod ledger;
mod machine;
mod query;
mod snapshot;
mod tables;

pub use ledger::{now_ms, Durability, Ledger};
pub use machine::{replay_log, Applied, StateMachine};
pub use query::{RecallQuery, Store, TimelineQuery};
pub use snapshot::StateSnapshot;
pub use tables::{decode, encode, open_database, Tables, LOG, META, RAFT_META};

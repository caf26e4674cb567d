//! Durable state: the command log and the tables the state machine keeps, all
//! in one redb database under the node's data dir.
//!
//! - `tables`: table definitions and typed record helpers.
//! - `machine`: the deterministic state machine (`apply`), which routes each
//!   command to its handler in `apply/` (one file per domain).
//! - `snapshot`: the whole state as one value (Raft snapshots).
//! - `query`: read-only views (MVCC snapshots, never blocked by the writer).
//! - `index`: the timeline's secondary indexes (derived from the events).

mod apply;
pub mod index;
mod machine;
mod query;
mod snapshot;
mod tables;

pub use machine::{Applied, StateMachine};
pub use query::{Incidents, RecallQuery, Store, TimelinePage, TimelineQuery, MAX_CAUSE_CHAIN, TIMELINE_SCAN_BUDGET};
pub use snapshot::StateSnapshot;
pub use tables::{decode, encode, open_database, Tables, LOG, META, POLICY_AUDIT, RAFT_META};

/// Reads the data dir's storage schema, stamping this build's into a fresh
/// one (no state and no log yet). `version::check_storage` judges the answer.
pub fn stamp_storage_schema(db: &redb::Database) -> crate::Result<crate::version::Stored> {
    use crate::version::{Stored, META_STORAGE_SCHEMA, STORAGE_SCHEMA};
    use redb::{ReadableTable, ReadableTableMetadata};
    let txn = db.begin_write()?;
    let stored = {
        let mut meta = txn.open_table(META)?;
        let schema = meta.get(META_STORAGE_SCHEMA)?.map(|v| v.value());
        match schema {
            Some(v) => Stored::Versioned(v),
            None if meta.is_empty()? && txn.open_table(LOG)?.is_empty()? => {
                meta.insert(META_STORAGE_SCHEMA, STORAGE_SCHEMA)?;
                Stored::Fresh
            }
            None => Stored::Unversioned,
        }
    };
    txn.commit()?;
    Ok(stored)
}

//! Durable state: the command log and the tables the state machine keeps, all
//! in one redb database under the node's data dir — and, in a second file,
//! the timeline's indexes, derived from the events off the writer thread.
//!
//! - `tables`: table definitions and typed record helpers.
//! - `machine`: the deterministic state machine (`apply`), which routes each
//!   command to its handler in `apply/` (one file per domain).
//! - `snapshot`: the whole state as one value (Raft snapshots).
//! - `query`: read-only views (MVCC snapshots, never blocked by the writer).
//! - `index`: the timeline's secondary index keys (derived from the events).
//! - `event_index`: the file those keys are written to, and its catch-up.
//! - `archive`: the node-local segment files expired records go to, read
//!   through by the queries.

mod apply;
pub mod archive;
pub mod event_index;
pub mod index;
mod machine;
mod query;
mod snapshot;
mod tables;

pub use crate::disk::ArchiveSize;
pub use archive::{Archive, ArchiveBatch, SegmentInfo, ARCHIVE_DIR};
pub use event_index::{CaughtUp, EventIndex};
pub use machine::{Applied, StateMachine};
pub use query::{Incidents, RecallQuery, Store, TimelinePage, TimelineQuery, MAX_CAUSE_CHAIN, TIMELINE_SCAN_BUDGET};
pub use snapshot::StateSnapshot;
pub use tables::{decode, encode, open_database, open_database_cached, Tables, LOG, META, POLICY_AUDIT, RAFT_META};

/// Opens the node's database at `path`, refusing one of another storage
/// schema (`version::check_storage`) before writing anything to it: a data
/// dir of a newer release is left exactly as it was. A fresh one gets this
/// build's schema, then every table is created. Its page cache is `cache`
/// bytes.
pub fn open_versioned(path: &std::path::Path, cache: usize) -> crate::Result<redb::Database> {
    use crate::error::WardenError;
    let db = redb::Database::create(path).map_err(|e| {
        WardenError::Storage(format!(
            "cannot open {}: {e} (is another warden node using this data dir?)",
            path.display()
        ))
    })?;
    let stored = storage_schema(&db)?;
    crate::version::check_storage(stored, path)?;
    drop(db);
    let db = open_database_cached(path, Some(cache))?;
    if stored == crate::version::Stored::Fresh {
        let txn = db.begin_write()?;
        txn.open_table(META)?.insert(crate::version::META_STORAGE_SCHEMA, crate::version::STORAGE_SCHEMA)?;
        txn.commit()?;
    }
    Ok(db)
}

/// What a data dir says about its schema, read without writing to it.
fn storage_schema(db: &redb::Database) -> crate::Result<crate::version::Stored> {
    use crate::version::{Stored, META_STORAGE_SCHEMA};
    use redb::{ReadableTableMetadata, TableError};
    let txn = db.begin_read()?;
    let meta = match txn.open_table(META) {
        Ok(meta) => Some(meta),
        Err(TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(v) = meta.as_ref().map(|m| m.get(META_STORAGE_SCHEMA)).transpose()?.flatten() {
        return Ok(Stored::Versioned(v.value()));
    }
    let log_empty = match txn.open_table(LOG) {
        Ok(log) => log.is_empty()?,
        Err(TableError::TableDoesNotExist(_)) => true,
        Err(e) => return Err(e.into()),
    };
    let meta_empty = meta.map(|m| m.is_empty()).transpose()?.unwrap_or(true);
    Ok(if meta_empty && log_empty { Stored::Fresh } else { Stored::Unversioned })
}

//! Schema versions of what warden writes for someone else to read: the data
//! dir (redb tables and the MessagePack records in them) and the cluster wire
//! (Registry heartbeats, Raft RPCs). A node refuses a data dir or a peer of
//! another version with a message that says so, instead of misreading it.
//!
//! Bump `STORAGE_SCHEMA` when a stored record or table changes shape, and
//! `WIRE_SCHEMA` when a cluster message does.

use crate::error::{Result, WardenError};
use std::path::Path;

/// The layout of `<data_dir>/warden.redb` this build reads and writes.
/// 2: actions record `submitted_by`, which a schema-1 build would drop when
/// it rewrote them.
pub const STORAGE_SCHEMA: u64 = 2;
/// The shape of cluster messages this build sends and accepts.
/// 2: `SubmitAction` carries `submitted_by`, and Raft frames carry a
/// leader's refusal (`storage_full`, `storage_failed`); a schema-1 peer would
/// apply the first without it and could not read the second; and the
/// policy commands (`ActivatePolicy`, `RejectPolicy`).
pub const WIRE_SCHEMA: u32 = 2;

/// The meta-table key holding a data dir's storage schema.
pub const META_STORAGE_SCHEMA: &str = "storage_schema";

/// What a data dir says about its schema when opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// A new, empty data dir: it gets this build's schema.
    Fresh,
    /// A data dir with state and this schema.
    Versioned(u64),
    /// A data dir with state but no schema: written before schemas existed.
    Unversioned,
}

/// Whether this build may open a data dir in state `stored`.
pub fn check_storage(stored: Stored, path: &Path) -> Result<()> {
    match stored {
        Stored::Fresh => Ok(()),
        Stored::Versioned(v) if v == STORAGE_SCHEMA => Ok(()),
        Stored::Versioned(v) => Err(WardenError::Storage(format!(
            "{} holds storage schema {v}, and this warden reads schema {STORAGE_SCHEMA}: \
             use a warden of that schema, or start this node on a new data dir",
            path.display()
        ))),
        Stored::Unversioned => Err(WardenError::Storage(format!(
            "{} was written by a warden without storage schemas (this one reads schema {STORAGE_SCHEMA}): \
             start this node on a new data dir",
            path.display()
        ))),
    }
}

/// Whether a peer speaking wire schema `theirs` may be listened to.
pub fn check_wire(peer: &str, theirs: u32) -> Result<()> {
    if theirs == WIRE_SCHEMA {
        return Ok(());
    }
    Err(WardenError::Unavailable(format!(
        "peer {peer} speaks cluster wire schema {theirs} and this node {WIRE_SCHEMA}: its messages are refused"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_of_another_schema_is_refused_with_what_to_do() {
        let path = Path::new("/data/a/warden.redb");
        assert!(check_storage(Stored::Fresh, path).is_ok());
        assert!(check_storage(Stored::Versioned(STORAGE_SCHEMA), path).is_ok());
        let newer = check_storage(Stored::Versioned(STORAGE_SCHEMA + 1), path).unwrap_err().to_string();
        let schema = format!("schema {}", STORAGE_SCHEMA + 1);
        assert!(newer.contains("/data/a/warden.redb") && newer.contains(&schema), "{newer}");
        let old = check_storage(Stored::Unversioned, path).unwrap_err().to_string();
        assert!(old.contains("without storage schemas"), "{old}");
    }

    #[test]
    fn a_peer_of_another_wire_schema_is_refused() {
        assert!(check_wire("b", WIRE_SCHEMA).is_ok());
        let refused = check_wire("b", WIRE_SCHEMA + 1).unwrap_err().to_string();
        let theirs = format!("wire schema {}", WIRE_SCHEMA + 1);
        assert!(refused.contains("peer b") && refused.contains(&theirs), "{refused}");
    }
}

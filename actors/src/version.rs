//! Schema versions of what warden writes for someone else to read: the data
//! dir (redb tables and the MessagePack records in them) and the cluster wire
//! (Registry heartbeats, Raft RPCs). A node refuses a data dir or a peer of
//! another version with a message that says so, instead of misreading it.
//!
//! Bump `STORAGE_SCHEMA` when a stored record or table changes shape, and
//! `WIRE_SCHEMA` when a cluster message changes so that an older node cannot
//! read it (a major change). A message or command an older node of the same
//! major could not read is a minor change: bump `WIRE_MINOR`, and give the
//! command that `since` (`Command::since`), so it is not proposed until every
//! member speaks it (see `Version::cluster`).

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
/// The minor version of the wire this build speaks within `WIRE_SCHEMA`:
/// every command of minor `n` is readable by a build of minor `n` or later.
/// 1: the silence watch's pre-vote (a Raft RPC a 2.0 node cannot read; it is
/// asked only of members that announce 2.1).
/// 2: retention's `Expire` command.
pub const WIRE_MINOR: u32 = 2;
/// This build's wire version, `WIRE_SCHEMA.WIRE_MINOR`.
pub const WIRE: Version = Version { major: WIRE_SCHEMA, minor: WIRE_MINOR };
/// The oldest version a member of this build's major may speak: what a
/// member not heard from yet is taken to speak.
pub const WIRE_FLOOR: Version = Version { major: WIRE_SCHEMA, minor: 0 };

/// A cluster wire version: `major.minor`. Nodes of one major talk to each
/// other; a minor adds what older minors of that major cannot read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl Default for Version {
    /// What a peer that did not say is taken to speak.
    fn default() -> Self {
        WIRE_FLOOR
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl Version {
    /// The cluster's effective version, like etcd's cluster version: the
    /// lowest of its members'. `members` gives each member's version, `None`
    /// for a member not heard from yet, which counts as `WIRE_FLOOR`.
    pub fn cluster(members: impl IntoIterator<Item = Option<Version>>) -> Version {
        members.into_iter().map(|v| v.unwrap_or(WIRE_FLOOR)).min().unwrap_or(WIRE)
    }

    /// Whether something that needs version `since` may be used in a cluster
    /// whose effective version is `self`: only once every member reads it.
    pub fn admits(self, since: Version, what: &str) -> Result<()> {
        if since.major == self.major && since.minor <= self.minor {
            return Ok(());
        }
        Err(WardenError::Unavailable(format!(
            "{what} needs cluster version {since}, and this cluster runs at {self} (its lowest member's): \
             it is not proposed until every member is upgraded"
        )))
    }
}

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
        Stored::Versioned(v) if v > STORAGE_SCHEMA => Err(WardenError::Storage(format!(
            "{} holds storage schema {v}, newer than this warden's (schema {STORAGE_SCHEMA}): \
             it was written by a later release, which it needs; it is left as it is. \
             Run that release on it, or start this node on a new data dir",
            path.display()
        ))),
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

/// Whether a peer speaking wire schema (major) `theirs` may be listened to:
/// any minor of this build's major is.
pub fn check_wire(peer: &str, theirs: u32) -> Result<()> {
    if theirs == WIRE_SCHEMA {
        return Ok(());
    }
    let which =
        if theirs > WIRE_SCHEMA { "a newer major version, unknown to this node" } else { "an older major version" };
    Err(WardenError::Unavailable(format!(
        "peer {peer} speaks cluster wire schema {theirs} ({which}) and this node {WIRE_SCHEMA}: its messages are refused"
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
        assert!(newer.contains("newer than this warden's"), "{newer}");
        let older = check_storage(Stored::Versioned(STORAGE_SCHEMA - 1), path).unwrap_err().to_string();
        assert!(!older.contains("newer") && older.contains(&format!("schema {}", STORAGE_SCHEMA - 1)), "{older}");
        let old = check_storage(Stored::Unversioned, path).unwrap_err().to_string();
        assert!(old.contains("without storage schemas"), "{old}");
    }

    #[test]
    fn a_peer_of_another_wire_schema_is_refused() {
        assert!(check_wire("b", WIRE_SCHEMA).is_ok());
        let refused = check_wire("b", WIRE_SCHEMA + 1).unwrap_err().to_string();
        let theirs = format!("wire schema {}", WIRE_SCHEMA + 1);
        assert!(refused.contains("peer b") && refused.contains(&theirs), "{refused}");
        assert!(refused.contains("newer major version"), "{refused}");
    }

    const fn v(major: u32, minor: u32) -> Version {
        Version { major, minor }
    }

    #[test]
    fn the_cluster_version_is_its_lowest_members_and_an_unheard_member_counts_as_the_floor() {
        assert_eq!(Version::cluster([Some(v(2, 3)), Some(v(2, 1)), Some(v(2, 2))]), v(2, 1));
        assert_eq!(Version::cluster([Some(v(2, 3)), None]), WIRE_FLOOR);
        assert_eq!(Version::cluster([]), WIRE, "a node alone, before any membership, speaks its own");
        assert_eq!(v(2, 10).to_string(), "2.10");
        assert!(v(2, 10) > v(2, 9) && v(3, 0) > v(2, 10));
    }

    #[test]
    fn a_command_of_a_newer_minor_waits_until_every_member_reads_it() {
        let (old, new) = (v(2, 0), v(2, 1));
        // A rolling upgrade from 2.0 to 2.1: while one member still runs 2.0, a 2.1 command is refused.
        let mixed = Version::cluster([Some(new), Some(old), Some(new)]);
        let refused = mixed.admits(new, "SetThing").unwrap_err().to_string();
        assert!(refused.contains("needs cluster version 2.1") && refused.contains("runs at 2.0"), "{refused}");
        // What the old member reads is still proposed, so the mixed cluster works.
        assert!(mixed.admits(old, "SubmitAction").is_ok());
        // Once the last member runs 2.1, the cluster version moves and the command is proposed.
        let upgraded = Version::cluster([Some(new), Some(new), Some(new)]);
        assert!(upgraded.admits(new, "SetThing").is_ok());
        // A member not heard from since its restart holds the version back.
        assert!(Version::cluster([Some(new), None, Some(new)]).admits(new, "SetThing").is_err());
        // Another major is never admitted.
        assert!(v(3, 0).admits(new, "SetThing").is_err());
    }
}

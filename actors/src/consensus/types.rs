//! openraft's type configuration for warden, and the small conversions the
//! log, the state machine and the network share.

use crate::command::{Entry, Response};
use crate::error::WardenError;
use serde::{Deserialize, Serialize};
use std::io::Cursor;

/// What applying one command produced, as the proposer receives it.
pub type Outcome = Result<Response, WardenError>;

/// A Raft member: the node's name (its id is derived from it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
}

openraft::declare_raft_types!(
    /// warden's Raft: batches of commands in (see `proposer`), their outcomes out, members named.
    pub TypeConfig:
        D = Vec<Entry>,
        R = Vec<Outcome>,
        NodeId = u64,
        Node = Member,
);

pub type RaftEntry = openraft::Entry<TypeConfig>;

/// A node's Raft id: the first 8 bytes of the SHA-256 of its name, so every
/// node derives every other node's id without coordination.
pub fn node_id(name: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(name.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 digest has 32 bytes"))
}

pub(super) fn io_error(msg: &str) -> std::io::Error {
    std::io::Error::other(msg.to_owned())
}

pub(super) fn read_error(e: WardenError) -> openraft::StorageError<u64> {
    openraft::StorageError::IO { source: openraft::StorageIOError::read(&e) }
}

pub(super) fn write_error(e: WardenError) -> openraft::StorageError<u64> {
    openraft::StorageError::IO { source: openraft::StorageIOError::write(&e) }
}

pub(super) fn unavailable(e: impl std::fmt::Display) -> WardenError {
    WardenError::Unavailable(e.to_string())
}

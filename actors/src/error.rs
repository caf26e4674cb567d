//! warden's typed errors. Each has a stable `code()`; the HTTP layer maps codes
//! to status codes in one place.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum WardenError {
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    #[error("unknown turn {0:?}")]
    UnknownTurn(String),
    #[error("unknown action {0:?}")]
    UnknownAction(String),
    #[error("unknown dead-letter entry {0:?}")]
    UnknownDlqEntry(String),
    #[error("unknown node {0:?}")]
    UnknownNode(String),
    #[error("{0} is the last voter: the group would have no one to commit")]
    LastVoter(String),
    #[error("{node} is the only node that can run capability {capability}")]
    OnlyExecutor { node: String, capability: String },
    /// A topology request that the cluster's state does not allow.
    #[error("{0}")]
    Conflict(String),
    #[error("bad input: {0}")]
    BadInput(String),
    #[error("action {action} is {state}, not awaiting confirmation")]
    NotAwaitingConfirmation { action: String, state: String },
    #[error("action {0} is not in a state that allows this")]
    WrongState(String),
    #[error("stale attempt {attempt} for action {action}")]
    StaleAttempt { action: String, attempt: u32 },
    #[error("overloaded: {0}")]
    Overloaded(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("storage: {0}")]
    Storage(String),
    /// The data dir's free space is under the low watermark: new work is refused.
    #[error("storage full: {0}")]
    StorageFull(String),
    /// A Raft log write failed (redb reported an I/O error): nothing is written until a restart.
    #[error("storage failed: {0}")]
    StorageFailed(String),
    /// A policy bundle that does not load or compile.
    #[error("policy rejected: {0}")]
    PolicyRejected(String),
    /// A decision made under a policy that is no longer the active one at
    /// the log index where it would be recorded: decide again.
    #[error("decided under policy {decided}, but policy {active} is active")]
    StalePolicy { decided: String, active: String },
}

impl WardenError {
    /// Stable machine-readable code, as in the error JSON of contract.md.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownCapability(_) => "unknown_capability",
            Self::UnknownTurn(_) => "unknown_turn",
            Self::UnknownAction(_) => "unknown_action",
            Self::UnknownDlqEntry(_) => "unknown_dlq_entry",
            Self::UnknownNode(_) => "unknown_node",
            Self::LastVoter(_) => "last_voter",
            Self::OnlyExecutor { .. } => "only_executor",
            Self::Conflict(_) => "conflict",
            Self::BadInput(_) => "bad_input",
            Self::NotAwaitingConfirmation { .. } => "not_awaiting_confirmation",
            Self::WrongState(_) => "wrong_state",
            Self::StaleAttempt { .. } => "stale_attempt",
            Self::Overloaded(_) => "overloaded",
            Self::Unavailable(_) => "unavailable",
            Self::Storage(_) => "storage",
            Self::StorageFull(_) => "storage_full",
            Self::StorageFailed(_) => "storage_failed",
            Self::PolicyRejected(_) => "policy_rejected",
            Self::StalePolicy { .. } => "stale_policy",
        }
    }
}

impl From<redb::Error> for WardenError {
    fn from(e: redb::Error) -> Self {
        Self::Storage(e.to_string())
    }
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for WardenError {
            fn from(e: $t) -> Self {
                Self::Storage(e.to_string())
            }
        }
    )*};
}
storage_from!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    rmp_serde::encode::Error,
    rmp_serde::decode::Error
);

pub type Result<T, E = WardenError> = std::result::Result<T, E>;

//! The replicated record of the policy lifecycle: the active bundle, the
//! bounded history of bundles activated before it, and the hash-chained
//! audit trail of every mutation (accepted push, refused push, rollback).
//! Plain data; `store::apply::policy` writes it, nodes compile what it holds.

use crate::ids::CorrelationId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Bundles kept in the replicated history (the active one included):
/// what `rollback` may return to.
pub const MAX_POLICY_HISTORY: usize = 10;
/// `prev` of the first audit entry.
pub const AUDIT_GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How a bundle became active.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyChange {
    /// A pushed bundle passed the gate.
    Push,
    /// A bundle from the history was activated again.
    Rollback,
}

/// What an audit entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A push passed the gate and its bundle became active.
    Push,
    /// A push was refused by the gate; nothing else changed.
    Reject,
    /// A bundle of the history became active again.
    Rollback,
}

impl From<PolicyChange> for AuditAction {
    fn from(c: PolicyChange) -> Self {
        match c {
            PolicyChange::Push => AuditAction::Push,
            PolicyChange::Rollback => AuditAction::Rollback,
        }
    }
}

/// A bundle as the cluster activated it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    /// The bundle's canonical SHA-256 (`authz::Bundle::hash`).
    pub hash: String,
    pub revision: String,
    /// The bundle's files by path.
    pub files: BTreeMap<String, String>,
    pub activated_at_ms: u64,
    /// The principal who activated it.
    pub by: String,
    pub reason: String,
    pub change: PolicyChange,
    /// Counts activations: a node installs a record only if it is newer
    /// than the one it runs.
    pub generation: u64,
}

/// The policy part of the replicated state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyState {
    /// None until the first activation: each node then runs its configured policy.
    pub active: Option<PolicyRecord>,
    /// Activated bundles, newest first, one per hash, the active one
    /// included; at most `MAX_POLICY_HISTORY`.
    pub history: Vec<PolicyRecord>,
    /// Activations so far.
    pub generation: u64,
}

/// One link of the audit chain (names fixed by contract.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    /// When (ms since the epoch, from the proposing node's clock).
    pub at: u64,
    /// The authenticated principal (`anonymous` on a node without tokens).
    pub principal: String,
    pub action: AuditAction,
    pub old_hash: Option<String>,
    pub new_hash: String,
    pub revision: String,
    /// The operator's reason; for a refusal, every failure of the gate.
    pub reason: String,
    pub correlation_id: CorrelationId,
    /// `hash` of the entry before (`AUDIT_GENESIS` for the first).
    pub prev: String,
    /// SHA-256 of this entry's other fields (`AuditEntry::compute_hash`).
    pub hash: String,
}

impl AuditEntry {
    /// SHA-256 (hex) over the canonical JSON of every field but `hash`
    /// (keys sorted, no spaces): anyone holding the entries can recompute it.
    pub fn compute_hash(&self) -> String {
        let mut value = serde_json::to_value(self).expect("an audit entry serializes");
        if let serde_json::Value::Object(map) = &mut value {
            map.remove("hash");
        }
        // serde_json's maps are sorted by key: this text is canonical.
        let digest = Sha256::digest(value.to_string().as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The first broken link of a chain (entries in `seq` order): the seq
    /// and what is wrong. None when every entry hashes to its `hash` and
    /// names the one before as `prev`.
    pub fn verify_chain(entries: &[AuditEntry]) -> Option<(u64, String)> {
        let mut prev = AUDIT_GENESIS.to_owned();
        let first = entries.first().map_or(1, |e| e.seq);
        for (expected_seq, e) in (first..).zip(entries) {
            if e.seq != expected_seq {
                return Some((e.seq, format!("expected seq {expected_seq}: an entry is missing")));
            }
            if e.prev != prev {
                return Some((e.seq, format!("prev is {} but the entry before hashes to {prev}", e.prev)));
            }
            let actual = e.compute_hash();
            if actual != e.hash {
                return Some((e.seq, format!("its content hashes to {actual}, not to its recorded hash {}", e.hash)));
            }
            prev = e.hash.clone();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<AuditEntry> {
        let mut prev = AUDIT_GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let mut e = AuditEntry {
                    seq,
                    at: 1_000 + seq,
                    principal: "admin".into(),
                    action: AuditAction::Push,
                    old_hash: None,
                    new_hash: format!("{seq:064}"),
                    revision: "r".into(),
                    reason: "why".into(),
                    correlation_id: CorrelationId(format!("c{seq}")),
                    prev: prev.clone(),
                    hash: String::new(),
                };
                e.hash = e.compute_hash();
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn a_chain_verifies_and_any_change_breaks_it_at_that_entry() {
        let good = chain(4);
        assert_eq!(AuditEntry::verify_chain(&good), None);
        let mut altered = good.clone();
        altered[2].reason = "something else".into();
        assert_eq!(AuditEntry::verify_chain(&altered).map(|(seq, _)| seq), Some(3));
        // Rehashing the altered entry moves the break to the next link.
        altered[2].hash = altered[2].compute_hash();
        assert_eq!(AuditEntry::verify_chain(&altered).map(|(seq, _)| seq), Some(4));
        let mut missing = good.clone();
        missing.remove(1);
        assert_eq!(AuditEntry::verify_chain(&missing).map(|(seq, _)| seq), Some(3));
        assert_eq!(AuditEntry::verify_chain(&[]), None);
    }
}

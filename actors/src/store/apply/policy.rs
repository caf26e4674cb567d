//! The policy lifecycle: activating a bundle (a push that passed the gate,
//! or a rollback) and recording a refused push. Both append one link to the
//! hash-chained audit trail. Pure like every command: the bundle was
//! compiled and checked before it was proposed, and each node compiles it
//! again when it sees the applied entry (`Response::PolicyActivated`).

use super::{Outcome, Recorder};
use crate::command::Response;
use crate::domain::*;
use crate::error::{Result, WardenError};
use crate::ids::CorrelationId;
use crate::store::tables::Tables;
use std::collections::BTreeMap;

/// What an activation carries.
pub(in crate::store) struct Activation<'c> {
    pub hash: &'c str,
    pub revision: &'c str,
    pub bundle: &'c BTreeMap<String, String>,
    pub by: &'c str,
    pub reason: &'c str,
    pub change: PolicyChange,
    pub correlation_id: &'c CorrelationId,
}

/// The next link of the audit chain (its `hash` computed).
fn next_audit(t: &Tables<'_>, at: u64, fill: impl FnOnce(&mut AuditEntry)) -> Result<AuditEntry> {
    let last = t.last_audit_entry()?;
    let mut entry = AuditEntry {
        seq: last.as_ref().map_or(1, |e| e.seq + 1),
        at,
        principal: String::new(),
        action: AuditAction::Push,
        old_hash: None,
        new_hash: String::new(),
        revision: String::new(),
        reason: String::new(),
        correlation_id: CorrelationId(String::new()),
        prev: last.map_or_else(|| AUDIT_GENESIS.to_owned(), |e| e.hash),
        hash: String::new(),
    };
    fill(&mut entry);
    entry.hash = entry.compute_hash();
    Ok(entry)
}

pub(in crate::store) fn activate(t: &mut Tables<'_>, r: &mut Recorder<'_>, a: Activation<'_>) -> Result<Outcome> {
    // Check phase.
    if a.hash.len() != 64 || !a.hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(WardenError::BadInput(format!("policy hash {:?} is not a SHA-256", a.hash)));
    }
    if a.bundle.is_empty() {
        return Err(WardenError::BadInput("an activated bundle has files".into()));
    }
    let mut state = t.policy_state()?;
    let old_hash = state.active.as_ref().map(|p| p.hash.clone());
    if old_hash.as_deref() == Some(a.hash) {
        return Err(WardenError::Conflict(format!("policy {} is already active", a.hash)));
    }
    if a.change == PolicyChange::Rollback && !state.history.iter().any(|p| p.hash == a.hash) {
        return Err(WardenError::Conflict(format!("policy {} is not in the history", a.hash)));
    }
    let audit = next_audit(t, r.at(), |e| {
        e.principal = a.by.to_owned();
        e.action = a.change.into();
        e.old_hash = old_hash.clone();
        e.new_hash = a.hash.to_owned();
        e.revision = a.revision.to_owned();
        e.reason = a.reason.to_owned();
        e.correlation_id = a.correlation_id.clone();
    })?;

    // Write phase.
    state.generation += 1;
    let record = PolicyRecord {
        hash: a.hash.to_owned(),
        revision: a.revision.to_owned(),
        files: a.bundle.clone(),
        activated_at_ms: r.at(),
        by: a.by.to_owned(),
        reason: a.reason.to_owned(),
        change: a.change,
        generation: state.generation,
    };
    state.history.retain(|p| p.hash != a.hash);
    state.history.insert(0, record.clone());
    state.history.truncate(MAX_POLICY_HISTORY);
    state.active = Some(record);
    t.put_policy_state(&state)?;
    t.put_audit_entry(&audit)?;
    let data = EventData::PolicyActivated {
        hash: a.hash.to_owned(),
        revision: a.revision.to_owned(),
        old_hash,
        change: a.change,
        by: a.by.to_owned(),
        reason: a.reason.to_owned(),
        audit_seq: audit.seq,
    };
    r.emit(t, EventScope::correlated(a.correlation_id.clone()), None, None, data)?;
    let response =
        Response::PolicyActivated { hash: a.hash.to_owned(), generation: state.generation, audit_seq: audit.seq };
    Ok((response, None))
}

pub(in crate::store) fn reject(
    t: &mut Tables<'_>,
    r: &mut Recorder<'_>,
    (hash, revision): (&str, &str),
    by: &str,
    failures: &[String],
    correlation_id: &CorrelationId,
) -> Result<Outcome> {
    if failures.is_empty() {
        return Err(WardenError::BadInput("a refused push names its failures".into()));
    }
    let old_hash = t.policy_state()?.active.map(|p| p.hash);
    let audit = next_audit(t, r.at(), |e| {
        e.principal = by.to_owned();
        e.action = AuditAction::Reject;
        e.old_hash = old_hash;
        e.new_hash = hash.to_owned();
        e.revision = revision.to_owned();
        e.reason = failures.join("\n");
        e.correlation_id = correlation_id.clone();
    })?;
    t.put_audit_entry(&audit)?;
    let data = EventData::PolicyRejected {
        hash: hash.to_owned(),
        revision: revision.to_owned(),
        by: by.to_owned(),
        failures: failures.to_vec(),
        audit_seq: audit.seq,
    };
    r.emit(t, EventScope::correlated(correlation_id.clone()), None, None, data)?;
    Ok((Response::PolicyRejected { audit_seq: audit.seq }, None))
}

#[cfg(test)]
mod tests {
    use super::super::testing::run;
    use crate::command::{Command, Response};
    use crate::domain::*;
    use crate::ids::CorrelationId;
    use std::collections::BTreeMap;

    fn activate(hash: char, change: PolicyChange) -> Command {
        Command::ActivatePolicy {
            hash: hash.to_string().repeat(64),
            revision: format!("rev-{hash}"),
            bundle: BTreeMap::from([("a.rego".to_owned(), format!("package a # {hash}"))]),
            by: "admin".into(),
            reason: "test".into(),
            change,
            correlation_id: CorrelationId("c".into()),
        }
    }

    #[test]
    fn activations_chain_their_audit_and_rollbacks_need_the_history() {
        let reject = Command::RejectPolicy {
            hash: "c".repeat(64),
            revision: "bad".into(),
            by: "admin".into(),
            failures: vec!["a.rego:1:1: nope".into()],
            correlation_id: CorrelationId("c".into()),
        };
        let results = run(vec![
            activate('a', PolicyChange::Push),
            activate('a', PolicyChange::Push),     // already active: refused
            activate('b', PolicyChange::Rollback), // not in the history: refused
            activate('b', PolicyChange::Push),
            reject,
            activate('a', PolicyChange::Rollback),
        ]);
        let generations: Vec<Option<u64>> = results
            .iter()
            .map(|r| match r.as_ref().map(|a| &a.response) {
                Ok(Response::PolicyActivated { generation, .. }) => Some(*generation),
                _ => None,
            })
            .collect();
        assert_eq!(generations, [Some(1), None, None, Some(2), None, Some(3)]);
        assert!(results[1].is_err() && results[2].is_err() && results[4].is_ok());
        let kinds: Vec<EventKind> =
            results.iter().flatten().flat_map(|a| a.events.iter().map(|e| e.data.kind())).collect();
        assert_eq!(
            kinds,
            [
                EventKind::PolicyActivated,
                EventKind::PolicyActivated,
                EventKind::PolicyRejected,
                EventKind::AlertRaised, // WardenPolicyRejected
                EventKind::PolicyActivated,
                EventKind::AlertResolved, // by the activation after it
            ]
        );
    }
}

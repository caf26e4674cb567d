//! Nodes: `SetDraining`, the replicated part of the topology.

use super::{Outcome, Recorder};
use crate::command::Response;
use crate::domain::*;
use crate::error::{Result, WardenError};
use crate::ids::CorrelationId;
use crate::store::tables::Tables;

/// `SetDraining`: starts or ends a drain of `node`.
pub(in crate::store) fn set_draining(
    t: &mut Tables<'_>,
    r: &mut Recorder<'_>,
    node: &str,
    (draining, shutdown): (bool, bool),
    principal: Option<&str>,
) -> Result<Outcome> {
    check(t, node, shutdown)?;
    let record = NodeRecord { name: node.to_owned(), draining, shutdown, since_ms: r.at() };
    t.put_node(&record)?;
    let scope = EventScope::correlated(CorrelationId(format!("node:{node}")));
    let principal = principal.map(str::to_owned);
    let data = EventData::NodeDraining { node: node.to_owned(), draining, shutdown, principal };
    let seq = r.emit(t, scope, None, None, data)?;
    Ok((Response::Recorded { seq }, None))
}

fn check(t: &Tables<'_>, node: &str, shutdown: bool) -> Result<()> {
    if node.is_empty() {
        return Err(WardenError::BadInput("a node name is required".into()));
    }
    // A node's own stop-drain never overrides an operator's drain, nor ends one.
    if shutdown && t.node(node)?.is_some_and(|r| r.draining && !r.shutdown) {
        return Err(WardenError::Conflict(format!("{node} is drained by an operator")));
    }
    Ok(())
}

/// Whether `node` is being drained.
pub(in crate::store) fn draining(t: &Tables<'_>, node: &str) -> Result<bool> {
    Ok(t.node(node)?.is_some_and(|r| r.draining))
}

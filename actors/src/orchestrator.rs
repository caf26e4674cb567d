//! Orchestrator: the topology operations an operator asks of any node — add
//! a node, drain it, remove it, hand leadership to it. Each is checked here
//! against this node's view (the Registry's peers, the Raft membership, the
//! replicated drain records), executed by the leader, and recorded as a
//! timeline event. A refused request changes nothing.

use crate::command::Command;
use crate::directory::call;
use crate::domain::{ActiveAction, EventData, TransferReason};
use crate::error::{Result, WardenError};
use crate::ids::CorrelationId;
use crate::pipeline::may_run;
use crate::registry::{self, PeerState, PeerTable, RegistryMsg};
use crate::runtime::Runtime;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// What a drain request did.
#[derive(Clone, Debug, Serialize)]
pub struct DrainReport {
    pub node: String,
    pub draining: bool,
    /// Attempts still running on it (they finish there).
    pub running: usize,
    /// The leader after the drain (leadership leaves a drained leader).
    pub leader: Option<String>,
}

async fn peers(rt: &Runtime) -> Result<PeerTable> {
    call(&rt.directory.get(registry::NAME)?, RegistryMsg::Peers).await
}

async fn record(rt: &Runtime, node: &str, data: EventData) -> Result<()> {
    let correlation_id = CorrelationId(format!("node:{node}"));
    rt.ledger.propose(Command::RecordEvent { correlation_id, data }).await.map(|_| ())
}

/// Whether `name` is this node or a peer the Registry sees up.
fn is_up(rt: &Runtime, table: &PeerTable, name: &str) -> bool {
    name == rt.node || table.peers.iter().any(|p| p.name == name && p.state == PeerState::Up)
}

/// Whether `name` is this node, a peer the Registry knows, or a Raft member.
fn known(rt: &Runtime, table: &PeerTable, name: &str) -> bool {
    name == rt.node || table.peers.iter().any(|p| p.name == name) || rt.ledger.consensus().is_member(name)
}

/// Adds a node the Registry sees up and without a log of its own as a voter.
pub async fn add_node(rt: &Runtime, name: &str, principal: Option<&str>) -> Result<()> {
    let table = peers(rt).await?;
    let consensus = rt.ledger.consensus();
    if consensus.is_member(name) {
        return Err(WardenError::Conflict(format!("{name} is already a member")));
    }
    let Some(peer) = table.peers.iter().find(|p| p.name == name) else {
        return Err(WardenError::UnknownNode(name.to_owned()));
    };
    if peer.state != PeerState::Up {
        return Err(WardenError::Conflict(format!("{name} is {:?}, not up", peer.state)));
    }
    if !peer.joinable {
        return Err(WardenError::Conflict(format!(
            "{name} has a Raft log of its own (a removed member, or another cluster's): restart it on a fresh data dir"
        )));
    }
    consensus.add_member(name).await?;
    let principal = principal.map(str::to_owned);
    record(rt, name, EventData::MemberAdded { node: name.to_owned(), by: rt.node.clone(), principal }).await
}

/// Removes a member through the leader.
pub async fn remove_node(rt: &Runtime, name: &str, principal: Option<&str>) -> Result<()> {
    rt.ledger.consensus().remove_member(name).await?;
    let principal = principal.map(str::to_owned);
    record(rt, name, EventData::MemberRemoved { node: name.to_owned(), by: rt.node.clone(), principal }).await
}

/// Starts (`on`) or ends draining `name`. Draining places nothing new on it,
/// lets what runs there finish, and moves leadership away from it. Refused
/// when it would leave a capability with no node to run it. `principal`: who asked.
pub async fn drain(rt: &Runtime, name: &str, on: bool, principal: Option<&str>) -> Result<DrainReport> {
    let principal = principal.map(str::to_owned);
    let table = peers(rt).await?;
    if !known(rt, &table, name) {
        return Err(WardenError::UnknownNode(name.to_owned()));
    }
    let consensus = rt.ledger.consensus();
    if on {
        let draining = rt.store.draining()?;
        for cap in rt.catalog.all() {
            let service = format!("executor:{}", cap.name);
            let hosts: Vec<&String> = table
                .services
                .iter()
                .filter(|p| p.service == service)
                .flat_map(|p| p.hosts.iter())
                .filter(|h| may_run(h, &cap.nodes, &draining, rt))
                .collect();
            if hosts.iter().all(|h| *h == name) && hosts.iter().any(|h| *h == name) {
                return Err(WardenError::OnlyExecutor { node: name.to_owned(), capability: cap.name.clone() });
            }
        }
    }
    let set =
        Command::SetDraining { node: name.to_owned(), draining: on, shutdown: false, principal: principal.clone() };
    rt.ledger.propose(set).await?;
    let mut leader = consensus.status().leader;
    if on && leader.as_deref() == Some(name) {
        let next = successor(rt, &table, name)?;
        let data = EventData::LeaderTransfer {
            from: Some(name.to_owned()),
            to: next.clone(),
            why: TransferReason::Drain,
            principal,
        };
        record(rt, name, data).await?;
        leader = Some(consensus.transfer_leadership(&next).await?);
    }
    let running = ActiveAction::running_per_node(&rt.store.active_summaries()?).get(name).copied().unwrap_or(0);
    Ok(DrainReport { node: name.to_owned(), draining: on, running, leader })
}

/// A live voter other than `leaving` that is not draining.
fn successor(rt: &Runtime, table: &PeerTable, leaving: &str) -> Result<String> {
    let draining = rt.store.draining()?;
    rt.ledger
        .consensus()
        .status()
        .members
        .into_iter()
        .filter(|m| m.voter && m.name != leaving && !draining.contains(&m.name) && is_up(rt, table, &m.name))
        .map(|m| m.name)
        .next()
        .ok_or_else(|| WardenError::Conflict(format!("no live voter to take leadership from {leaving}")))
}

/// Hands leadership to voter `name`; returns the new leader.
pub async fn transfer_leadership(rt: &Runtime, name: &str, principal: Option<&str>) -> Result<String> {
    let table = peers(rt).await?;
    let consensus = rt.ledger.consensus();
    if !consensus.is_member(name) {
        return Err(WardenError::UnknownNode(name.to_owned()));
    }
    if rt.store.draining()?.contains(name) {
        return Err(WardenError::Conflict(format!("{name} is draining: it cannot take leadership")));
    }
    if !is_up(rt, &table, name) {
        return Err(WardenError::Conflict(format!("{name} is not up")));
    }
    let from = consensus.status().leader;
    if from.as_deref() == Some(name) {
        return Ok(name.to_owned());
    }
    let principal = principal.map(str::to_owned);
    let data = EventData::LeaderTransfer { from, to: name.to_owned(), why: TransferReason::Requested, principal };
    record(rt, name, data).await?;
    consensus.transfer_leadership(name).await
}

/// How often the leader looks for nodes to add to the Raft group.
const ADMIT_EVERY: Duration = Duration::from_millis(500);

/// On the leader, adds every peer the Registry sees up that is not yet a
/// member: as a learner, then (once caught up) as a voter.
pub fn spawn_admission(rt: &Arc<Runtime>) {
    let rt = rt.clone();
    let tasks = rt.tasks.clone();
    tasks.spawn_unique("raft:admit".into(), async move {
        let mut tick = tokio::time::interval(ADMIT_EVERY);
        loop {
            tick.tick().await;
            let consensus = rt.ledger.consensus();
            if !consensus.is_leader() {
                continue;
            }
            let Ok(registry) = rt.directory.get(registry::NAME) else { continue };
            let Ok(table) = call(&registry, RegistryMsg::Peers).await else { continue };
            // Only nodes without a log: adding one that founded its own cluster would mix two logs.
            for peer in table.peers.iter().filter(|p| p.state == PeerState::Up && p.joinable) {
                if !consensus.is_member(&peer.name) {
                    if let Err(e) = consensus.add_voter(&peer.name).await {
                        tracing::warn!(peer = %peer.name, error = %e, "could not add a node to the raft group");
                    }
                }
            }
        }
    });
}

/// How long a starting node keeps trying to end the drain its last graceful stop set.
const END_STOP_DRAIN_WITHIN: Duration = Duration::from_secs(60);

/// Ends the drain this node set for itself when it last stopped gracefully
/// (an operator's drain stays), once it has caught up with the leader.
pub fn end_stop_drain(rt: &Arc<Runtime>) {
    let rt = rt.clone();
    let tasks = rt.tasks.clone();
    tasks.spawn_unique("drain:end".into(), async move {
        let deadline = tokio::time::Instant::now() + END_STOP_DRAIN_WITHIN;
        while tokio::time::Instant::now() < deadline {
            if rt.ledger.consensus().read_barrier().await.is_ok() {
                let mine = rt.store.nodes().ok().and_then(|n| n.into_iter().find(|r| r.name == rt.node));
                if !mine.is_some_and(|r| r.draining && r.shutdown) {
                    return;
                }
                let end =
                    Command::SetDraining { node: rt.node.clone(), draining: false, shutdown: true, principal: None };
                match rt.ledger.propose(end).await {
                    Ok(_) | Err(WardenError::Conflict(_)) => return,
                    Err(e) => tracing::debug!(error = %e, "ending the stop drain: retrying"),
                }
            }
            tokio::time::sleep(ADMIT_EVERY).await;
        }
        tracing::warn!("could not end the drain of the last stop; end it with DELETE /v1/cluster/nodes/<name>/drain");
    });
}

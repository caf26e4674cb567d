//! Registry: cluster membership by heartbeat. Every node's Registry joins one
//! process group; every `heartbeat` it casts a heartbeat to each remote
//! member, and judges each peer by how long it has been silent:
//! `up` → `suspect` after `suspect_after` → `down` after `down_after`, and back
//! to `up` (rejoined) when heartbeats resume. Changes are timeline events.
//!
//! Why a plain timeout and not phi-accrual: heartbeats here travel over
//! loopback or a LAN at a fixed 100 ms, so the inter-arrival distribution
//! phi-accrual would learn is nearly constant; what varies is scheduling
//! stalls of a busy 2-core VM, which a fixed margin (10 missed beats) covers
//! while keeping the "down within 2 s" bound explicit. ractor_cluster's own
//! sessions never time out (a frozen peer stays "connected"), which is why
//! liveness is judged here, from the heartbeats alone.

pub use crate::config::RegistryConfig;

use crate::clock::Clock;
use crate::directory::{ActorName, ChildSpec};
use crate::domain::{DownCause, EventData};
use crate::ids::CorrelationId;
use crate::ledger::Ledger;
use crate::report::{NodeReport, ReportSlot};
use crate::runtime::Runtime;
use crate::store::Store;
use crate::version::{check_wire, WIRE_SCHEMA};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// The process group every node's Registry joins.
pub const REGISTRY_GROUP: &str = "warden.registry";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    Up,
    Suspect,
    Down,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The sender's cluster wire schema: a heartbeat of another is refused.
    #[serde(default)]
    pub schema: u32,
    pub from: String,
    pub seq: u64,
    /// Services the sender hosts (`executor:<capability>`).
    #[serde(default)]
    pub services: Vec<String>,
    /// The sender has no Raft log yet and waits to be added to a cluster.
    #[serde(default)]
    pub joinable: bool,
    /// The sender's latest health report.
    #[serde(default)]
    pub report: Option<Box<NodeReport>>,
}

/// Where one service runs: the first live host by name that is not being
/// drained (a draining host only when there is no other). Every node computes
/// it from its own view, so views that agree on who is up agree on placement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub service: String,
    pub node: Option<String>,
    pub hosts: Vec<String>,
}

/// One peer as the failure detector sees it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerHealth {
    pub name: String,
    pub state: PeerState,
    pub last_heartbeat_ms: u64,
    pub silence_ms: u64,
    /// Times it came back after being declared down.
    pub rejoins: u32,
    /// It has no Raft log yet and waits to be added (see `Heartbeat::joinable`).
    pub joinable: bool,
    /// Its latest health report (from its heartbeats).
    pub report: Option<NodeReport>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PeerTable {
    pub peers: Vec<PeerHealth>,
    pub services: Vec<Placement>,
}

/// MessagePack on the wire for cluster payloads: one impl per type, by macro.
macro_rules! wire {
    ($($t:ty),*) => {$(
        impl ractor::BytesConvertable for $t {
            fn into_bytes(self) -> Vec<u8> {
                rmp_serde::to_vec_named(&self).expect("cluster payloads always encode")
            }
            fn from_bytes(bytes: Vec<u8>) -> Self {
                // A panic here is caught by ractor, which drops the message.
                rmp_serde::from_slice(&bytes).expect("malformed cluster payload")
            }
        }
    )*};
}
wire!(Heartbeat, PeerTable);

#[derive(RactorClusterMessage)]
pub enum RegistryMsg {
    Heartbeat(Heartbeat),
    /// Time to send heartbeats and judge peers.
    Tick,
    /// The transport's last session to this peer closed: its process is gone
    /// (or the link is), so it is down now rather than after `down_after`.
    PeerLost(String),
    #[rpc]
    Peers(RpcReplyPort<PeerTable>),
}

pub struct Registry;

pub struct RegistryArgs {
    pub node: String,
    pub config: RegistryConfig,
    pub ledger: Arc<Ledger>,
    /// Services this node hosts.
    pub services: Vec<String>,
    /// This node's health report, sent with every heartbeat.
    pub report: ReportSlot,
    /// Read access to the replicated state (which nodes are draining).
    pub store: Store,
    pub clock: Clock,
}

/// The actor's name in the node's directory.
pub const NAME: ActorName<RegistryMsg> = ActorName::new("registry");

/// The Registry hosting an `executor:<capability>` service per capability of the catalog.
pub fn child(rt: &Arc<Runtime>) -> ChildSpec {
    let rt = rt.clone();
    ChildSpec::new(NAME, move || {
        let args = RegistryArgs {
            node: rt.node.clone(),
            config: rt.config.registry.clone(),
            ledger: rt.ledger.clone(),
            services: rt.catalog.all().iter().map(|c| format!("executor:{}", c.name)).collect(),
            report: rt.report.clone(),
            store: rt.store.clone(),
            clock: rt.clock.clone(),
        };
        (Registry, args)
    })
}

struct Peer {
    state: PeerState,
    last_seen: Instant,
    last_heartbeat_ms: u64,
    rejoins: u32,
    services: Vec<String>,
    joinable: bool,
    report: Option<NodeReport>,
}

pub struct RegistryState {
    args: RegistryArgs,
    seq: u64,
    peers: BTreeMap<String, Peer>,
    /// Current placement of each service, as last computed.
    placed: BTreeMap<String, Option<String>>,
    /// Peers whose heartbeats were refused for their wire schema (logged once each).
    refused: std::collections::BTreeSet<String>,
}

impl RegistryState {
    fn record(&self, peer: &str, data: EventData) {
        tracing::info!(node = %self.args.node, peer, kind = data.kind().as_str(), "membership changed");
        self.args.ledger.record_detached(CorrelationId(format!("node:{peer}")), data);
    }

    fn heard(&mut self, hb: Heartbeat) {
        if hb.from == self.args.node {
            return;
        }
        if let Err(e) = check_wire(&hb.from, hb.schema) {
            // Once per peer: it keeps sending every heartbeat.
            if self.refused.insert(hb.from.clone()) {
                tracing::warn!(node = %self.args.node, error = %e, "ignoring a peer's heartbeats");
            }
            return;
        }
        let now = Instant::now();
        match self.peers.get_mut(&hb.from) {
            None => {
                let peer = Peer {
                    state: PeerState::Up,
                    last_seen: now,
                    last_heartbeat_ms: self.args.clock.now_ms(),
                    rejoins: 0,
                    services: hb.services.clone(),
                    joinable: hb.joinable,
                    report: hb.report.clone().map(|r| *r),
                };
                self.peers.insert(hb.from.clone(), peer);
                self.record(&hb.from, EventData::NodeJoined { node: hb.from.clone(), rejoined: false });
            }
            Some(peer) => {
                let was = peer.state;
                peer.last_seen = now;
                peer.last_heartbeat_ms = self.args.clock.now_ms();
                peer.services = hb.services;
                peer.joinable = hb.joinable;
                peer.report = hb.report.map(|r| *r);
                peer.state = PeerState::Up;
                if was == PeerState::Down {
                    peer.rejoins += 1;
                    self.record(&hb.from, EventData::NodeJoined { node: hb.from.clone(), rejoined: true });
                }
            }
        }
    }

    fn judge(&mut self) {
        let now = Instant::now();
        let (suspect_after, down_after) = (self.args.config.suspect_after, self.args.config.down_after);
        let mut changes = Vec::new();
        for (name, peer) in &mut self.peers {
            let silence = now.duration_since(peer.last_seen);
            let state = if silence >= down_after {
                PeerState::Down
            } else if silence >= suspect_after {
                PeerState::Suspect
            } else {
                PeerState::Up
            };
            // Only heartbeats bring a peer back up; silence only moves it down.
            if state != peer.state && state != PeerState::Up && peer.state != PeerState::Down {
                peer.state = state;
                changes.push((name.clone(), state, silence));
            }
        }
        for (name, state, silence) in changes {
            let (node, silence_ms) = (name.clone(), silence.as_millis() as u64);
            let data = if state == PeerState::Down {
                EventData::NodeDown { node, silence_ms, cause: None }
            } else {
                EventData::NodeSuspect { node, silence_ms }
            };
            self.record(&name, data);
        }
    }

    /// A peer whose sessions all closed is down at once; heartbeats bring it back.
    fn lost(&mut self, name: &str) {
        let Some(peer) = self.peers.get_mut(name) else { return };
        if peer.state == PeerState::Down {
            return;
        }
        peer.state = PeerState::Down;
        let silence = peer.last_seen.elapsed().as_millis() as u64;
        let cause = Some(DownCause::SessionClosed);
        self.record(name, EventData::NodeDown { node: name.to_owned(), silence_ms: silence, cause });
    }

    /// Every known service with its live hosts and the one it is placed on.
    fn placements(&self) -> Vec<Placement> {
        let mut hosts: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for s in &self.args.services {
            hosts.entry(s).or_default().push(self.args.node.clone());
        }
        for (name, p) in &self.peers {
            for s in &p.services {
                // Placement follows the verdict "down", not mere suspicion, so it does not flap.
                let live = p.state != PeerState::Down;
                let entry = hosts.entry(s).or_default();
                if live {
                    entry.push(name.clone());
                }
            }
        }
        let draining = self.args.store.draining().unwrap_or_default();
        hosts
            .into_iter()
            .map(|(service, mut hosts)| {
                hosts.sort();
                let node = hosts.iter().find(|h| !draining.contains(*h)).or(hosts.first()).cloned();
                Placement { service: service.to_owned(), node, hosts }
            })
            .collect()
    }

    /// Records every placement that changed since the last look.
    fn replace(&mut self) {
        for p in self.placements() {
            let before = self.placed.insert(p.service.clone(), p.node.clone());
            if let Some(before) = before.filter(|b| *b != p.node) {
                let data = EventData::ServiceMoved {
                    service: p.service.clone(),
                    from: before.clone(),
                    to: p.node.clone(),
                    node: before.clone(),
                };
                tracing::info!(service = %p.service, from = ?before, to = ?p.node, "service re-placed");
                let correlation_id = CorrelationId(format!("service:{}", p.service));
                self.args.ledger.record_detached(correlation_id, data);
            }
        }
    }

    fn table(&self) -> PeerTable {
        let now = Instant::now();
        let peers = self
            .peers
            .iter()
            .map(|(name, p)| PeerHealth {
                name: name.clone(),
                state: p.state,
                last_heartbeat_ms: p.last_heartbeat_ms,
                silence_ms: now.duration_since(p.last_seen).as_millis() as u64,
                rejoins: p.rejoins,
                joinable: p.joinable,
                report: p.report.clone(),
            })
            .collect();
        PeerTable { peers, services: self.placements() }
    }
}

impl Actor for Registry {
    type Msg = RegistryMsg;
    type State = RegistryState;
    type Arguments = RegistryArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: RegistryArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        ractor::pg::join(REGISTRY_GROUP.to_owned(), vec![myself.get_cell()]);
        myself.send_interval(args.config.heartbeat, || RegistryMsg::Tick);
        Ok(RegistryState { args, seq: 0, peers: BTreeMap::new(), placed: BTreeMap::new(), refused: Default::default() })
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RegistryMsg::Heartbeat(hb) => state.heard(hb),
            RegistryMsg::Tick => {
                state.seq += 1;
                let joinable = state.args.ledger.consensus().joinable();
                let report = Some(Box::new(state.args.report.read().clone()));
                for member in ractor::pg::get_members(&REGISTRY_GROUP.to_owned()) {
                    if !member.get_id().is_local() {
                        let hb = Heartbeat {
                            schema: WIRE_SCHEMA,
                            from: state.args.node.clone(),
                            seq: state.seq,
                            services: state.args.services.clone(),
                            joinable,
                            report: report.clone(),
                        };
                        let _ = ActorRef::<RegistryMsg>::from(member).cast(RegistryMsg::Heartbeat(hb));
                    }
                }
                state.judge();
                state.replace();
            }
            RegistryMsg::PeerLost(name) => {
                state.lost(&name);
                state.replace();
            }
            RegistryMsg::Peers(reply) => {
                let _ = reply.send(state.table());
            }
        }
        Ok(())
    }
}

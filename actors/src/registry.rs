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
use crate::version::{check_wire, Version, WIRE_MINOR, WIRE_SCHEMA};
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
    /// The sender's wire minor version within `schema` (`version::WIRE_MINOR`):
    /// the cluster's effective version is the lowest of its members'.
    #[serde(default)]
    pub minor: u32,
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
    /// The wire version it speaks (from its heartbeats).
    #[serde(default)]
    pub version: Version,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PeerTable {
    pub peers: Vec<PeerHealth>,
    pub services: Vec<Placement>,
}

/// A payload as it arrived from the cluster transport: decoded, or why it
/// could not be. ractor's `from_bytes` cannot fail, so decoding never
/// panics on what a peer (or anyone holding the cookie) sends; the handler
/// drops a malformed payload with a warning.
#[derive(Debug)]
pub struct Inbound<T>(pub Result<T, String>);

impl<T> From<T> for Inbound<T> {
    fn from(value: T) -> Self {
        Inbound(Ok(value))
    }
}

/// Logs a malformed heartbeat: the first, then every power of two of them.
fn malformed_heartbeat(error: &str) {
    static MALFORMED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = MALFORMED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        tracing::warn!(error, malformed = n, "dropped a heartbeat that does not decode");
    }
}

/// Decodes one cluster payload (MessagePack); never panics.
pub fn decode_payload<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    rmp_serde::from_slice(bytes).map_err(|e| e.to_string())
}

impl ractor::BytesConvertable for Inbound<Heartbeat> {
    fn into_bytes(self) -> Vec<u8> {
        match self.0 {
            Ok(hb) => rmp_serde::to_vec_named(&hb).expect("a heartbeat always encodes"),
            // Never sent: a malformed payload is dropped where it arrived.
            Err(_) => Vec::new(),
        }
    }
    fn from_bytes(bytes: Vec<u8>) -> Self {
        Inbound(decode_payload(&bytes))
    }
}

/// Only ever a local reply (`RegistryMsg::Peers`); an undecodable one reads as empty.
impl ractor::BytesConvertable for PeerTable {
    fn into_bytes(self) -> Vec<u8> {
        rmp_serde::to_vec_named(&self).expect("a peer table always encodes")
    }
    fn from_bytes(bytes: Vec<u8>) -> Self {
        decode_payload(&bytes).unwrap_or_default()
    }
}

#[derive(RactorClusterMessage)]
pub enum RegistryMsg {
    Heartbeat(Inbound<Heartbeat>),
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
    version: Version,
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
        let version = Version { major: hb.schema, minor: hb.minor };
        self.args.ledger.consensus().heard_version(&hb.from, version);
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
                    version,
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
                peer.version = version;
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
                version: p.version,
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
            RegistryMsg::Heartbeat(Inbound(Ok(hb))) => state.heard(hb),
            RegistryMsg::Heartbeat(Inbound(Err(e))) => malformed_heartbeat(&e),
            RegistryMsg::Tick => {
                state.seq += 1;
                let joinable = state.args.ledger.consensus().joinable();
                let report = Some(Box::new(state.args.report.read().clone()));
                for member in ractor::pg::get_members(&REGISTRY_GROUP.to_owned()) {
                    if !member.get_id().is_local() {
                        let hb = Heartbeat {
                            schema: WIRE_SCHEMA,
                            minor: WIRE_MINOR,
                            from: state.args.node.clone(),
                            seq: state.seq,
                            services: state.args.services.clone(),
                            joinable,
                            report: report.clone(),
                        };
                        let _ = ActorRef::<RegistryMsg>::from(member).cast(RegistryMsg::Heartbeat(hb.into()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ractor::BytesConvertable;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        /// Whatever arrives on the wire, decoding returns a value or an error.
        #[test]
        fn arbitrary_bytes_never_panic_the_heartbeat_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Inbound::<Heartbeat>::from_bytes(bytes.clone());
            let _ = PeerTable::from_bytes(bytes);
        }

        /// A heartbeat with one byte flipped or cut short decodes or is refused, never panics.
        #[test]
        fn a_damaged_heartbeat_never_panics(at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<bool>()) {
            let hb = Heartbeat { schema: WIRE_SCHEMA, minor: WIRE_MINOR, from: "a".into(), seq: 7, services: vec!["executor:x".into()],
                joinable: true, report: None };
            let mut bytes = Inbound::from(hb).into_bytes();
            let i = at.index(bytes.len());
            if cut { bytes.truncate(i) } else { bytes[i] = byte }
            let _ = Inbound::<Heartbeat>::from_bytes(bytes);
        }
    }

    #[test]
    fn a_heartbeat_round_trips_and_garbage_is_an_error() {
        let hb = Heartbeat {
            schema: WIRE_SCHEMA,
            minor: WIRE_MINOR,
            from: "b".into(),
            seq: 3,
            services: vec![],
            joinable: false,
            report: None,
        };
        let back = Inbound::<Heartbeat>::from_bytes(Inbound::from(hb).into_bytes()).0.unwrap();
        assert_eq!((back.from.as_str(), back.seq), ("b", 3));
        assert!(Inbound::<Heartbeat>::from_bytes(vec![0xc1, 0xff, 0x00]).0.is_err());
    }
}

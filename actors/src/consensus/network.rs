//! Raft's RPCs over the cluster transport, so they are authenticated by the
//! cookie like everything else. Every node runs one `RaftRpc` actor, named
//! after the node and joined to one process group; a peer is found by name
//! among the group's members. Requests and replies are MessagePack; a call
//! that times out or finds no peer is reported to openraft as such (`Timeout`,
//! `Unreachable`: the only variants that mean "the peer did not answer"), and
//! it backs off and retries; `reachability` says in the log what matters.

use super::{Member, Outcome, TypeConfig};
use crate::command::Entry;
use crate::limits::MAX_RPC_PAYLOAD_BYTES;
use crate::version::WIRE_SCHEMA;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use ractor::rpc::CallResult;
use ractor::{ActorCell, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use std::time::Duration;

type NodeId = u64;

/// The process group of every node's `RaftRpc` actor.
pub const RAFT_GROUP: &str = "warden.raft";

/// The registered name of `node`'s `RaftRpc` actor.
pub fn rpc_actor_name(node: &str) -> String {
    format!("warden.raft@{node}")
}

#[derive(Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)] // encoded at once; never stored
pub enum Request {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A write proposed on a follower, to be appended by the leader.
    Forward(Entry),
    /// The leader's read index: the log index a linearizable read must wait for.
    ReadIndex,
    /// Remove this member from the group (served by the leader).
    Remove(String),
    /// Add this node as a voter (served by the leader).
    Add(String),
    /// Hand leadership to this voter (served by the leader).
    Transfer(String),
    /// Call an election now (sent by a leader handing over to the receiver).
    Elect,
    /// A pre-vote: how long has the receiver not heard this leader (`silence`)?
    Silence(NodeId),
}

/// The leader's answer to a forwarded write.
#[derive(Serialize, Deserialize)]
pub enum Forwarded {
    /// Committed at this log index, with the state machine's outcome.
    Committed { outcome: Outcome, index: u64 },
    /// The receiver is not the leader: nothing was appended.
    NotLeader,
    /// Appending failed for another reason; the write may or may not commit.
    Failed(String),
    /// The leader refused it before appending (its storage is low): nothing was appended.
    Refused(crate::WardenError),
}

#[derive(Serialize, Deserialize)]
pub enum Reply {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Forward(Forwarded),
    ReadIndex(Result<u64, String>),
    Remove(Result<(), crate::WardenError>),
    Add(Result<(), crate::WardenError>),
    Transfer(Result<String, crate::WardenError>),
    Elect(Result<(), String>),
    /// Milliseconds since the receiver heard the leader it was asked about.
    Silence(u64),
}

#[derive(RactorClusterMessage)]
pub enum RaftRpcMsg {
    /// An encoded `Request`; the reply is an encoded `Reply`.
    #[rpc]
    Call(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

/// Why a call to a peer's `RaftRpc` did not produce a reply.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nothing was sent: the transport knows no such peer.
    #[error("no connection to node {0}")]
    NoRoute(String),
    /// Sent, but the session ended before a reply: it may have been acted on.
    #[error("node {0} went away before answering")]
    Lost(String),
    #[error("node {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    #[error("call to node {0} failed: {1}")]
    Failed(String, String),
    /// The peer speaks another cluster wire schema and refused the call unread.
    #[error("node {0} speaks cluster wire schema {1}, not this node's; run one warden version per cluster")]
    Incompatible(String, u32),
}

/// The `RaftRpc` actor of `node`, if the transport knows it.
fn find(node: &str) -> Option<ActorRef<RaftRpcMsg>> {
    let name = rpc_actor_name(node);
    ractor::pg::get_members(&RAFT_GROUP.to_owned())
        .into_iter()
        .find(|cell: &ActorCell| cell.get_name().as_deref() == Some(name.as_str()))
        .map(ActorRef::from)
}

/// Sends `request` to `node` and waits at most `ttl` for its reply.
pub async fn call(node: &str, request: &Request, ttl: Duration) -> Result<Reply, CallError> {
    call_encoded(node, encode(node, request)?, ttl).await
}

fn encode(node: &str, request: &Request) -> Result<Vec<u8>, CallError> {
    frame(request).map_err(|e| CallError::Failed(node.into(), e.to_string()))
}

/// Every frame, request or reply, starts with its sender's wire schema
/// (4 bytes, big-endian); MessagePack follows.
pub(super) fn frame<T: Serialize>(value: &T) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    let mut bytes = WIRE_SCHEMA.to_be_bytes().to_vec();
    rmp_serde::encode::write_named(&mut bytes, value)?;
    Ok(bytes)
}

/// A reply that says only which schema the receiver speaks: what a refused call gets.
pub(super) fn frame_schema_only() -> Vec<u8> {
    WIRE_SCHEMA.to_be_bytes().to_vec()
}

/// The MessagePack body of a frame of this build's schema, or the schema it was sent in.
pub(super) fn unframe(bytes: &[u8]) -> Result<&[u8], u32> {
    let Some((schema, body)) = bytes.split_first_chunk::<4>() else { return Err(0) };
    match u32::from_be_bytes(*schema) {
        WIRE_SCHEMA => Ok(body),
        theirs => Err(theirs),
    }
}

/// The request a frame's body holds; never panics on what a peer sends.
pub(super) fn decode_request(body: &[u8]) -> Result<Request, String> {
    rmp_serde::from_slice(body).map_err(|e| e.to_string())
}

async fn call_encoded(node: &str, bytes: Vec<u8>, ttl: Duration) -> Result<Reply, CallError> {
    let peer = find(node).ok_or_else(|| CallError::NoRoute(node.into()))?;
    match peer.call(|port| RaftRpcMsg::Call(bytes, port), Some(ttl)).await {
        Ok(CallResult::Success(reply)) => {
            let body = unframe(&reply).map_err(|theirs| CallError::Incompatible(node.into(), theirs))?;
            rmp_serde::from_slice(body).map_err(|e| CallError::Failed(node.into(), e.to_string()))
        }
        Ok(CallResult::Timeout) => Err(CallError::Timeout(node.into(), ttl)),
        Ok(CallResult::SenderError) => Err(CallError::Lost(node.into())),
        // Not enqueued: the peer's session closed (it died or was cut off)
        // after `find` saw it. Nothing was sent, so a caller may go on to the
        // next leader as for an unknown peer (a forwarded write was lost here
        // when the leader died: tests/cluster.rs, service.moved).
        Err(_) => Err(CallError::NoRoute(node.into())),
    }
}

/// How often openraft retries a peer reported unreachable: often enough to
/// notice its return quickly.
const UNREACHABLE_RETRY: Duration = Duration::from_millis(200);

/// Peers that do not answer Raft RPCs, reported when it matters. openraft
/// reports every failed RPC itself (at ERROR, every retry); its reports of
/// `Unreachable` and `Timeout` are expected while a peer starts, stops or
/// dies, so the `warden` binary filters them out of its log, and these lines
/// are what an operator reads instead: info when a peer is not connected yet
/// (the transport is still dialling it at start), warn once when a peer that
/// answered before stays silent for `SILENT_WARN_AFTER` (one slow call that
/// openraft retries is not news), info when it answers again. The table is
/// process-wide, keyed by peer name: two nodes embedded in one process share
/// these lines.
mod reachability {
    use super::CallError;
    use parking_lot::Mutex;
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    /// How long a peer that answered before must stay silent to be warned about.
    const SILENT_WARN_AFTER: Duration = Duration::from_secs(1);
    /// How long a peer that never answered may stay unconnected (nodes start one by one).
    const UNCONNECTED_WARN_AFTER: Duration = Duration::from_secs(30);

    #[derive(Default)]
    struct Peer {
        answered: bool,
        failing_since: Option<Instant>,
        warned: bool,
    }

    static PEERS: Mutex<BTreeMap<String, Peer>> = Mutex::new(BTreeMap::new());

    /// Records the outcome of one RPC to `peer`; logs what changed.
    pub(super) fn note(peer: &str, error: Option<&CallError>) {
        let silent = matches!(error, Some(CallError::NoRoute(_) | CallError::Lost(_) | CallError::Timeout(..)));
        let mut peers = PEERS.lock();
        let p = peers.entry(peer.to_owned()).or_default();
        let now = Instant::now();
        let retry_every = super::UNREACHABLE_RETRY;
        match (silent, p.failing_since, error) {
            (true, None, Some(e)) => {
                p.failing_since = Some(now);
                if !p.answered {
                    tracing::info!(peer, error = %e, ?retry_every, "raft: peer not connected yet; retrying");
                } else {
                    tracing::debug!(peer, error = %e, "raft: a call to the peer failed; retrying");
                }
            }
            (true, Some(since), Some(e)) if !p.warned => {
                let limit = if p.answered { SILENT_WARN_AFTER } else { UNCONNECTED_WARN_AFTER };
                if now - since >= limit {
                    p.warned = true;
                    tracing::warn!(
                        peer, error = %e, silent_for = ?(now - since), ?retry_every,
                        "raft: peer not answering; retrying (the registry judges whether it is down, \
                         and a down node's attempts are taken over)"
                    );
                }
            }
            // A call that reached the peer (an answer; not a refusal of our wire schema).
            (false, since, None) => {
                if let (true, Some(since)) = (p.warned, since) {
                    tracing::info!(peer, silent_for = ?(now - since), "raft: peer answers again");
                }
                *p = Peer { answered: true, failing_since: None, warned: false };
            }
            _ => {}
        }
    }
}

/// openraft's view of the network: one client per target node.
pub struct Network;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerClient {
        PeerClient { target, node: node.name.clone() }
    }
}

pub struct PeerClient {
    target: NodeId,
    node: String,
}

impl PeerClient {
    async fn send<E: std::error::Error>(
        &self,
        kind: RPCTypes,
        request: Request,
        option: &RPCOption,
    ) -> Result<Reply, RPCError<NodeId, Member, E>> {
        let bytes = encode(&self.node, &request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.send_encoded(kind, bytes, option).await
    }

    async fn send_encoded<E: std::error::Error>(
        &self,
        kind: RPCTypes,
        bytes: Vec<u8>,
        option: &RPCOption,
    ) -> Result<Reply, RPCError<NodeId, Member, E>> {
        let ttl = option.hard_ttl();
        let result = call_encoded(&self.node, bytes, ttl).await;
        reachability::note(&self.node, result.as_ref().err());
        result.map_err(|e| match e {
            CallError::NoRoute(_) | CallError::Lost(_) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Timeout(..) => {
                RPCError::Timeout(Timeout { action: kind, id: 0, target: self.target, timeout: ttl })
            }
            CallError::Failed(..) | CallError::Incompatible(..) => RPCError::Network(NetworkError::new(&e)),
        })
    }

    fn unexpected<E: std::error::Error>(&self) -> RPCError<NodeId, Member, E> {
        let e = CallError::Failed(self.node.clone(), "unexpected reply".into());
        RPCError::Network(NetworkError::new(&e))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        let entries = rpc.entries.len() as u64;
        let bytes = encode(&self.node, &Request::Append(rpc)).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        // ractor_cluster tears down a session on a frame over 16 MiB: ask for smaller batches.
        if bytes.len() > MAX_RPC_PAYLOAD_BYTES && entries > 1 {
            return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(entries / 2)));
        }
        match self.send_encoded(RPCTypes::AppendEntries, bytes, &option).await? {
            Reply::Append(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            _ => Err(self.unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>>
    {
        match self.send(RPCTypes::InstallSnapshot, Request::Snapshot(rpc), &option).await? {
            Reply::Snapshot(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            _ => Err(self.unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        match self.send(RPCTypes::Vote, Request::Vote(rpc), &option).await? {
            Reply::Vote(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            _ => Err(self.unexpected()),
        }
    }

    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(UNREACHABLE_RETRY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        /// Arbitrary bytes at the raft frame decoder: a body or a schema, then a request or an error.
        #[test]
        fn arbitrary_bytes_never_panic_the_frame_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            if let Ok(body) = unframe(&bytes) {
                let _ = decode_request(body);
            }
            let _ = decode_request(&bytes);
        }

        /// A real request with one byte changed or cut short decodes or is refused, never panics.
        #[test]
        fn a_damaged_request_never_panics(at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<bool>()) {
            let mut bytes = frame(&Request::Transfer("b".into())).unwrap();
            let i = at.index(bytes.len());
            if cut { bytes.truncate(i) } else { bytes[i] = byte }
            if let Ok(body) = unframe(&bytes) {
                let _ = decode_request(body);
            }
        }
    }

    #[test]
    fn a_request_round_trips_and_another_schema_is_named() {
        let bytes = frame(&Request::Remove("c".into())).unwrap();
        assert!(matches!(decode_request(unframe(&bytes).unwrap()), Ok(Request::Remove(n)) if n == "c"));
        let mut other = bytes.clone();
        other[..4].copy_from_slice(&(WIRE_SCHEMA + 1).to_be_bytes());
        assert_eq!(unframe(&other).err(), Some(WIRE_SCHEMA + 1));
        assert!(decode_request(&[0xc1]).is_err());
    }
}

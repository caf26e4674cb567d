//! The `RaftRpc` actor: serves Raft RPCs, forwarded writes, read indexes and
//! membership requests for this node's Raft (the server side of `network`).
//! Registered as `warden.raft@<node>` in the process group `warden.raft`.

use super::membership;
use super::network::{
    decode_request, frame, frame_schema_only, rpc_actor_name, unframe, Forwarded, RaftRpcMsg, Reply, Request,
    RAFT_GROUP,
};
use super::silence::{self, Heard};
use super::{Consensus, Proposer, Refused, TypeConfig};
use crate::directory::{ActorName, ChildSpec};
use crate::disk::StorageGate;
use crate::version::WIRE_SCHEMA;
use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::Raft;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Serves Raft RPCs and forwarded writes for this node's Raft.
pub struct RaftRpc;

/// The actor's name in this node's directory (peers find it by `rpc_actor_name`).
pub const NAME: ActorName<RaftRpcMsg> = ActorName::new("raft_rpc");

/// How the supervisor starts it: registered under `warden.raft@<node>`, so peers find it.
pub fn child(consensus: &Consensus) -> ChildSpec {
    let args = RaftRpcArgs {
        raft: consensus.raft().clone(),
        proposer: consensus.proposer().clone(),
        storage: consensus.storage().clone(),
        heard: consensus.heard.clone(),
        id: consensus.id,
    };
    ChildSpec::registered(NAME, rpc_actor_name(consensus.name()), move || (RaftRpc, args.clone()))
}

/// Logs, once per schema, that a peer of another wire schema was refused.
fn refused_schema(theirs: u32) {
    static LAST_REFUSED: AtomicU32 = AtomicU32::new(0);
    if LAST_REFUSED.swap(theirs, Ordering::Relaxed) != theirs {
        tracing::warn!(
            theirs,
            ours = WIRE_SCHEMA,
            "refusing raft calls from a peer of another cluster wire schema: run one warden version per cluster"
        );
    }
}

/// Logs a raft request that does not decode: the first, then every power of two of them.
fn malformed_request(error: &str) {
    static MALFORMED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = MALFORMED.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        tracing::warn!(error, malformed = n, "dropped a raft request that does not decode");
    }
}

/// What `RaftRpc` serves with: the Raft, and the proposal queue for forwarded writes.
#[derive(Clone)]
pub struct RaftRpcArgs {
    pub raft: Raft<TypeConfig>,
    pub proposer: Proposer,
    /// The leader's own storage gate, asked before a forwarded write is appended.
    pub storage: Arc<StorageGate>,
    /// When an append from a leader last arrived (for the silence watch).
    pub heard: Arc<Heard>,
    /// This node's Raft id.
    pub id: u64,
}

impl Actor for RaftRpc {
    type Msg = RaftRpcMsg;
    type State = RaftRpcArgs;
    type Arguments = RaftRpcArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        ractor::pg::join(RAFT_GROUP.to_owned(), vec![myself.get_cell()]);
        Ok(args)
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        args: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let RaftRpcMsg::Call(bytes, reply) = msg;
        let body = match unframe(&bytes) {
            Ok(body) => body,
            Err(theirs) => {
                refused_schema(theirs);
                // Our schema alone tells the caller why nothing was done.
                let _ = reply.send(frame_schema_only());
                return Ok(());
            }
        };
        let request = match decode_request(body) {
            Ok(request) => request,
            Err(e) => {
                // Dropping the reply port tells the caller nothing was done.
                malformed_request(&e);
                return Ok(());
            }
        };
        let args = args.clone();
        // Each call runs on its own task: a slow append never delays a vote.
        tokio::spawn(async move {
            let answer = serve(&args, request).await;
            match frame(&answer) {
                Ok(bytes) => {
                    let _ = reply.send(bytes);
                }
                Err(e) => tracing::error!(error = %e, "cannot encode a raft reply"),
            }
        });
        Ok(())
    }
}

async fn serve(args: &RaftRpcArgs, request: Request) -> Reply {
    let raft = &args.raft;
    match request {
        Request::Append(r) => {
            if let (true, Some(&leader)) = (r.vote.is_committed(), r.vote.leader_id().voted_for().as_ref()) {
                args.heard.note(leader);
            }
            Reply::Append(raft.append_entries(r).await)
        }
        Request::Vote(r) => Reply::Vote(raft.vote(r).await),
        Request::Snapshot(r) => Reply::Snapshot(raft.install_snapshot(r).await),
        Request::Forward(entry) => Reply::Forward(match args.storage.admit(&entry.cmd) {
            Err(e) => Forwarded::Refused(e),
            Ok(()) => match args.proposer.write(entry).await {
                Ok((outcome, index)) => Forwarded::Committed { outcome, index },
                Err(Refused::NotLeader) => Forwarded::NotLeader,
                Err(Refused::Failed(e)) => Forwarded::Failed(e),
            },
        }),
        Request::Remove(name) => Reply::Remove(membership::remove_from(raft, &name).await),
        Request::Add(name) => Reply::Add(membership::add_from(raft, &name).await),
        Request::Transfer(name) => Reply::Transfer(membership::transfer_from(raft, &args.proposer, &name).await),
        Request::Silence(leader) => Reply::Silence(silence::silence_of(raft, &args.heard, leader, args.id)),
        Request::Elect => Reply::Elect(raft.trigger().elect().await.map_err(|e| e.to_string())),
        Request::ReadIndex => Reply::ReadIndex(match raft.ensure_linearizable().await {
            Ok(read) => Ok(read.map_or(0, |l| l.index)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => Err("not the leader".into()),
            Err(e) => Err(e.to_string()),
        }),
    }
}

//! Group commit in front of openraft. openraft 0.9 waits for each append's
//! fsync before it takes the next client write, so one command per Raft
//! entry means one fsync per command. The proposer gathers the commands
//! proposed meanwhile into one entry (a batch): one append, one fsync, one
//! replication round for all of them. The leader's own proposals and the
//! ones followers forward go through the same queue.

use super::{Outcome, TypeConfig};
use crate::command::Entry;
use crate::limits::{MAX_BATCH_BYTES, MAX_COMMIT_BATCH, PROPOSAL_QUEUE};
use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Why a proposal was not written.
#[derive(Debug)]
pub enum Refused {
    /// This node does not lead: nothing was appended.
    NotLeader,
    /// Appending failed otherwise; the batch may or may not commit.
    Failed(String),
}

type Reply = oneshot::Sender<Result<(Outcome, u64), Refused>>;

/// Handle to this node's proposal queue; cheap to clone.
#[derive(Clone)]
pub struct Proposer {
    queue: mpsc::Sender<(Entry, Reply)>,
    /// While true, batches wait (a leadership hand-over is under way).
    paused: Arc<watch::Sender<bool>>,
}

/// Longest a pause holds proposals, whatever happens to the hand-over.
const MAX_PAUSE: Duration = Duration::from_secs(5);

impl Proposer {
    pub fn start(raft: Raft<TypeConfig>) -> Self {
        let (queue, rx) = mpsc::channel(PROPOSAL_QUEUE);
        let (paused, pause_rx) = watch::channel(false);
        tokio::spawn(run(raft, rx, pause_rx));
        Self { queue, paused: Arc::new(paused) }
    }

    /// Commands waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Holds (or releases) new batches; a held batch waits at most `MAX_PAUSE`.
    pub fn pause(&self, on: bool) {
        self.paused.send_replace(on);
    }

    /// Writes `entry` in the next batch; returns its outcome and the log
    /// index of the batch once it is committed and applied on this node.
    pub async fn write(&self, entry: Entry) -> Result<(Outcome, u64), Refused> {
        let (tx, rx) = oneshot::channel();
        let stopped = || Refused::Failed("the proposer stopped".into());
        self.queue.send((entry, tx)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

fn encoded_len(entry: &Entry) -> usize {
    rmp_serde::encode::to_vec(entry).map_or(0, |b| b.len())
}

/// One batch in flight at a time: what arrives while it is written forms the next.
async fn run(raft: Raft<TypeConfig>, mut rx: mpsc::Receiver<(Entry, Reply)>, mut paused: watch::Receiver<bool>) {
    while let Some(first) = rx.recv().await {
        let _ = tokio::time::timeout(MAX_PAUSE, paused.wait_for(|p| !*p)).await;
        let mut bytes = encoded_len(&first.0);
        let mut batch = vec![first];
        // Bounded in bytes too, so an append RPC of one batch fits a cluster frame.
        while batch.len() < MAX_COMMIT_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(next) => {
                    bytes += encoded_len(&next.0);
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let (entries, replies): (Vec<Entry>, Vec<Reply>) = batch.into_iter().unzip();
        match raft.client_write(entries).await {
            Ok(written) => {
                let index = written.log_id.index;
                for (reply, outcome) in replies.into_iter().zip(written.data) {
                    let _ = reply.send(Ok((outcome, index)));
                }
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                for reply in replies {
                    let _ = reply.send(Err(Refused::NotLeader));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(Refused::Failed(e.to_string())));
                }
            }
        }
    }
}

//! Indexer: keeps the timeline's index file (`store::event_index`) caught up
//! with the committed events, off the log's writer thread. When the applied
//! index moves it waits `INDEX_EVERY_MS` on the node's clock, gathering what
//! else is applied meanwhile, then catches up in transactions of at most
//! `CATCH_UP_BATCH` events, on a blocking thread, one at a time — so a
//! quiet node does not pay a transaction per command, and a busy one writes
//! large ones. Queries do not wait for it: what it has not indexed yet they
//! read from the events. Then, when enough events have expired, it removes
//! their rows (`EventIndex::prune`). A storage error fails the actor, and its
//! supervisor restarts it.

use crate::directory::{ActorName, ChildSpec};
use crate::runtime::Runtime;
use crate::store::event_index::{CATCH_UP_BATCH, PRUNE_AT_LEAST};
use crate::store::{CaughtUp, Store};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::RactorMessage;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub const NAME: ActorName<IndexerMsg> = ActorName::new("indexer");

/// How long applied commands gather before the index catches up with them.
pub const INDEX_EVERY_MS: u64 = 50;

#[derive(RactorMessage)]
pub enum IndexerMsg {
    /// The applied index moved: index what has been committed since.
    CatchUp,
}

pub struct Indexer;

pub struct IndexerState {
    store: Store,
    /// A `CatchUp` is in the mailbox: the watcher sends no second one.
    pending: Arc<AtomicBool>,
}

pub fn child(rt: &Arc<Runtime>) -> ChildSpec {
    let rt = rt.clone();
    ChildSpec::new(NAME, move || (Indexer, rt.clone()))
}

impl Actor for Indexer {
    type Msg = IndexerMsg;
    type State = IndexerState;
    type Arguments = Arc<Runtime>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        rt: Arc<Runtime>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let pending = Arc::new(AtomicBool::new(true));
        myself.cast(IndexerMsg::CatchUp)?;
        let (me, flag, mut applied) = (myself.clone(), pending.clone(), rt.ledger.consensus().hub().watch_applied());
        let clock = rt.clock.clone();
        rt.tasks.spawn_unique(format!("indexer:applied:{}", myself.get_id()), async move {
            while applied.changed().await.is_ok() {
                clock.sleep_until(clock.now_ms() + INDEX_EVERY_MS).await;
                applied.mark_unchanged();
                if !flag.swap(true, Ordering::AcqRel) && me.cast(IndexerMsg::CatchUp).is_err() {
                    return;
                }
            }
        });
        Ok(IndexerState { store: rt.store.clone(), pending })
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            IndexerMsg::CatchUp => {
                // Cleared first: events committed while this runs send another.
                state.pending.store(false, Ordering::Release);
                loop {
                    let store = state.store.clone();
                    let caught = tokio::task::spawn_blocking(move || store.index_catch_up(CATCH_UP_BATCH)).await??;
                    if let Some(CaughtUp { reset: true, through, .. }) = caught {
                        tracing::warn!(through, "the timeline index did not match the events; rebuilt from them");
                    }
                    if caught.is_none_or(|c| c.indexed < CATCH_UP_BATCH) {
                        break;
                    }
                }
                let store = state.store.clone();
                if let Some(rows) = tokio::task::spawn_blocking(move || store.index_prune(PRUNE_AT_LEAST)).await?? {
                    tracing::debug!(rows, "removed the timeline index's rows of expired events");
                }
            }
        }
        Ok(())
    }
}

//! Retention: every `[retention] every_ms` on the node's clock, the leader
//! proposes `Expire` with the cutoff `now - events_ms` (its clock, in the
//! command, so every replica removes the same records), again while the
//! answer says more is left, up to `MAX_COMMANDS_PER_ROUND` commands a round
//! — none when its own oldest event is younger than the cutoff and no
//! session is expirable. The round's first command also carries the
//! sessions cutoff `now - sessions_ms` (one pass over the sessions a round).
//! Followers do nothing here: they apply what the leader proposes, and each
//! node archives what it removes (`store::archive`).
//!
//! Not while the data dir is under its low watermark or failed: the archive
//! is written before a removal commits, and a write that cannot be made
//! would fail the log's writer. A refusal or a lost leadership ends the
//! round; the next one tries again. A failure is logged once until it changes.

use crate::command::{Command, Response};
use crate::directory::{ActorName, ChildSpec};
use crate::disk::StorageState;
use crate::runtime::Runtime;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::RactorMessage;
use std::sync::Arc;

pub const NAME: ActorName<RetentionMsg> = ActorName::new("retention");

/// `Expire` commands one round proposes at most, so a node that was off
/// retention for long catches up over several rounds, not in one burst.
pub const MAX_COMMANDS_PER_ROUND: usize = 50;

#[derive(RactorMessage)]
pub enum RetentionMsg {
    /// Expire what is older than the retention, if this node leads.
    Round,
}

pub struct Retention;

pub struct RetentionState {
    rt: Arc<Runtime>,
    /// The last failure logged, so the same one is not logged every round.
    last_error: Option<String>,
}

pub fn child(rt: &Arc<Runtime>) -> ChildSpec {
    let rt = rt.clone();
    ChildSpec::new(NAME, move || (Retention, rt.clone()))
}

/// What one round removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub commands: usize,
    pub events: u64,
    pub actions: u64,
    pub turns: u64,
    pub sessions: u64,
}

/// Proposes `Expire` until nothing older than the cutoff is left (or the
/// round's bound is reached); `Ok(None)` when this node does not lead, the
/// retention is off, or the storage cannot take the archive's writes.
pub async fn expire_round(rt: &Runtime) -> crate::Result<Option<Round>> {
    let retention = &rt.config.retention;
    if retention.events.is_none() && retention.sessions.is_none() {
        return Ok(None);
    }
    let consensus = rt.ledger.consensus();
    if !consensus.leads() || consensus.storage().report().state != StorageState::Ok {
        return Ok(None);
    }
    let now = rt.clock.now_ms();
    let cutoff = |keep: Option<std::time::Duration>| keep.map(|k| now.saturating_sub(k.as_millis() as u64));
    // Without an events retention, no event is ever older than the cutoff.
    let before_ms = cutoff(retention.events).unwrap_or(0);
    let mut sessions_before_ms = cutoff(retention.sessions);
    let mut round = Round::default();
    // Nothing to remove: no command at all (the log and the state stay as they are).
    let old_events = rt.store.oldest_event_ms()?.is_some_and(|ts| ts < before_ms);
    if let Some(at) = sessions_before_ms {
        if rt.store.expirable_sessions(at)? == 0 {
            sessions_before_ms = None;
        }
    }
    if !old_events && sessions_before_ms.is_none() {
        return Ok(Some(round));
    }
    while round.commands < MAX_COMMANDS_PER_ROUND {
        let cmd =
            Command::Expire { before_ms, max_events: retention.batch, sessions_before_ms: sessions_before_ms.take() };
        let Response::Expired { events, actions, turns, more, sessions, .. } = rt.ledger.propose(cmd).await? else {
            return Err(crate::WardenError::Storage("expire answered something else".into()));
        };
        round.commands += 1;
        round.events += events;
        round.actions += actions;
        round.turns += turns;
        round.sessions += sessions;
        if !more {
            break;
        }
    }
    Ok(Some(round))
}

impl Actor for Retention {
    type Msg = RetentionMsg;
    type State = RetentionState;
    type Arguments = Arc<Runtime>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        rt: Arc<Runtime>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (me, clock) = (myself.clone(), rt.clock.clone());
        let every = rt.config.retention.every.as_millis() as u64;
        if rt.config.retention.events.is_some() || rt.config.retention.sessions.is_some() {
            rt.tasks.spawn_unique(format!("retention:rounds:{}", myself.get_id()), async move {
                loop {
                    clock.sleep_until(clock.now_ms().saturating_add(every)).await;
                    if me.cast(RetentionMsg::Round).is_err() {
                        return;
                    }
                }
            });
        }
        Ok(RetentionState { rt, last_error: None })
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RetentionMsg::Round => match expire_round(&state.rt).await {
                Ok(Some(round)) => {
                    state.last_error = None;
                    if round.events > 0 || round.sessions > 0 {
                        tracing::info!(
                            events = round.events,
                            actions = round.actions,
                            turns = round.turns,
                            sessions = round.sessions,
                            commands = round.commands,
                            "expired what is older than the retention (archived on every node)"
                        );
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    let e = e.to_string();
                    if state.last_error.as_ref() != Some(&e) {
                        tracing::warn!(error = %e, "retention round stopped; the next one tries again");
                        state.last_error = Some(e);
                    }
                }
            },
        }
        Ok(())
    }
}

//! NodeSupervisor: OTP-style one-for-one supervision for a node's actors.
//! ractor links children to a supervisor but restarts nothing itself; this
//! actor restarts a failed child after a backoff, and gives up (escalates by
//! stopping itself and every child) when a child fails more than
//! `max_restarts` times within `window`. Each restart is an `actor.restarted`
//! timeline event; once a child has restarted `RESTART_LOOP_AT` times within
//! the window (a restart loop, which raises an alert), a whole window
//! without any restart afterwards is an `actors.settled` event, which
//! resolves it.

pub use crate::config::SupervisorConfig;
pub use crate::directory::{ChildSpec, StartFuture};

use crate::clock::Clock;
use crate::directory::Directory;
use crate::domain::alert::RESTART_LOOP_AT;
use crate::domain::EventData;
use crate::ids::CorrelationId;
use crate::ledger::Ledger;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr, SupervisionEvent};
use ractor_cluster::RactorMessage;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

impl SupervisorConfig {
    /// Backoff before the `n`-th recent restart of a child (n >= 1).
    pub fn backoff(&self, n: usize) -> Duration {
        crate::backoff::nth(self.backoff_base, self.backoff_max, n)
    }
}

#[derive(RactorMessage)]
pub enum SupervisorMsg {
    Restart(&'static str),
    /// A window has passed since a restart: says so if the loop is over.
    Settle,
    /// Stops every child, then the supervisor.
    Shutdown(RpcReplyPort<()>),
}

pub struct NodeSupervisor;

pub struct SupervisorArgs {
    pub children: Vec<ChildSpec>,
    pub config: SupervisorConfig,
    pub directory: Arc<Directory>,
    pub ledger: Arc<Ledger>,
    pub clock: Clock,
}

pub struct SupervisorState {
    args: SupervisorArgs,
    running: HashMap<ractor::ActorId, &'static str>,
    /// When each child last restarted (ms, on the node's clock), within the window.
    recent: HashMap<&'static str, VecDeque<u64>>,
    /// A child reached `RESTART_LOOP_AT` recent restarts and no
    /// `actors.settled` has been recorded since.
    looping: bool,
    shutting_down: bool,
}

impl SupervisorState {
    /// Forgets restarts older than the window.
    fn prune(&mut self, now: u64) {
        let window = self.args.config.window.as_millis() as u64;
        for recent in self.recent.values_mut() {
            while recent.front().is_some_and(|t| now.saturating_sub(*t) > window) {
                recent.pop_front();
            }
        }
    }

    /// Records `actors.settled` when a loop was reported and no child has
    /// restarted within the window since.
    fn settle(&mut self) {
        self.prune(self.args.clock.now_ms());
        if self.looping && self.recent.values().all(VecDeque::is_empty) {
            self.looping = false;
            let quiet_ms = self.args.config.window.as_millis() as u64;
            self.args.ledger.record_detached(CorrelationId::generate(), EventData::ActorsSettled { quiet_ms });
        }
    }

    /// Wakes the supervisor once the window after a restart at `at_ms` has passed, on the node's clock.
    fn settle_after(&self, myself: &ActorRef<SupervisorMsg>, at_ms: u64) {
        let (clock, myself) = (self.args.clock.clone(), myself.clone());
        let due = at_ms + self.args.config.window.as_millis() as u64 + 1;
        tokio::spawn(async move {
            clock.sleep_until(due).await;
            let _ = myself.cast(SupervisorMsg::Settle);
        });
    }

    fn spec(&self, name: &str) -> Option<ChildSpec> {
        self.args.children.iter().find(|c| c.name == name).cloned()
    }

    async fn start_child(&mut self, myself: &ActorRef<SupervisorMsg>, spec: &ChildSpec) -> Result<(), SpawnErr> {
        let cell = (spec.start)(myself.get_cell()).await?;
        self.running.insert(cell.get_id(), spec.name);
        self.args.directory.set_running(spec.name, cell);
        Ok(())
    }

    /// Schedules a restart of `name`, or escalates when it fails too often.
    fn on_child_down(&mut self, myself: &ActorRef<SupervisorMsg>, name: &'static str, error: String) {
        let now = self.args.clock.now_ms();
        self.prune(now);
        let recent = self.recent.entry(name).or_default();
        if recent.len() >= self.args.config.max_restarts {
            tracing::error!(actor = name, %error, "restart intensity exceeded; stopping the node's actors");
            self.args.directory.set_down(name, error, false);
            myself.stop(Some(format!("child {name} exceeded its restart intensity")));
            return;
        }
        recent.push_back(now);
        let delay = self.args.config.backoff(recent.len());
        tracing::warn!(actor = name, %error, ?delay, "child stopped; restarting");
        self.args.directory.set_down(name, error, true);
        myself.send_after(delay, move || SupervisorMsg::Restart(name));
    }
}

impl Actor for NodeSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = SupervisorState {
            args,
            running: HashMap::new(),
            recent: HashMap::new(),
            looping: false,
            shutting_down: false,
        };
        for spec in state.args.children.clone() {
            state.start_child(&myself, &spec).await?;
        }
        Ok(state)
    }

    async fn post_stop(&self, myself: ActorRef<Self::Msg>, _state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        myself.stop_children_and_wait(None, Some(Duration::from_secs(5))).await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Restart(name) => {
                let Some(spec) = state.spec(name) else { return Ok(()) };
                if state.shutting_down {
                    return Ok(());
                }
                match state.start_child(&myself, &spec).await {
                    Ok(()) => {
                        let restarts = state.recent.get(name).map_or(0, VecDeque::len) as u32;
                        let data = EventData::ActorRestarted { actor: name.to_owned(), recent_restarts: restarts };
                        state.args.ledger.record_detached(CorrelationId::generate(), data);
                        if restarts >= RESTART_LOOP_AT {
                            state.looping = true;
                        }
                        if state.looping {
                            state.settle_after(&myself, state.args.clock.now_ms());
                        }
                    }
                    Err(e) => state.on_child_down(&myself, name, format!("restart failed: {e}")),
                }
            }
            SupervisorMsg::Settle => state.settle(),
            SupervisorMsg::Shutdown(reply) => {
                state.shutting_down = true;
                myself.stop_children_and_wait(None, Some(Duration::from_secs(5))).await;
                let _ = reply.send(());
                myself.stop(None);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, error) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, format!("failed: {err}")),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, format!("stopped: {}", reason.unwrap_or_else(|| "no reason".into())))
            }
            _ => return Ok(()),
        };
        let Some(name) = state.running.remove(&cell.get_id()) else { return Ok(()) };
        if !state.shutting_down {
            state.on_child_down(&myself, name, error);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let c = SupervisorConfig::default();
        assert_eq!(c.backoff(1), Duration::from_millis(20));
        assert_eq!(c.backoff(2), Duration::from_millis(40));
        assert_eq!(c.backoff(3), Duration::from_millis(80));
        assert_eq!(c.backoff(30), c.backoff_max);
    }
}

//! Breakers: one circuit breaker per capability (closed → open after
//! `failure_threshold` consecutive failures → half-open after `open_ms`, where
//! one probe decides between closed and open again). Node-local runtime state:
//! a restarted actor starts every breaker closed.

use crate::clock::Clock;
use crate::directory::{ActorName, ChildSpec};
pub use crate::domain::BreakerState;
use crate::domain::{BreakerSpec, Capability, EventData};
use crate::ids::CorrelationId;
use crate::ledger::Ledger;
use crate::runtime::Runtime;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorMessage;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One capability's breaker.
#[derive(Debug)]
pub struct Breaker {
    spec: BreakerSpec,
    state: BreakerState,
    consecutive_failures: u32,
    /// When it opened (ms on the node's clock).
    opened_at_ms: Option<u64>,
    probe_in_flight: bool,
    successes: u64,
    failures: u64,
    rejected: u64,
}

impl Breaker {
    pub fn new(spec: BreakerSpec) -> Self {
        Self {
            spec,
            state: BreakerState::Closed,
            consecutive_failures: 0,
            opened_at_ms: None,
            probe_in_flight: false,
            successes: 0,
            failures: 0,
            rejected: 0,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// May a call go through now? Returns the verdict and a state change, if any.
    pub fn admit(&mut self, now_ms: u64) -> (bool, Option<BreakerState>) {
        match self.state {
            BreakerState::Closed => (true, None),
            BreakerState::Open => {
                if self.opened_at_ms.is_some_and(|t| now_ms.saturating_sub(t) >= self.spec.open_ms) {
                    self.state = BreakerState::HalfOpen;
                    self.probe_in_flight = true;
                    (true, Some(BreakerState::HalfOpen))
                } else {
                    self.rejected += 1;
                    (false, None)
                }
            }
            BreakerState::HalfOpen if !self.probe_in_flight => {
                self.probe_in_flight = true;
                (true, None)
            }
            BreakerState::HalfOpen => {
                self.rejected += 1;
                (false, None)
            }
        }
    }

    /// An admitted call that never reached the tool: frees the half-open probe
    /// slot without counting a success or a failure.
    pub fn release(&mut self) {
        self.probe_in_flight = false;
    }

    /// Records a call's result. Returns the new state when it changed.
    pub fn record(&mut self, success: bool, now_ms: u64) -> Option<BreakerState> {
        let before = self.state;
        if success {
            self.successes += 1;
            self.consecutive_failures = 0;
            self.probe_in_flight = false;
            self.state = BreakerState::Closed;
            self.opened_at_ms = None;
        } else {
            self.failures += 1;
            self.consecutive_failures += 1;
            self.probe_in_flight = false;
            let trips = before == BreakerState::HalfOpen || self.consecutive_failures >= self.spec.failure_threshold;
            if trips && before != BreakerState::Open {
                self.state = BreakerState::Open;
                self.opened_at_ms = Some(now_ms);
            }
        }
        (self.state != before).then_some(self.state)
    }

    pub fn view(&self, capability: &str) -> BreakerView {
        BreakerView {
            capability: capability.to_owned(),
            state: self.state,
            consecutive_failures: self.consecutive_failures,
            successes: self.successes,
            failures: self.failures,
            rejected: self.rejected,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct BreakerView {
    pub capability: String,
    pub state: BreakerState,
    pub consecutive_failures: u32,
    pub successes: u64,
    pub failures: u64,
    pub rejected: u64,
}

#[derive(RactorMessage)]
pub enum BreakerMsg {
    /// May an attempt of this capability call its tool now?
    Admit(String, RpcReplyPort<bool>),
    /// How a call went (`true` = success).
    Record(String, bool),
    /// An admitted attempt that was never made (see `Breaker::release`).
    Release(String),
    Snapshot(RpcReplyPort<Vec<BreakerView>>),
}

pub struct Breakers;

pub struct BreakersArgs {
    pub capabilities: Vec<Arc<Capability>>,
    pub ledger: Arc<Ledger>,
    pub clock: Clock,
}

/// The actor's name in the node's directory.
pub const NAME: ActorName<BreakerMsg> = ActorName::new("breakers");

/// One breaker per capability of the node's catalog, timed by the node's clock.
pub fn child(rt: &Arc<Runtime>) -> ChildSpec {
    let rt = rt.clone();
    ChildSpec::new(NAME, move || {
        let args = BreakersArgs { capabilities: rt.catalog.all(), ledger: rt.ledger.clone(), clock: rt.clock.clone() };
        (Breakers, args)
    })
}

pub struct BreakersState {
    breakers: BTreeMap<String, Breaker>,
    ledger: Arc<Ledger>,
    clock: Clock,
}

impl BreakersState {
    fn changed(&self, capability: &str, to: BreakerState) {
        tracing::info!(capability, state = ?to, "breaker changed");
        let data = EventData::BreakerChanged { capability: capability.to_owned(), state: to };
        self.ledger.record_detached(CorrelationId(format!("breaker:{capability}")), data);
    }
}

impl Actor for Breakers {
    type Msg = BreakerMsg;
    type State = BreakersState;
    type Arguments = BreakersArgs;

    async fn pre_start(&self, _: ActorRef<Self::Msg>, args: BreakersArgs) -> Result<Self::State, ActorProcessingErr> {
        let breakers = args.capabilities.iter().map(|c| (c.name.clone(), Breaker::new(c.breaker.clone()))).collect();
        Ok(BreakersState { breakers, ledger: args.ledger, clock: args.clock })
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let now = state.clock.now_ms();
        match msg {
            BreakerMsg::Admit(cap, reply) => {
                let (ok, change) = state.breakers.get_mut(&cap).map_or((true, None), |b| b.admit(now));
                let _ = reply.send(ok);
                if let Some(to) = change {
                    state.changed(&cap, to);
                }
            }
            BreakerMsg::Record(cap, success) => {
                if let Some(to) = state.breakers.get_mut(&cap).and_then(|b| b.record(success, now)) {
                    state.changed(&cap, to);
                }
            }
            BreakerMsg::Release(cap) => {
                if let Some(b) = state.breakers.get_mut(&cap) {
                    b.release();
                }
            }
            BreakerMsg::Snapshot(reply) => {
                let _ = reply.send(state.breakers.iter().map(|(name, b)| b.view(name)).collect());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_at_threshold_fails_fast_then_half_opens_and_closes() {
        let mut b = Breaker::new(BreakerSpec { failure_threshold: 3, open_ms: 100 });
        let t0 = 1_000_u64;
        assert_eq!(b.record(false, t0), None);
        assert_eq!(b.record(false, t0), None);
        assert_eq!(b.record(false, t0), Some(BreakerState::Open));
        assert_eq!(b.admit(t0 + 50), (false, None));
        assert_eq!(b.admit(t0 + 100), (true, Some(BreakerState::HalfOpen)));
        // only one probe at a time
        assert_eq!(b.admit(t0 + 101), (false, None));
        assert_eq!(b.record(true, t0 + 102), Some(BreakerState::Closed));
        assert_eq!(b.admit(t0 + 103), (true, None));
    }

    #[test]
    fn failed_probe_reopens() {
        let mut b = Breaker::new(BreakerSpec { failure_threshold: 1, open_ms: 10 });
        let t0 = 1_000_u64;
        assert_eq!(b.record(false, t0), Some(BreakerState::Open));
        assert!(b.admit(t0 + 10).0);
        assert_eq!(b.record(false, t0 + 11), Some(BreakerState::Open));
        assert!(!b.admit(t0 + 12).0);
    }

    #[test]
    fn a_success_resets_the_failure_streak() {
        let mut b = Breaker::new(BreakerSpec { failure_threshold: 2, open_ms: 10 });
        let t0 = 1_000_u64;
        b.record(false, t0);
        b.record(true, t0);
        assert_eq!(b.record(false, t0), None);
        assert_eq!(b.state(), BreakerState::Closed);
    }
}

//! SloMonitor: per-capability latency and error objectives on this node.
//! Every attempt's latency and outcome arrive as a cast from the Worker
//! (`record`; never through the log), into a ring of HDR histogram slots
//! (`ring`). Every slot, on the node's clock, the detectors run (`monitor`):
//! the p95 trend (`trend`), the error-budget burn rates (`burn`), latency
//! and budget breaches. An advisory that opens or ends is proposed as
//! `SloEpisode`, which the log records once per episode cluster-wide.
//!
//! `GET /v1/slo` merges every node's report (`view`): the monitors join
//! one process group and answer `Report` over the cluster transport.

pub mod burn;
pub mod monitor;
pub mod ring;
pub mod trend;
pub mod view;

use crate::backoff;
use crate::command::Command;
use crate::directory::{call_within, ActorName, ChildSpec};
use crate::error::WardenError;
use crate::runtime::Runtime;
use monitor::{Monitor, Settings, Transition};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
pub use view::{NodeSlo, SloView};

/// The process group every node's SloMonitor joins.
pub const SLO_GROUP: &str = "warden.slo";
/// Advisory changes waiting to be proposed; past this, changes are dropped (and logged).
pub const MAX_PENDING_ADVISORIES: usize = 1_024;
/// How long a cluster view waits for each node's report.
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(2);
/// Tries at recording one advisory change before it is given up (and logged).
const PROPOSE_TRIES: usize = 8;

/// One attempt, as the Worker saw it end.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sample {
    pub capability: String,
    pub at_ms: u64,
    pub latency_ms: u64,
    pub ok: bool,
}

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
wire!(Sample, NodeSlo);

#[derive(RactorClusterMessage)]
pub enum SloMsg {
    Record(Sample),
    /// Run the detectors as of this time (ms on the node's clock).
    Evaluate(u64),
    /// This node's mergeable report, as of now.
    #[rpc]
    Report(RpcReplyPort<NodeSlo>),
}

pub struct SloMonitor;

pub struct SloState {
    rt: Arc<Runtime>,
    monitor: Monitor,
    proposals: mpsc::Sender<(Transition, crate::domain::SloSpec)>,
}

/// The actor's name in the node's directory.
pub const NAME: ActorName<SloMsg> = ActorName::new("slo");

pub fn child(rt: &Arc<Runtime>) -> ChildSpec {
    let rt = rt.clone();
    ChildSpec::new(NAME, move || (SloMonitor, rt.clone()))
}

/// Tells this node's SloMonitor how an attempt went. A cast: the caller never waits.
pub fn record(rt: &Runtime, capability: &str, latency_ms: u64, ok: bool) {
    if !rt.config.slo.enabled {
        return;
    }
    if let Ok(monitor) = rt.directory.get(NAME) {
        let sample = Sample { capability: capability.to_owned(), at_ms: rt.clock.now_ms(), latency_ms, ok };
        let _ = monitor.cast(SloMsg::Record(sample));
    }
}

/// Every node's report (this one's included), gathered over the cluster transport.
pub async fn cluster_reports() -> Vec<NodeSlo> {
    let mut calls = tokio::task::JoinSet::new();
    for member in ractor::pg::get_members(&SLO_GROUP.to_owned()) {
        let monitor = ActorRef::<SloMsg>::from(member);
        calls.spawn(async move { call_within(&monitor, REPORT_TIMEOUT, SloMsg::Report).await });
    }
    let mut out = Vec::new();
    while let Some(done) = calls.join_next().await {
        match done {
            Ok(Ok(report)) => out.push(report),
            Ok(Err(e)) => tracing::debug!(error = %e, "a node's SLO report is missing from the cluster view"),
            Err(e) => tracing::warn!(error = %e, "SLO report task failed"),
        }
    }
    out
}

/// Casts `Evaluate` at every slot boundary of the node's clock, until the actor stops.
fn spawn_ticker(rt: &Arc<Runtime>, myself: ActorRef<SloMsg>, slot_ms: u64) {
    let clock = rt.clock.clone();
    let key = format!("slo:tick:{}", myself.get_id());
    rt.tasks.spawn_unique(key, async move {
        let mut next = (clock.now_ms() / slot_ms + 1) * slot_ms;
        loop {
            clock.sleep_until(next).await;
            if myself.cast(SloMsg::Evaluate(next)).is_err() {
                return;
            }
            next += slot_ms;
        }
    });
}

/// Records advisory changes through the log, in the order they were decided.
fn spawn_proposer(rt: &Arc<Runtime>, myself: &ActorRef<SloMsg>) -> mpsc::Sender<(Transition, crate::domain::SloSpec)> {
    let (tx, mut rx) = mpsc::channel::<(Transition, crate::domain::SloSpec)>(MAX_PENDING_ADVISORIES);
    let task_rt = rt.clone();
    rt.tasks.spawn_unique(format!("slo:propose:{}", myself.get_id()), async move {
        while let Some((transition, slo)) = rx.recv().await {
            propose(&task_rt, &transition, &slo).await;
        }
    });
    tx
}

/// Proposes the episode `transition` opens or ends, unless the log already
/// has it so (another node saw it first).
async fn propose(rt: &Runtime, t: &Transition, slo: &crate::domain::SloSpec) {
    let advisory = t.advisory.as_str();
    let mut pauses = backoff::exponential(Duration::from_millis(50), Duration::from_secs(2));
    for _ in 0..PROPOSE_TRIES {
        let state = match rt.store.slo_episodes() {
            Ok(all) => all.into_iter().find(|e| e.capability == t.capability && e.advisory == advisory),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read SLO episodes");
                return;
            }
        };
        let (latest, open) = state.map_or((0, false), |s| (s.episode, s.open));
        let episode = match (t.opens(), open) {
            (true, false) => latest + 1,
            (false, true) => latest,
            // Already open (another node opened it) or already ended.
            _ => return,
        };
        let cmd = Command::SloEpisode {
            capability: t.capability.clone(),
            advisory: advisory.to_owned(),
            episode,
            open: t.opens(),
            data: t.event(slo, episode),
        };
        match rt.ledger.propose(cmd).await {
            Ok(_) => return,
            Err(e @ (WardenError::Unavailable(_) | WardenError::Overloaded(_) | WardenError::Storage(_))) => {
                tracing::debug!(error = %e, capability = %t.capability, advisory, "SLO advisory not recorded yet");
                tokio::time::sleep(pauses.next().unwrap_or(Duration::from_secs(2))).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, capability = %t.capability, advisory, "SLO advisory refused");
                return;
            }
        }
    }
    tracing::warn!(capability = %t.capability, advisory, "SLO advisory not recorded: the log is unavailable");
}

impl Actor for SloMonitor {
    type Msg = SloMsg;
    type State = SloState;
    type Arguments = Arc<Runtime>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        rt: Arc<Runtime>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let settings = Settings::new(&rt.config.slo);
        let monitor = Monitor::new(settings, &rt.catalog.all(), rt.clock.now_ms());
        ractor::pg::join(SLO_GROUP.to_owned(), vec![myself.get_cell()]);
        spawn_ticker(&rt, myself.clone(), monitor.settings().shape.slot_ms);
        let proposals = spawn_proposer(&rt, &myself);
        Ok(SloState { rt, monitor, proposals })
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SloMsg::Record(s) => state.monitor.record(&s.capability, s.at_ms, s.latency_ms, s.ok),
            SloMsg::Evaluate(at_ms) => {
                for t in state.monitor.evaluate(at_ms) {
                    let Some(slo) = state.monitor.slo(&t.capability).cloned() else { continue };
                    tracing::info!(capability = %t.capability, advisory = t.advisory.as_str(), opens = t.opens(), "SLO advisory");
                    if state.proposals.try_send((t, slo)).is_err() {
                        tracing::warn!("SLO advisory changes are backing up; one was dropped");
                    }
                }
            }
            SloMsg::Report(reply) => {
                let now = state.rt.clock.now_ms();
                let report =
                    NodeSlo { node: state.rt.node.clone(), at_ms: now, capabilities: state.monitor.report(now) };
                let _ = reply.send(report);
            }
        }
        Ok(())
    }
}

//! Executors: the actor that runs attempts against tools. Each capability has
//! one `Executor` (the `sim` and `http` executors here, `mcp` in `mcp.rs`)
//! and a bound on concurrent calls. Calls run in their own tasks, so a slow
//! tool never blocks the actor's mailbox.

use crate::clock::Clock;
use crate::directory::{ActorName, ChildSpec};
use crate::domain::{AttemptOutcome, Capability, ExecutorSpec, McpUpstream, SimRamp};
use crate::ids::{ActionId, CorrelationId, IdempotencyKey};
use crate::limits::MAX_RESULT_BYTES;
use crate::mcp::{McpClient, CORRELATION_META, IDEMPOTENCY_META};
use crate::runtime::Runtime;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorMessage;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Concurrent tool calls per capability on one node.
pub const MAX_CONCURRENT_CALLS: usize = 1_024;

/// One attempt, as a tool sees it.
#[derive(Clone, Debug)]
pub struct ExecRequest {
    pub action_id: ActionId,
    pub capability: Arc<Capability>,
    pub args: Value,
    pub idempotency_key: IdempotencyKey,
    pub correlation_id: CorrelationId,
    pub attempt: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecResult {
    pub outcome: AttemptOutcome,
    pub latency_ms: u64,
}

#[async_trait::async_trait]
pub trait Executor: Send + Sync {
    async fn execute(&self, req: &ExecRequest) -> AttemptOutcome;
}

/// Simulated tool: latency and failures drawn from a generator seeded by the
/// node's seed, the action and the attempt, so a run is reproducible. An
/// action's `args._sim` forces an outcome (tests rely on it):
/// `fail: true | "permanent"`, `fail_attempts: n` (fail attempts 1..=n),
/// `latency_ms: n` (with `latency_attempts: k`, only attempts 1..=k are slow),
/// `panic_attempts: n` (the executor actor panics on attempts 1..=n; only on a
/// node started with `NodeConfig::fault_injection`).
pub struct SimExecutor {
    pub seed: u64,
    pub latency_ms: u64,
    pub jitter_ms: u64,
    pub fail_rate: f64,
    /// Degradation from `started_ms` on, read on `clock`.
    pub ramp: SimRamp,
    pub clock: Clock,
    pub started_ms: u64,
}

fn sim_u64(args: &Value, key: &str) -> Option<u64> {
    args.get("_sim")?.get(key)?.as_u64()
}

impl SimExecutor {
    fn rng(&self, req: &ExecRequest) -> fastrand::Rng {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.seed, req.action_id.as_str(), req.attempt).hash(&mut h);
        fastrand::Rng::with_seed(h.finish())
    }

    /// True when `args._sim.panic_attempts` asks this attempt to crash the executor.
    pub fn wants_panic(req: &ExecRequest) -> bool {
        sim_u64(&req.args, "panic_attempts").is_some_and(|n| u64::from(req.attempt) <= n)
    }
}

#[async_trait::async_trait]
impl Executor for SimExecutor {
    async fn execute(&self, req: &ExecRequest) -> AttemptOutcome {
        let mut rng = self.rng(req);
        let jitter = if self.jitter_ms > 0 { rng.u64(0..=self.jitter_ms) } else { 0 };
        let (extra_latency, extra_fail) = self.ramp.at(self.clock.now_ms().saturating_sub(self.started_ms));
        let slow_attempt = sim_u64(&req.args, "latency_attempts").is_none_or(|k| u64::from(req.attempt) <= k);
        let forced_latency = sim_u64(&req.args, "latency_ms").filter(|_| slow_attempt);
        let latency = forced_latency.unwrap_or(self.latency_ms + jitter + extra_latency as u64);
        let fail_rate = (self.fail_rate + extra_fail).min(1.0);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        let forced = req.args.get("_sim").and_then(|s| s.get("fail"));
        let fail_attempts = sim_u64(&req.args, "fail_attempts").is_some_and(|n| u64::from(req.attempt) <= n);
        match forced {
            Some(Value::String(s)) if s == "permanent" => {
                AttemptOutcome::Permanent { error: "simulated permanent failure".into() }
            }
            Some(Value::Bool(true)) => AttemptOutcome::Retryable { error: "simulated failure".into() },
            _ if fail_attempts || rng.f64() < fail_rate => {
                AttemptOutcome::Retryable { error: "simulated failure".into() }
            }
            _ => AttemptOutcome::OK,
        }
    }
}

/// The MCP clients of one set of executors, one per upstream: the
/// capabilities backed by tools of one server share its session (and, on
/// stdio, its process).
#[derive(Default)]
pub struct McpClients(HashMap<McpUpstream, Arc<McpClient>>);

impl McpClients {
    pub fn client(&mut self, upstream: &McpUpstream) -> Arc<McpClient> {
        self.0.entry(upstream.clone()).or_insert_with(|| Arc::new(McpClient::new(upstream))).clone()
    }
}

/// Builds the executor a capability's spec names.
pub fn executor_for(
    spec: &ExecutorSpec,
    seed: u64,
    clock: &Clock,
    started_ms: u64,
    mcp: &mut McpClients,
) -> Arc<dyn Executor> {
    match spec {
        ExecutorSpec::Sim { latency_ms, jitter_ms, fail_rate, ramp } => Arc::new(SimExecutor {
            seed,
            latency_ms: *latency_ms,
            jitter_ms: *jitter_ms,
            fail_rate: *fail_rate,
            ramp: ramp.clone(),
            clock: clock.clone(),
            started_ms,
        }),
        ExecutorSpec::Http { url } => Arc::new(HttpExecutor::new(url)),
        ExecutorSpec::Mcp { .. } => match spec.mcp() {
            Some((upstream, tool)) => Arc::new(McpExecutor::new(mcp.client(&upstream), tool)),
            // A capability is validated when loaded; this is a spec built by hand.
            None => Arc::new(Refusing("an mcp executor needs exactly one of url and command".into())),
        },
    }
}

/// Real tool behind HTTP: POST `{action_id, capability, args}` with the
/// `Idempotency-Key` and `X-Correlation-Id` headers. 2xx is success; 5xx,
/// 408, 429 and transport errors are retryable; other 4xx are permanent.
/// The timeout is the Executors actor's (the capability's `timeout_ms`).
pub struct HttpExecutor {
    url: String,
    client: reqwest::Client,
}

/// Longest tool error body quoted in an attempt's error.
const MAX_ERROR_BODY: usize = 512;

impl HttpExecutor {
    pub fn new(url: &str) -> Self {
        Self { url: url.to_owned(), client: reqwest::Client::new() }
    }
}

#[async_trait::async_trait]
impl Executor for HttpExecutor {
    async fn execute(&self, req: &ExecRequest) -> AttemptOutcome {
        let body = serde_json::json!({
            "action_id": req.action_id,
            "capability": req.capability.name,
            "args": req.args,
            "attempt": req.attempt,
        });
        let sent = self
            .client
            .post(&self.url)
            .header("Idempotency-Key", req.idempotency_key.as_str())
            .header("X-Correlation-Id", req.correlation_id.as_str())
            .json(&body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return AttemptOutcome::Retryable { error: format!("POST {}: {e}", self.url) },
        };
        let status = response.status();
        if status.is_success() {
            return AttemptOutcome::OK;
        }
        let mut text = response.text().await.unwrap_or_default();
        text.truncate(text.floor_char_boundary(MAX_ERROR_BODY));
        let error = format!("tool answered {status}: {text}");
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            AttemptOutcome::Retryable { error }
        } else {
            AttemptOutcome::Permanent { error }
        }
    }
}

/// A capability backed by one tool of an upstream MCP server: one
/// `tools/call` per attempt, the idempotency key in the request's `_meta`
/// and in the `Idempotency-Key` header, the upstream's result kept unchanged
/// with the attempt. A JSON-RPC error or a 4xx is permanent; no connection,
/// a 5xx or a cut stream is retryable. A result with `isError: true` is the
/// tool's own answer: the tool ran, so it is a success to warden.
pub struct McpExecutor {
    client: Arc<McpClient>,
    tool: String,
}

impl McpExecutor {
    pub fn new(client: Arc<McpClient>, tool: &str) -> Self {
        Self { client, tool: tool.to_owned() }
    }
}

/// Refuses every attempt, saying why: the executor of a spec that names none.
struct Refusing(String);

#[async_trait::async_trait]
impl Executor for Refusing {
    async fn execute(&self, _: &ExecRequest) -> AttemptOutcome {
        AttemptOutcome::Permanent { error: self.0.clone() }
    }
}

#[async_trait::async_trait]
impl Executor for McpExecutor {
    async fn execute(&self, req: &ExecRequest) -> AttemptOutcome {
        let arguments = match &req.args {
            Value::Null => json!({}),
            args @ Value::Object(_) => args.clone(),
            other => {
                return AttemptOutcome::Permanent {
                    error: format!("MCP tool arguments must be an object, got {other}"),
                }
            }
        };
        let meta = json!({
            IDEMPOTENCY_META: req.idempotency_key.as_str(),
            CORRELATION_META: req.correlation_id.as_str(),
        });
        match self.client.call_tool(&self.tool, &arguments, meta, req.idempotency_key.as_str()).await {
            Ok(result) => {
                let size = serde_json::to_vec(&result).map_or(usize::MAX, |b| b.len());
                if size > MAX_RESULT_BYTES {
                    let error = format!("the tool's result is {size} bytes, over the {MAX_RESULT_BYTES} kept");
                    return AttemptOutcome::Permanent { error };
                }
                AttemptOutcome::Succeeded { result: Some(result) }
            }
            Err(e) => e.outcome(),
        }
    }
}

#[derive(RactorMessage)]
pub enum ExecutorMsg {
    Execute(ExecRequest, RpcReplyPort<ExecResult>),
}

pub struct Executors;

#[derive(Clone)]
pub struct ExecutorsArgs {
    pub capabilities: Vec<Arc<Capability>>,
    pub seed: u64,
    /// Honour `_sim.panic_attempts` (tests only: it lets a client crash the actor).
    pub fault_injection: bool,
    /// The node's clock and when the node started: where sim ramps count from.
    pub clock: Clock,
    pub started_ms: u64,
}

struct Pool {
    executor: Arc<dyn Executor>,
    permits: Arc<Semaphore>,
}

pub struct ExecutorsState {
    pools: HashMap<String, Pool>,
    fault_injection: bool,
}

/// The actor's name in the node's directory.
pub const NAME: ActorName<ExecutorMsg> = ActorName::new("executors");

/// The executors of the node's catalog, seeded from its config.
pub fn child(rt: &Arc<Runtime>) -> ChildSpec {
    let args = ExecutorsArgs {
        capabilities: rt.catalog.all(),
        seed: rt.config.sim_seed,
        fault_injection: rt.config.fault_injection,
        clock: rt.clock.clone(),
        started_ms: rt.clock.now_ms(),
    };
    ChildSpec::new(NAME, move || (Executors, args.clone()))
}

impl Actor for Executors {
    type Msg = ExecutorMsg;
    type State = ExecutorsState;
    type Arguments = ExecutorsArgs;

    async fn pre_start(&self, _: ActorRef<Self::Msg>, args: ExecutorsArgs) -> Result<Self::State, ActorProcessingErr> {
        let mut mcp = McpClients::default();
        let pools = args
            .capabilities
            .iter()
            .map(|c| {
                let pool = Pool {
                    executor: executor_for(&c.executor, args.seed, &args.clock, args.started_ms, &mut mcp),
                    permits: Arc::new(Semaphore::new(MAX_CONCURRENT_CALLS)),
                };
                (c.name.clone(), pool)
            })
            .collect();
        Ok(ExecutorsState { pools, fault_injection: args.fault_injection })
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let ExecutorMsg::Execute(req, reply) = msg;
        let Some(pool) = state.pools.get(&req.capability.name) else {
            let error = format!("no executor for capability {}", req.capability.name);
            let _ = reply.send(ExecResult { outcome: AttemptOutcome::Permanent { error }, latency_ms: 0 });
            return Ok(());
        };
        let sim = matches!(req.capability.executor, ExecutorSpec::Sim { .. });
        if state.fault_injection && sim && SimExecutor::wants_panic(&req) {
            panic!("simulated executor crash (action {}, attempt {})", req.action_id, req.attempt);
        }
        let executor = pool.executor.clone();
        let permits = pool.permits.clone();
        tokio::spawn(async move {
            // The timeout covers the wait for a permit too, so a queued call
            // can never start after the driver has given up on it.
            let timeout = Duration::from_millis(req.capability.timeout_ms);
            let started = Instant::now();
            let call = async {
                let Ok(_permit) = permits.acquire_owned().await else {
                    return AttemptOutcome::Retryable { error: "executor pool closed".into() };
                };
                executor.execute(&req).await
            };
            let outcome = match tokio::time::timeout(timeout, call).await {
                Ok(outcome) => outcome,
                Err(_) => AttemptOutcome::Retryable { error: format!("timed out after {} ms", timeout.as_millis()) },
            };
            let latency_ms = started.elapsed().as_millis() as u64;
            let _ = reply.send(ExecResult { outcome, latency_ms });
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Tier;
    use serde_json::json;

    fn req(args: Value, attempt: u32) -> ExecRequest {
        ExecRequest {
            action_id: ActionId("act_1".into()),
            capability: Arc::new(Capability::new("c", Tier::Observe)),
            args,
            idempotency_key: IdempotencyKey("k".into()),
            correlation_id: CorrelationId("c".into()),
            attempt,
        }
    }

    fn sim(seed: u64, fail_rate: f64, ramp: SimRamp) -> SimExecutor {
        SimExecutor { seed, latency_ms: 0, jitter_ms: 0, fail_rate, ramp, clock: Clock::manual(0), started_ms: 0 }
    }

    #[tokio::test]
    async fn a_fail_ramp_starts_after_its_delay_and_grows_on_the_clock() {
        let ramp = SimRamp { latency_ms_per_min: 0.0, fail_per_min: 0.25, after_ms: 60_000 };
        let sim = sim(3, 0.0, ramp);
        async fn failures(sim: &SimExecutor) -> usize {
            let mut n = 0;
            for attempt in 1..=200 {
                n += usize::from(sim.execute(&req(json!({}), attempt)).await.is_failure());
            }
            n
        }
        assert_eq!(failures(&sim).await, 0, "before the delay");
        sim.clock.advance(Duration::from_secs(60 + 120));
        let half = failures(&sim).await;
        assert!((70..=130).contains(&half), "two minutes in, 50 %: {half}/200");
        sim.clock.advance(Duration::from_secs(600));
        assert_eq!(failures(&sim).await, 200, "the rate is capped at 1");
    }

    #[tokio::test]
    async fn sim_is_deterministic_for_a_seed() {
        let sim = sim(7, 0.5, SimRamp::default());
        let mut outcomes = Vec::new();
        for attempt in 1..=64 {
            outcomes.push(sim.execute(&req(json!({}), attempt)).await);
        }
        for (attempt, expected) in (1..=64).zip(&outcomes) {
            assert_eq!(&sim.execute(&req(json!({}), attempt)).await, expected);
        }
        let failures = outcomes.iter().filter(|o| o.is_failure()).count();
        assert!((16..=48).contains(&failures), "fail_rate 0.5 gave {failures}/64 failures");
    }

    #[tokio::test]
    async fn sim_overrides_force_outcomes() {
        let sim = sim(1, 0.0, SimRamp::default());
        assert!(matches!(
            sim.execute(&req(json!({"_sim": {"fail": true}}), 1)).await,
            AttemptOutcome::Retryable { .. }
        ));
        assert!(matches!(
            sim.execute(&req(json!({"_sim": {"fail": "permanent"}}), 1)).await,
            AttemptOutcome::Permanent { .. }
        ));
        let two = json!({"_sim": {"fail_attempts": 2}});
        assert!(sim.execute(&req(two.clone(), 2)).await.is_failure());
        assert_eq!(sim.execute(&req(two, 3)).await, AttemptOutcome::OK);
    }
}

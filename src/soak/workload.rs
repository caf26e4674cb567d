//! The soak workload: actions submitted over HTTP to every node in turn, each
//! with its own idempotency key, resubmitted with that key to the next node
//! when a node does not answer, until one acknowledges it (2xx). Then every
//! acknowledged action is followed until it is terminal.

use parking_lot::RwLock;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use warden_actors::backoff;

/// Submissions under way at once.
pub const MAX_IN_FLIGHT: usize = 64;
/// How long one submission is retried before the run gives it up (it was
/// then never acknowledged, which is not a loss).
pub const SUBMIT_DEADLINE: Duration = Duration::from_secs(60);
/// How long, once submitting is over, actions get to become terminal.
pub const SETTLE_DEADLINE: Duration = Duration::from_secs(90);

/// Node URLs, updated when a node comes back on another address.
#[derive(Clone, Default)]
pub struct Targets(Arc<RwLock<Vec<String>>>);

impl Targets {
    pub fn new(urls: Vec<String>) -> Self {
        Targets(Arc::new(RwLock::new(urls)))
    }

    pub fn set(&self, i: usize, url: String) {
        self.0.write()[i] = url;
    }

    pub fn get(&self, i: usize) -> String {
        let urls = self.0.read();
        urls[i % urls.len()].clone()
    }

    pub fn len(&self) -> usize {
        self.0.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    /// Names keys and sessions, so runs against one cluster do not collide.
    pub run_id: String,
    pub actions: usize,
    /// Actions started per second.
    pub rate: f64,
    /// Capabilities used in turn.
    pub capabilities: Vec<String>,
}

/// An action a node acknowledged.
#[derive(Clone, Debug)]
pub struct Ack {
    pub action_id: String,
    pub key: String,
    pub capability: String,
    /// Submissions it took (1 when the first node answered).
    pub tries: u32,
}

#[derive(Debug, Default)]
pub struct Submitted {
    pub acks: Vec<Ack>,
    /// Submissions no node acknowledged within `SUBMIT_DEADLINE`, with the last error.
    pub unacknowledged: Vec<String>,
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(1))
        .build()
        .expect("an HTTP client builds")
}

/// Why one try failed: worth trying elsewhere, or a refusal that will not change.
enum TryError {
    Transient(String),
    Refused(String),
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> Result<Value, TryError> {
    let response = http.post(&url).json(&body).send().await.map_err(|e| TryError::Transient(format!("{url}: {e}")))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    match status.as_u16() {
        200..=299 => Ok(body),
        // unknown_turn: the turn was opened on a node this one has not caught up with.
        404 if body["error"]["code"] == "unknown_turn" => Err(TryError::Transient(format!("{url}: unknown turn"))),
        408 | 429 | 500..=599 => Err(TryError::Transient(format!("{url}: {status} {body}"))),
        _ => Err(TryError::Refused(format!("{url}: {status} {body}"))),
    }
}

/// Opens a turn and submits action `i` on one node.
async fn try_once(
    http: &reqwest::Client,
    base: &str,
    spec: &WorkloadSpec,
    i: usize,
    key: &str,
    turn: &mut Option<(String, String)>,
) -> Result<String, TryError> {
    let turn_id = match turn {
        Some((node, id)) if node == base => id.clone(),
        _ => {
            let session = format!("{}-s{}", spec.run_id, i % 16);
            let opened = post(http, format!("{base}/v1/sessions/{session}/turns"), json!({"summary": "soak"})).await?;
            let id = opened["turn_id"].as_str().unwrap_or_default().to_owned();
            *turn = Some((base.to_owned(), id.clone()));
            id
        }
    };
    let capability = &spec.capabilities[i % spec.capabilities.len()];
    let body = json!({"turn_id": turn_id, "capability": capability, "args": {"n": i}, "idempotency_key": key});
    let accepted = post(http, format!("{base}/v1/actions"), body).await?;
    accepted["action_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| TryError::Refused(format!("no action_id in {accepted}")))
}

/// Submits action `i`, moving to the next node after each failed try.
async fn submit_one(http: &reqwest::Client, targets: &Targets, spec: &WorkloadSpec, i: usize) -> Result<Ack, String> {
    let key = format!("{}-{i}", spec.run_id);
    let deadline = Instant::now() + SUBMIT_DEADLINE;
    let mut pauses = backoff::exponential(Duration::from_millis(50), Duration::from_secs(1));
    let mut turn = None;
    let mut last_error = String::new();
    for tries in 1.. {
        let base = targets.get(i + tries as usize - 1);
        match try_once(http, &base, spec, i, &key, &mut turn).await {
            Ok(action_id) => {
                let capability = spec.capabilities[i % spec.capabilities.len()].clone();
                return Ok(Ack { action_id, key, capability, tries });
            }
            Err(TryError::Refused(e)) => return Err(e),
            Err(TryError::Transient(e)) => last_error = e,
        }
        let pause = pauses.next().unwrap_or(Duration::from_secs(1));
        if Instant::now() + pause > deadline {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    Err(format!("{key}: not acknowledged within {SUBMIT_DEADLINE:?}: {last_error}"))
}

/// Submits `spec.actions` actions at `spec.rate`; `tick` is called after each.
pub async fn submit_all(targets: &Targets, spec: &WorkloadSpec, tick: impl Fn() + Send + Sync + 'static) -> Submitted {
    let http = client();
    let gate = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let tick = Arc::new(tick);
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    for i in 0..spec.actions {
        let due = start + Duration::from_secs_f64(i as f64 / spec.rate.max(0.001));
        tokio::time::sleep_until(due.into()).await;
        let permit = gate.clone().acquire_owned().await.expect("the gate is never closed");
        let (http, targets, spec, tick) = (http.clone(), targets.clone(), spec.clone(), tick.clone());
        tasks.spawn(async move {
            let result = submit_one(&http, &targets, &spec, i).await;
            drop(permit);
            tick();
            result
        });
    }
    let mut out = Submitted::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(ack)) => out.acks.push(ack),
            Ok(Err(e)) => out.unacknowledged.push(e),
            Err(e) => out.unacknowledged.push(format!("submission task failed: {e}")),
        }
    }
    out
}

/// Follows every acknowledged action until it is terminal (asking the nodes in
/// turn) or `SETTLE_DEADLINE` passes; returns each action's last view.
pub async fn settle(targets: &Targets, acks: &[Ack]) -> Vec<Option<Value>> {
    let http = client();
    let deadline = Instant::now() + SETTLE_DEADLINE;
    let gate = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for (n, ack) in acks.iter().enumerate() {
        let (http, targets, gate, id) = (http.clone(), targets.clone(), gate.clone(), ack.action_id.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("the gate is never closed");
            let mut last = None;
            for attempt in 0.. {
                let url = format!("{}/v1/actions/{id}?wait_ms=5000", targets.get(n + attempt));
                if let Ok(r) = http.get(&url).send().await {
                    if r.status().is_success() {
                        if let Ok(v) = r.json::<Value>().await {
                            let terminal =
                                !matches!(v["state"].as_str(), Some("pending" | "running" | "awaiting_confirmation"));
                            last = Some(v);
                            if terminal {
                                break;
                            }
                        }
                    }
                }
                if Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (n, last)
        });
    }
    let mut out = vec![None; acks.len()];
    while let Some(Ok((n, view))) = tasks.join_next().await {
        out[n] = view;
    }
    out
}

/// Every event of one kind on a node's timeline (paged).
pub async fn events_of_kind(base: &str, kind: &str) -> anyhow::Result<Vec<Value>> {
    events_of_kind_as(base, kind, None, None).await
}

/// `events_of_kind` on a node with tokens, as the holder of `token` (an
/// operator's or an admin's), over HTTPS trusting `ca` if given.
pub async fn events_of_kind_as(
    base: &str,
    kind: &str,
    token: Option<&str>,
    ca: Option<&std::path::Path>,
) -> anyhow::Result<Vec<Value>> {
    let http = crate::auth::client(Duration::from_secs(10), token, ca)?;
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let url = format!("{base}/v1/timeline?after={after}&limit=10000");
        let page: Value = http.get(&url).send().await?.error_for_status()?.json().await?;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        let Some(last) = events.last() else { return Ok(out) };
        after = last["seq"].as_u64().unwrap_or(u64::MAX);
        out.extend(events.into_iter().filter(|e| e["kind"] == kind));
    }
}

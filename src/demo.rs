//! `warden demo`: a realistic agent workload against a node's HTTP API —
//! sessions and turns, model calls, memory writes and recalls, actions across
//! every tier, confirmations approved and rejected, some failures that end in
//! the DLQ — at a target rate, with a progress bar and a summary that must
//! account for every submitted action.
//!
//! `--degrade CAPABILITY` makes one sim capability go slowly bad while the
//! demo runs: every other step calls it, asking the sim tool (`args._sim`)
//! for a latency and a failure chance that grow each minute, so its p95 trend
//! and burn rates move live in `warden status`, the dashboard and
//! `GET /v1/slo`. (A node-side ramp is `executor.ramp` in the capability's
//! config.)

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore};

/// Agents working at once; more requests than this wait for a free agent.
pub const MAX_CONCURRENT_AGENTS: usize = 64;
/// Sessions the workload spreads its turns over (two of them low-trust).
const SESSIONS: usize = 20;
/// How long one action may take before the demo calls it lost.
const ACTION_DEADLINE: Duration = Duration::from_secs(120);

#[derive(Clone, Debug)]
pub struct DemoArgs {
    pub target: String,
    pub actions: usize,
    /// Actions started per second.
    pub rate: f64,
    pub seed: u64,
    /// No progress bar (for `warden up --demo`, which prints its own status).
    pub quiet: bool,
    /// The agent's bearer token, on a node with tokens.
    pub token: Option<String>,
    /// The token confirmations are given with (an operator's: agents may not confirm).
    pub confirm_token: Option<String>,
    /// The CA file trusted for an `https://` target.
    pub ca: Option<std::path::PathBuf>,
    pub degrade: Option<Degrade>,
}

/// A capability the demo degrades: from `base_latency_ms`, latency grows by
/// `latency_ms_per_min` and the failure chance by `fail_per_min` per minute.
#[derive(Clone, Debug)]
pub struct Degrade {
    pub capability: String,
    pub base_latency_ms: f64,
    pub latency_ms_per_min: f64,
    pub fail_per_min: f64,
}

impl Degrade {
    /// What the sim tool is asked for `elapsed` into the run: `_sim` args.
    pub fn sim_args(&self, elapsed: Duration, rng: &mut fastrand::Rng) -> Value {
        let minutes = elapsed.as_secs_f64() / 60.0;
        let latency = self.base_latency_ms + self.latency_ms_per_min * minutes;
        // ±25 % noise, so percentiles are percentiles of something.
        let latency = (latency * (0.75 + 0.5 * rng.f64())).round() as u64;
        let fail = rng.f64() < (self.fail_per_min * minutes).min(1.0);
        json!({"latency_ms": latency, "fail": fail})
    }
}

/// What the run saw; `lost` must be zero.
#[derive(Debug, Default)]
pub struct Summary {
    pub submitted: u64,
    pub by_state: BTreeMap<String, u64>,
    pub lost: u64,
    pub errors: Vec<String>,
    pub latency_ms: Option<Histogram<u64>>,
    pub elapsed: Duration,
}

impl Summary {
    pub fn accounted(&self) -> u64 {
        self.by_state.values().sum()
    }

    pub fn print(&self) {
        println!("\n{:<24}{:>10}", "outcome", "actions");
        println!("{:-<34}", "");
        println!("{:<24}{:>10}", "submitted", self.submitted);
        for (state, n) in &self.by_state {
            println!("  {:<22}{:>10}", state, n);
        }
        println!("{:<24}{:>10}", "lost (not terminal)", self.lost);
        println!("{:<24}{:>10}", "request errors", self.errors.len());
        if let Some(h) = &self.latency_ms {
            println!(
                "\nsubmit → terminal latency (ms): p50 {}  p95 {}  p99 {}  max {}",
                h.value_at_quantile(0.50),
                h.value_at_quantile(0.95),
                h.value_at_quantile(0.99),
                h.max()
            );
        }
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        println!("{} actions in {:.1} s ({:.0}/s)", self.submitted, secs, self.submitted as f64 / secs);
        for e in self.errors.iter().take(5) {
            println!("error: {e}");
        }
    }
}

struct Client {
    http: reqwest::Client,
    /// For confirmations (the operator's side of the workload).
    confirmer: reqwest::Client,
    /// The confirmer has a token, which names it.
    confirmer_named: bool,
    base: String,
}

impl Client {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        self.send_with(&self.http, method, path, body).await
    }

    async fn send_with(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = http.request(method.clone(), format!("{}{}", self.base, path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{method} {path} → {status}: {}", value["error"]["message"]);
        }
        Ok(value)
    }
}

struct Catalog {
    by_tier: [Vec<(String, Option<f64>, bool)>; 4],
}

impl Catalog {
    fn find(&self, name: &str) -> Option<&(String, Option<f64>, bool)> {
        self.by_tier.iter().flatten().find(|(n, _, _)| n == name)
    }

    fn amount_limit(&self, name: &str) -> Option<f64> {
        self.find(name).and_then(|c| c.1)
    }
}

async fn load_catalog(client: &Client) -> anyhow::Result<Catalog> {
    let caps = client.send(reqwest::Method::GET, "/v1/capabilities", None).await?;
    let mut by_tier: [Vec<(String, Option<f64>, bool)>; 4] = Default::default();
    for c in caps["capabilities"].as_array().context("capabilities missing")? {
        let tier = c["tier"].as_u64().unwrap_or(3).min(3) as usize;
        let sim = c["executor"]["kind"] == "sim";
        by_tier[tier].push((c["name"].as_str().unwrap_or_default().to_owned(), c["amount_limit"].as_f64(), sim));
    }
    if by_tier.iter().all(Vec::is_empty) {
        bail!("the target has no capabilities");
    }
    Ok(Catalog { by_tier })
}

/// One agent step: a turn with a model call, memory traffic and one action,
/// followed to its end. Returns the action's final state and latency.
async fn agent_step(
    client: &Client,
    catalog: &Catalog,
    i: u64,
    seed: u64,
    degrade: Option<(&Degrade, Duration)>,
) -> anyhow::Result<(String, u64)> {
    let mut rng = fastrand::Rng::with_seed(seed.wrapping_mul(0x9E37_79B9).wrapping_add(i));
    let session = rng.usize(0..SESSIONS);
    let trust = if session < 2 { "low" } else { "normal" };
    let turn = client
        .send(
            reqwest::Method::POST,
            &format!("/v1/sessions/demo-{session}/turns"),
            Some(json!({"trust": trust, "summary": format!("demo step {i}")})),
        )
        .await?;
    let turn_id = turn["turn_id"].as_str().context("turn_id")?.to_owned();
    let model = json!({"model": "demo-llm", "latency_ms": rng.u64(50..900), "ok": rng.f64() > 0.02,
        "prompt_tokens": rng.u64(100..2000), "completion_tokens": rng.u64(10..400)});
    client.send(reqwest::Method::POST, &format!("/v1/turns/{turn_id}/model-calls"), Some(model)).await?;
    let key = format!("note-{}", rng.u64(0..50));
    let memory = json!({"value": {"text": format!("observation {i}")}, "tags": ["demo"], "turn_id": turn_id});
    client.send(reqwest::Method::PUT, &format!("/v1/memory/demo-{session}/{key}"), Some(memory)).await?;
    client
        .send(reqwest::Method::GET, &format!("/v1/memory/demo-{session}?tag=demo&limit=5&turn_id={turn_id}"), None)
        .await?;

    // Tier mix: 30 % observe, 45 % reversible, 20 % confirm, 5 % forbidden.
    let roll = rng.f64();
    let wanted = if roll < 0.30 {
        0
    } else if roll < 0.75 {
        1
    } else if roll < 0.95 {
        2
    } else {
        3
    };
    let tier = (wanted..4).chain(0..wanted).find(|t| !catalog.by_tier[*t].is_empty()).unwrap_or(0);
    let (mut name, mut amount_limit, sim) = catalog.by_tier[tier][rng.usize(0..catalog.by_tier[tier].len())].clone();
    let mut args = json!({"demo_step": i});
    if let Some((d, _)) = degrade.filter(|_| i % 2 == 1) {
        (name, amount_limit) = (d.capability.clone(), catalog.amount_limit(&d.capability));
    }
    if let Some(limit) = amount_limit {
        args["amount"] = json!((rng.f64() * limit * 0.5).round());
    }
    match degrade {
        Some((d, elapsed)) if d.capability == name => args["_sim"] = d.sim_args(elapsed, &mut rng),
        _ if sim && rng.f64() < 0.05 => args["_sim"] = json!({"fail": true}),
        _ => {}
    }
    let started = Instant::now();
    let submitted = client
        .send(reqwest::Method::POST, "/v1/actions", Some(json!({"turn_id": turn_id, "capability": name, "args": args})))
        .await?;
    let id = submitted["action_id"].as_str().context("action_id")?.to_owned();
    if submitted["state"] == "awaiting_confirmation" {
        let approve = rng.f64() < 0.75;
        // With tokens, the confirmer's token names who confirms; without, the body does.
        let by = if client.confirmer_named {
            json!({"approve": approve})
        } else {
            json!({"approve": approve, "by": "demo-operator"})
        };
        let path = format!("/v1/actions/{id}/confirmation");
        client.send_with(&client.confirmer, reqwest::Method::POST, &path, Some(by)).await?;
    }
    loop {
        let a = client.send(reqwest::Method::GET, &format!("/v1/actions/{id}?wait_ms=10000"), None).await?;
        let state = a["state"].as_str().unwrap_or_default().to_owned();
        if !matches!(state.as_str(), "awaiting_confirmation" | "pending" | "running") {
            return Ok((state, started.elapsed().as_millis() as u64));
        }
        if started.elapsed() > ACTION_DEADLINE {
            bail!("action {id} still {state} after {ACTION_DEADLINE:?}");
        }
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<Summary> {
    if args.rate <= 0.0 || !args.rate.is_finite() {
        bail!("--rate must be a positive number");
    }
    let timeout = Duration::from_secs(60);
    let client = Arc::new(Client {
        http: crate::auth::client(timeout, args.token.as_deref(), args.ca.as_deref())?,
        confirmer: crate::auth::client(timeout, args.confirm_token.as_deref(), args.ca.as_deref())?,
        confirmer_named: args.confirm_token.is_some(),
        base: args.target.trim_end_matches('/').to_owned(),
    });
    let catalog = Arc::new(load_catalog(&client).await.with_context(|| format!("cannot reach {}", args.target))?);
    if let Some(d) = &args.degrade {
        match catalog.find(&d.capability) {
            Some((_, _, true)) => {}
            Some(_) => bail!("--degrade {}: not a sim capability", d.capability),
            None => bail!("--degrade {}: the target has no such capability", d.capability),
        }
    }
    let degrade = args.degrade.clone().map(Arc::new);
    let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(args.actions as u64) };
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} actions  {per_sec}  eta {eta}  {msg}")?);
    let summary = Arc::new(Mutex::new(Summary {
        latency_ms: Some(Histogram::new_with_bounds(1, 3_600_000, 3)?),
        ..Summary::default()
    }));
    let agents = Arc::new(Semaphore::new(MAX_CONCURRENT_AGENTS));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let mut ticker = tokio::time::interval(period);
    for i in 0..args.actions as u64 {
        ticker.tick().await;
        let permit = agents.clone().acquire_owned().await?;
        let (client, catalog, summary, bar) = (client.clone(), catalog.clone(), summary.clone(), bar.clone());
        let seed = args.seed;
        let degrade = degrade.clone();
        let elapsed = started.elapsed();
        tasks.spawn(async move {
            let result = agent_step(&client, &catalog, i, seed, degrade.as_deref().map(|d| (d, elapsed))).await;
            drop(permit);
            let mut s = summary.lock().await;
            s.submitted += 1;
            match result {
                Ok((state, ms)) => {
                    *s.by_state.entry(state).or_default() += 1;
                    if let Some(h) = s.latency_ms.as_mut() {
                        let _ = h.record(ms.max(1));
                    }
                }
                Err(e) => {
                    s.lost += 1;
                    s.errors.push(format!("{e:#}"));
                }
            }
            bar.inc(1);
        });
    }
    while tasks.join_next().await.is_some() {}
    bar.finish_and_clear();
    let mut s = Arc::into_inner(summary).context("summary still shared")?.into_inner();
    s.elapsed = started.elapsed();
    Ok(s)
}

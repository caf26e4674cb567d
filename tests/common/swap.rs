//! The swap-under-load workload, shared by `tests/policy_swap.rs` (debug
//! nodes, the checks) and `benches/policy_swap.rs` (release nodes, the
//! throughput figure): clients send decisions and real action submissions
//! to every node while pushes and rollbacks alternate two bundles.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden::warden_actors::authz::{Bundle, BundleSource};

/// Swaps: pushes of bundle B alternating with rollbacks to bundle A.
pub const SWAPS: usize = 20;
/// One request in this many is a real action submission, the rest decisions.
pub const ACTION_EVERY: u64 = 4;
/// Longest a swap may take to reach every node (the bound).
pub const MAX_PROPAGATION: Duration = Duration::from_secs(1);
/// Time between two swaps, under load.
pub const BETWEEN_SWAPS: Duration = Duration::from_millis(250);

fn bundle(revision: &str, email_allowed: bool) -> BTreeMap<String, String> {
    let mut files = Bundle::embedded().files().clone();
    files.insert(".manifest".into(), json!({"revision": revision, "roots": ["warden"]}).to_string());
    if email_allowed {
        let rego = files["warden/authz.rego"].replacen(
            "\tt in {0, 1, 2, 3}\n}\n",
            "\tt in {0, 1, 2, 3}\n\tinput.capability.name != \"email.send\"\n}\n\n\
             base_tier := 1 if input.capability.name == \"email.send\"\n",
            1,
        );
        files.insert("warden/authz.rego".into(), rego);
    }
    files
}

fn hash_of(files: &BTreeMap<String, String>) -> String {
    Bundle::from_files(files.clone(), BundleSource::Embedded).unwrap().hash().to_owned()
}

#[derive(Default)]
struct Tally {
    decisions: AtomicU64,
    actions: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    foreign_hash: AtomicU64,
}

async fn decide_hash(client: &reqwest::Client, url: &str) -> Option<String> {
    let r = client.post(format!("{url}/v1/policies/decide")).json(&json!({"capability": "email.send"})).send().await;
    let v: Value = r.ok()?.json().await.ok()?;
    v["policy_hash"].as_str().map(str::to_owned)
}

/// What one run measured and found.
#[derive(Debug)]
pub struct SwapReport {
    pub elapsed: Duration,
    pub clients: usize,
    pub decisions: u64,
    pub actions: u64,
    pub errors: u64,
    pub timeouts: u64,
    /// Decisions carrying neither bundle's hash.
    pub foreign: u64,
    /// From each swap's 2xx until every node decides with the new hash, sorted.
    pub propagation: Vec<Duration>,
    /// `policy.activated` events on the timeline.
    pub activations: usize,
    /// Recorded decisions checked against the bundle active at their log position.
    pub checked: usize,
    /// Recorded decisions that named another bundle than the active one.
    pub misattributed: Vec<Value>,
}

impl SwapReport {
    pub fn rate(&self) -> f64 {
        (self.decisions + self.actions) as f64 / self.elapsed.as_secs_f64()
    }

    pub fn median(&self) -> Duration {
        self.propagation[self.propagation.len() / 2]
    }

    pub fn max(&self) -> Duration {
        *self.propagation.last().unwrap()
    }

    pub fn summary(&self) -> String {
        format!(
            "{SWAPS} swaps in {:.1?}; {} decisions + {} actions = {:.0} requests/s ({} clients); errors {}, \
             timeouts {}, foreign hashes {}; propagation median {:?}, max {:?}; {} recorded decisions checked",
            self.elapsed,
            self.decisions,
            self.actions,
            self.rate(),
            self.clients,
            self.errors,
            self.timeouts,
            self.foreign,
            self.median(),
            self.max(),
            self.checked
        )
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

/// Every event on `url`'s timeline, paged.
async fn timeline(url: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page: Value = http()
            .get(format!("{url}/v1/timeline?after={after}&limit=10000"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let events = page["events"].as_array().unwrap().clone();
        if events.is_empty() {
            return out;
        }
        after = events.last().unwrap()["seq"].as_u64().unwrap();
        out.extend(events);
    }
}

/// Runs the workload against a settled cluster (`urls`, one per node).
pub async fn run(urls: &[String], clients: usize) -> SwapReport {
    let urls = urls.to_vec();
    let (a, b) = (bundle("swap-a", false), bundle("swap-b", true));
    let (hash_a, hash_b) = (hash_of(&a), hash_of(&b));
    let put = |url: &str, files: &BTreeMap<String, String>| {
        http().put(format!("{url}/v1/policies")).json(&json!({"files": files, "reason": "swap test"})).send()
    };
    assert!(put(&urls[0], &a).await.unwrap().status().is_success());

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (stop, tally, url) = (stop.clone(), tally.clone(), urls[c % urls.len()].clone());
        let (hash_a, hash_b) = (hash_a.clone(), hash_b.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
            let turn: Value = client
                .post(format!("{url}/v1/sessions/swap-{c}/turns"))
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let action = n.is_multiple_of(ACTION_EVERY);
                let sent = if action {
                    let body = json!({"turn_id": turn["turn_id"], "capability": "search.web", "args": {"q": n}});
                    client.post(format!("{url}/v1/actions")).json(&body).send().await
                } else {
                    let body = json!({"capability": "email.send", "args": {"to": "x"}, "trust": "normal"});
                    client.post(format!("{url}/v1/policies/decide")).json(&body).send().await
                };
                let reply = match sent {
                    Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
                    Ok(r) => {
                        eprintln!("{url}: {} {}", r.status(), r.text().await.unwrap_or_default());
                        None
                    }
                    Err(e) if e.is_timeout() => {
                        tally.timeouts.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Err(e) => {
                        eprintln!("{url}: {e}");
                        None
                    }
                };
                let Some(reply) = reply else {
                    tally.errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let hash = if action { &reply["decision"]["policy_hash"] } else { &reply["policy_hash"] };
                if *hash != hash_a.as_str() && *hash != hash_b.as_str() {
                    tally.foreign_hash.fetch_add(1, Ordering::Relaxed);
                }
                let counter = if action { &tally.actions } else { &tally.decisions };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // The swaps: push B, roll back to A, … each through another node, each
    // timed from its 2xx until all three nodes decide with the new hash.
    let mut propagation = Vec::new();
    let poller = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    for s in 0..SWAPS {
        tokio::time::sleep(BETWEEN_SWAPS).await;
        let via = &urls[s % urls.len()];
        let (resp, target) = if s.is_multiple_of(2) {
            (put(via, &b).await.unwrap(), &hash_b)
        } else {
            let body = json!({"to": hash_a, "reason": "swap test"});
            (http().post(format!("{via}/v1/policies/rollback")).json(&body).send().await.unwrap(), &hash_a)
        };
        let status = resp.status();
        assert!(status.is_success(), "swap {s}: {status} {}", resp.text().await.unwrap_or_default());
        let acknowledged = Instant::now();
        let mut pending: Vec<&String> = urls.iter().collect();
        while !pending.is_empty() {
            let mut still = Vec::new();
            for url in pending {
                if decide_hash(&poller, url).await.as_ref() != Some(target) {
                    still.push(url);
                }
            }
            pending = still;
            assert!(acknowledged.elapsed() < Duration::from_secs(10), "swap {s} did not reach {pending:?}");
        }
        propagation.push(acknowledged.elapsed());
    }
    tokio::time::sleep(BETWEEN_SWAPS).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    propagation.sort();

    // Each recorded decision names the bundle active at its place in the log.
    let mut active: Option<String> = None;
    let (mut checked, mut activations, mut misattributed) = (0, 0, Vec::new());
    for e in timeline(&urls[0]).await {
        match e["kind"].as_str() {
            Some("policy.activated") => {
                active = e["data"]["hash"].as_str().map(str::to_owned);
                activations += 1;
            }
            Some("policy.decided") if active.is_some() => {
                if e["data"]["policy_hash"].as_str() != active.as_deref() {
                    misattributed.push(e);
                }
                checked += 1;
            }
            _ => {}
        }
    }
    SwapReport {
        elapsed,
        clients,
        decisions: tally.decisions.load(Ordering::Relaxed),
        actions: tally.actions.load(Ordering::Relaxed),
        errors: tally.errors.load(Ordering::Relaxed),
        timeouts: tally.timeouts.load(Ordering::Relaxed),
        foreign: tally.foreign_hash.load(Ordering::Relaxed),
        propagation,
        activations,
        checked,
        misattributed,
    }
}

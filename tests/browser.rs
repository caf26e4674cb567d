//! The dashboard (`GET /`, static/index.html) in a real browser: Debian's
//! Chromium driven over WebDriver (chromedriver, fantoccini) against a live
//! 3-node cluster under traffic. Every panel renders data, the page logs no
//! error, a correlation's graph shows every event of that correlation, the
//! Replay button replays a DLQ entry and the new action appears, and a node
//! with tokens shows each panel refused until an operator token is given.
//! Screenshots land in `target/tmp/browser/`.
//!
//! Needs `chromium` and `chromedriver` on the PATH (`.ci/run` installs
//! Debian's `chromium` and `chromium-driver`). Without them the tests fail
//! under `CI=true` and are skipped, with the reason printed, elsewhere.

mod common;

use common::cluster::Cluster;
use common::process::{free_port, NodeProcess};
use common::serial::one_cluster_at_a_time;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden::auth::{create_token, Role};

/// Bound on every wait of these tests.
const WAIT: Duration = Duration::from_secs(30);

/// Every node's catalog: a healthy capability with an SLO, and one whose
/// forced failures dead-letter at once and open its breaker after 3 (an alert).
const CONFIG: &str = r#"
[[notify]]
kind = "log"
[[capability]]
name = "search.web"
tier = 0
slo = { p95_ms = 200, error_budget = 0.01 }
executor = { kind = "sim", latency_ms = 15, jitter_ms = 10, fail_rate = 0.0 }
[[capability]]
name = "flaky.api"
tier = 0
max_attempts = 1
slo = { p95_ms = 300, error_budget = 0.05 }
breaker = { failure_threshold = 3, open_ms = 300 }
executor = { kind = "sim", latency_ms = 5, jitter_ms = 5, fail_rate = 0.0 }
"#;

/// The panels the page polls or streams (the drill-down panel fills on demand).
const PANELS: [&str; 13] = [
    "throughput",
    "latency",
    "burn",
    "cluster",
    "alerts",
    "slo",
    "breakers",
    "policy",
    "dlq",
    "sessions",
    "actors",
    "capacity",
    "timeline",
];

/// The panels behind a role: all but this node's own health (`GET /v1/health` is open).
fn guarded() -> impl Iterator<Item = &'static str> {
    PANELS.into_iter().filter(|p| !matches!(*p, "actors" | "capacity"))
}

/// `name` on the PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Chromium and chromedriver, or why not: a failure under CI=true, a skip elsewhere.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let chromium = on_path("chromium").or_else(|| on_path("chromium-browser"));
    let driver = on_path("chromedriver");
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        (c, d) => {
            let missing: Vec<&str> = [(c.is_none(), "chromium"), (d.is_none(), "chromedriver")]
                .iter()
                .filter(|m| m.0)
                .map(|m| m.1)
                .collect();
            let why =
                format!("{} not on the PATH (Debian: apt-get install chromium chromium-driver)", missing.join(" and "));
            assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and {why}");
            eprintln!("SKIPPED: the browser tests need a browser: {why}");
            None
        }
    }
}

/// A chromedriver process on a loopback port, killed on drop, and a session of
/// headless Chromium through it.
struct Browser {
    driver: Child,
    client: Option<Client>,
}

impl Browser {
    async fn start(chromium: &Path, chromedriver: &Path) -> Browser {
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .stdin(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let mut browser = Browser { driver, client: None };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + WAIT;
        loop {
            let status = reqwest::get(format!("{url}/status")).await;
            if let Ok(r) = status {
                if r.json::<Value>().await.is_ok_and(|v| v["value"]["ready"] == true) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready on {url}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1500,2400", "--hide-scrollbars"],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector).capabilities(caps).connect(&url).await.expect("a browser session");
        browser.client = Some(client);
        browser
    }

    fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    async fn js(&self, script: &str) -> Value {
        self.c().execute(script, vec![]).await.unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until `script` returns true; panics with its last value (and `what`) otherwise.
    async fn until(&self, what: &str, script: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.js(script).await;
            if v == true {
                return;
            }
            if Instant::now() > deadline {
                let state = self.js(PANEL_STATES).await;
                panic!("{what}: still {v} after {WAIT:?}; panels: {state}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element `css` selects. A live panel may re-render between
    /// finding the element and clicking it (a stale element): then it is
    /// found again, until `WAIT`.
    async fn click(&self, css: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let element = self.c().find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
            match element.click().await {
                Ok(()) => return,
                Err(e) if e.is_stale_element_reference() && Instant::now() < deadline => continue,
                Err(e) => panic!("clicking {css}: {e}"),
            }
        }
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, self.c().screenshot().await.expect("a screenshot")).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// The page's recorded errors (its window.onerror / console.error hook).
    async fn errors(&self) -> Value {
        self.js("return window.wardenErrors;").await
    }

    async fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.close().await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Every panel's state and message.
const PANEL_STATES: &str = "return Object.fromEntries([...document.querySelectorAll('section[data-panel]')]\
    .map((s) => [s.dataset.panel, (s.dataset.state || 'loading') + ' ' + s.querySelector('.msg').textContent]));";

fn all_panels_are(panels: impl Iterator<Item = &'static str>, state: &str) -> String {
    let names: Vec<String> = panels.map(|p| format!("'{p}'")).collect();
    format!(
        "return [{}].every((p) => document.querySelector(`section[data-panel=\"${{p}}\"]`).dataset.state === '{state}');",
        names.join(",")
    )
}

/// A JS expression: the rows of data (not the heading, not "nothing here") in table `id`.
fn rows(id: &str) -> String {
    format!("(document.querySelectorAll('#{id} tr').length - document.querySelectorAll('#{id} tr:first-child th:first-child').length \
             - document.querySelectorAll('#{id} td.empty').length)")
}

/// Turns and actions through every node until `stop`: mostly successes, and
/// every fourth action forced to fail (dead-lettered, breaker, alert).
fn traffic(urls: Vec<String>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let http = common::cluster::http();
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let url = &urls[sent as usize % urls.len()];
            let session = format!("agent-{}", sent % 5);
            let r = http
                .post(format!("{url}/v1/sessions/{session}/turns"))
                .json(&json!({"summary": "browse"}))
                .send()
                .await;
            let Some(turn) = (match r {
                Ok(r) => r.json::<Value>().await.ok().and_then(|t| t["turn_id"].as_str().map(str::to_owned)),
                Err(_) => None,
            }) else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            for k in 0..4u64 {
                let (capability, args) = if k == 3 {
                    ("flaky.api", json!({"n": sent, "_sim": {"fail": true}}))
                } else {
                    ("search.web", json!({"q": format!("q{sent}-{k}")}))
                };
                let body = json!({"turn_id": turn, "capability": capability, "args": args});
                let _ = http.post(format!("{url}/v1/actions")).json(&body).send().await;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        sent
    })
}

/// Waits until `path` on `url` answers JSON for which `ready` holds; returns it.
async fn wait_api(url: &str, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let http = common::cluster::http();
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(r) = http.get(format!("{url}{path}")).send().await {
            if let Ok(v) = r.json::<Value>().await {
                if ready(&v) {
                    return v;
                }
            }
        }
        assert!(Instant::now() < deadline, "{path} never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_renders_a_live_cluster_and_drills_down_and_replays() {
    let Some((chromium, chromedriver)) = browser() else { return };
    let _one = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3, CONFIG);
    cluster.settled().await;
    let urls: Vec<String> = cluster.all().iter().map(|&i| cluster.url(i).to_owned()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(urls.clone(), stop.clone());
    let url = &urls[0];
    // What every panel needs before the page is opened: dead letters, a firing alert, SLO reports.
    wait_api(url, "/v1/dlq?limit=5", |v| v["entries"].as_array().is_some_and(|e| e.len() >= 2)).await;
    wait_api(url, "/v1/alerts", |v| v["alerts"].as_array().is_some_and(|a| !a.is_empty())).await;
    wait_api(url, "/v1/slo", |v| v["capabilities"].as_array().is_some_and(|c| c.len() >= 2)).await;
    // More events than one page of the page's window (400 over the last 10 s): it must narrow it to the newest.
    wait_api(url, "/v1/timeline?after=1000&limit=1", |v| v["events"].as_array().is_some_and(|e| !e.is_empty())).await;
    // For docs/performance.md and the README: a page open through a longer
    // run (its charts fill); the page below is then opened by a fresh browser
    // (nothing cached) on the older, busier log.
    let warmup: u64 = std::env::var("WARDEN_BROWSER_WARMUP_S").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    if warmup > 0 {
        let watching = Browser::start(&chromium, &chromedriver).await;
        watching.c().goto(url).await.expect("the dashboard loads");
        tokio::time::sleep(Duration::from_secs(warmup)).await;
        watching.screenshot("dashboard-after-warmup").await;
        watching.close().await;
    }
    let b = Browser::start(&chromium, &chromedriver).await;
    b.c().goto(url).await.expect("the dashboard loads");
    b.until("every panel loaded", &all_panels_are(PANELS.into_iter(), "ok")).await;
    // First paint and the moment every panel first held data, as the browser timed them.
    let timing = b
        .js("const fcp = performance.getEntriesByName('first-contentful-paint')[0]; \
             const nav = performance.getEntriesByType('navigation')[0]; \
             return {first_contentful_paint_ms: fcp ? fcp.startTime : null, dom_content_loaded_ms: nav.domContentLoadedEventEnd, \
                     all_panels_ms: window.wardenReady};")
        .await;
    let newest = b.js("return window.warden.timeline()[0].seq;").await;
    let window = b.js("return window.warden.window;").await;
    eprintln!(
        "dashboard timing under traffic ({warmup} s of warm-up, {newest} events in the log, window {window}): {timing}"
    );
    assert_eq!(window["complete"], true, "the page's window of events is not the newest whole: {window}");
    assert!(timing["first_contentful_paint_ms"].is_number(), "the browser reported no first paint: {timing}");

    // Every panel holds data.
    b.until("the cluster panel lists the 3 nodes", &format!("return {} === 3;", rows("nodes"))).await;
    for table in ["alerts", "slo", "breakers", "policy-nodes", "dlq", "sessions", "actors", "capacity", "timeline"] {
        b.until(&format!("table #{table} has rows"), &format!("return {} > 0;", rows(table))).await;
    }
    b.until(
        "the topology shows 3 nodes and a leader",
        "return document.querySelectorAll('#topology g[data-node]').length === 3 \
             && document.querySelector('#nodes').textContent.includes('leader');",
    )
    .await;
    b.until(
        "alerts show a firing breaker alert with its delivery",
        "const t = document.querySelector('#alerts').textContent; \
             return t.includes('WardenBreakerOpen') && t.includes('log firing');",
    )
    .await;
    b.until(
        "actions/s chart counted successes and dead letters",
        "const d = window.warden.charts.throughput.u.data; \
             const sum = (s) => d[s].reduce((a, b) => a + (b || 0), 0); return sum(1) > 0 && sum(3) > 0;",
    )
    .await;
    b.until(
        "a p95 chart per capability with data",
        "const c = Object.keys(window.warden.charts).filter((k) => k.startsWith('p95:')); \
             return c.length >= 2 && c.every((k) => window.warden.charts[k].u.data[1].some((v) => v != null) \
             && window.warden.charts[k].u.data[2].some((v) => v != null));",
    )
    .await;
    b.until(
        "a burn chart with a series per capability",
        "const k = Object.keys(window.warden.charts).find((k) => k.startsWith('burn:')); \
             return !!k && window.warden.charts[k].u.data.length >= 3 && window.warden.charts[k].u.data[0].length > 0;",
    )
    .await;
    b.screenshot("dashboard").await;

    // Drill-down: a dead-lettered action's correlation, searched by its id.
    let entry = cluster.get(0, "/v1/dlq?limit=1").await.unwrap()["entries"][0].clone();
    let cid = entry["correlation_id"].as_str().unwrap().to_owned();
    let search = b.c().find(Locator::Id("search")).await.unwrap();
    search.send_keys(&cid).await.unwrap();
    b.click("#search-form button").await;
    b.until(
        "the graph of the searched correlation",
        &format!(
            "return document.querySelector('#graph').dataset.cid === '{cid}' \
             && document.querySelectorAll('#graph g.gnode').length > 0;"
        ),
    )
    .await;
    let drawn =
        seqs(&b.js("return [...document.querySelectorAll('#graph g.gnode')].map((g) => Number(g.dataset.seq));").await);
    let logged: BTreeSet<u64> = cluster
        .timeline(0)
        .await
        .iter()
        .filter(|e| e["correlation_id"] == cid.as_str())
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(logged.len() >= 5, "the correlation has a turn, its actions and a dead letter: {logged:?}");
    // Events of the correlation committed after the graph was drawn may be missing from it, none other.
    assert!(drawn.is_subset(&logged), "drawn {drawn:?}, logged {logged:?}");
    let missing: Vec<&u64> =
        logged.iter().filter(|s| !drawn.contains(s) && **s <= *drawn.iter().max().unwrap()).collect();
    assert!(missing.is_empty(), "the graph lacks events {missing:?} of {cid}");
    let edges = b.js("return [...document.querySelectorAll('#graph path.edge')].map((p) => [Number(p.dataset.from), Number(p.dataset.to)]);").await;
    let graph = cluster.get(0, &format!("/v1/correlations/{cid}/graph")).await.unwrap();
    let drawn_edges = edges.as_array().unwrap().len();
    let api_edges = graph["edges"].as_array().unwrap().len();
    assert_eq!(drawn_edges, api_edges, "every edge of the graph is drawn: {edges}");
    assert!(drawn_edges + 1 >= drawn.len(), "the graph is connected from its root: {edges}");
    // Clicking a node shows that event's details.
    let last = *drawn.iter().max().unwrap();
    b.click(&format!("#graph g.gnode[data-seq=\"{last}\"]")).await;
    b.until(
        "the clicked event's details",
        &format!("return JSON.parse(document.querySelector('#event-json').textContent).seq === {last};"),
    )
    .await;
    b.screenshot("graph").await;

    // Clicking an action id in the DLQ panel draws that action's correlation.
    let clicked =
        b.js("const a = document.querySelector('#dlq a[data-action]'); a.click(); return a.dataset.action;").await;
    let clicked = clicked.as_str().unwrap().to_owned();
    let action = cluster.get(0, &format!("/v1/actions/{clicked}")).await.unwrap();
    b.until(
        "the clicked action's graph",
        &format!(
            "return document.querySelector('#graph').dataset.cid === '{}' \
             && [...document.querySelectorAll('#graph g.gnode.sel')].length > 0;",
            action["correlation_id"].as_str().unwrap()
        ),
    )
    .await;

    // Replay: the entry's button replays it, and the new action shows on the live timeline.
    let dlq_id = b.js("return document.querySelector('#dlq button[data-replay]').dataset.replay;").await;
    let dlq_id = dlq_id.as_str().unwrap().to_owned();
    b.click(&format!("#dlq button[data-replay=\"{dlq_id}\"]")).await;
    b.until("the replay's result", "return !!document.querySelector('#replay-result').dataset.action;").await;
    let replayed = b.js("return document.querySelector('#replay-result').dataset.action;").await;
    let replayed = replayed.as_str().unwrap().to_owned();
    let new_action = cluster.get(0, &format!("/v1/actions/{replayed}")).await.unwrap();
    assert_eq!(new_action["replay_of"], dlq_id.as_str(), "{new_action}");
    b.until(
        "the replayed action on the timeline",
        &format!(
            "return [...document.querySelectorAll('#timeline a[data-action]')]\
             .some((a) => a.dataset.action === '{replayed}');"
        ),
    )
    .await;
    let all = cluster.get(0, "/v1/dlq?all=true&limit=10000").await.unwrap();
    let replays =
        all["entries"].as_array().unwrap().iter().find(|e| e["id"] == dlq_id.as_str()).unwrap()["replays"].clone();
    assert!(replays.as_array().unwrap().iter().any(|r| r == replayed.as_str()), "{replays}");

    // Bounded memory: the live buffers stay at their caps under traffic.
    let sizes = b
        .js("return {timeline: window.warden.timeline().length, seconds: window.warden.perSecond.size, \
                       rows: document.querySelectorAll('#timeline tr').length};")
        .await;
    assert!(sizes["timeline"].as_u64().unwrap() <= 200 && sizes["seconds"].as_u64().unwrap() <= 300, "{sizes}");
    b.screenshot("replayed").await;

    let errors = b.errors().await;
    assert_eq!(errors, json!([]), "the page logged errors");
    stop.store(true, Ordering::Relaxed);
    let sent = load.await.unwrap();
    assert!(sent > 0);
    b.close().await;
}

fn seqs(v: &Value) -> BTreeSet<u64> {
    v.as_array().unwrap().iter().map(|s| s.as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_panel_says_when_its_endpoint_refuses_the_token() {
    let Some((chromium, chromedriver)) = browser() else { return };
    let _one = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    let agent = create_token(&tokens, "bot", Role::Agent).unwrap();
    let operator = create_token(&tokens, "ops", Role::Operator).unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(&config, format!("token_file = \"tokens.toml\"\n{CONFIG}")).unwrap();
    let node = NodeProcess::start(&dir.path().join("a"), Some(&config));
    let b = Browser::start(&chromium, &chromedriver).await;
    b.c().goto(&node.url).await.expect("the dashboard is open to all");

    // No token: every panel is refused, and says so.
    b.until("every guarded panel refused", &all_panels_are(guarded(), "refused")).await;
    let messages = b.js(PANEL_STATES).await;
    for p in guarded() {
        let m = messages[p].as_str().unwrap();
        assert!(m.contains("refused (401)") && m.contains("operator token"), "{p}: {m}");
    }
    b.screenshot("refused-401").await;

    // An agent's token: the operator's panels say 403; the agent's own (sessions) loads.
    b.c().find(Locator::Id("token")).await.unwrap().send_keys(&agent).await.unwrap();
    b.click("#token-form button").await;
    b.until(
        "the cluster panel refused with 403",
        "const s = document.querySelector('section[data-panel=\"cluster\"]'); \
             return s.querySelector('.msg').textContent.includes('refused (403)');",
    )
    .await;
    b.until(
        "sessions load for an agent",
        "return document.querySelector('section[data-panel=\"sessions\"]').dataset.state === 'ok';",
    )
    .await;
    b.screenshot("refused-403").await;

    // An operator's token, kept in localStorage: every panel loads, also after a reload.
    b.c().find(Locator::Id("token")).await.unwrap().send_keys(&operator).await.unwrap();
    b.click("#token-form button").await;
    b.until("every panel loads with the operator's token", &all_panels_are(PANELS.into_iter(), "ok")).await;
    b.c().refresh().await.unwrap();
    b.until("the token outlives a reload", &all_panels_are(PANELS.into_iter(), "ok")).await;
    assert_eq!(b.js("return localStorage.getItem('warden.token');").await, json!(operator));
    b.close().await;
    drop(node);
}

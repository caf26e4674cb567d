//! An idempotent tool for soak and chaos runs: an HTTP endpoint that holds
//! each request a while (so failures land mid-request), applies each
//! Idempotency-Key's effect once, and keeps what it saw per key so a run can
//! prove that no attempt reached the tool outside its record.

use parking_lot::Mutex;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use warp::Filter;

/// What the tool saw for one idempotency key.
#[derive(Clone, Debug, Default)]
pub struct KeyRecord {
    /// Requests that arrived with this key.
    pub requests: u32,
    /// Times its effect was applied: 0 or 1, the tool dedups by key.
    pub effects: u32,
    /// Requests answered after the effect was already applied (re-executions).
    pub deduplicated: u32,
    /// The `action_id`s the requests named.
    pub actions: Vec<String>,
}

#[derive(Clone)]
pub struct ToolServer {
    pub url: String,
    seen: Arc<Mutex<BTreeMap<String, KeyRecord>>>,
}

impl ToolServer {
    /// Serves on a free loopback port; every request is held `hold` first.
    pub async fn start(hold: Duration) -> anyhow::Result<ToolServer> {
        let seen: Arc<Mutex<BTreeMap<String, KeyRecord>>> = Arc::default();
        let shared = seen.clone();
        let route = warp::post()
            .and(warp::header::optional::<String>("idempotency-key"))
            .and(warp::body::json::<Value>())
            .then(move |key: Option<String>, body: Value| {
                let seen = shared.clone();
                async move {
                    let Some(key) = key else {
                        return warp::reply::with_status(
                            "Idempotency-Key missing",
                            warp::http::StatusCode::BAD_REQUEST,
                        );
                    };
                    {
                        let mut seen = seen.lock();
                        let rec = seen.entry(key.clone()).or_default();
                        rec.requests += 1;
                        rec.actions.push(body["action_id"].as_str().unwrap_or_default().to_owned());
                    }
                    tokio::time::sleep(hold).await;
                    let mut seen = seen.lock();
                    let rec = seen.entry(key).or_default();
                    if rec.effects == 0 {
                        rec.effects = 1;
                    } else {
                        rec.deduplicated += 1;
                    }
                    warp::reply::with_status("done", warp::http::StatusCode::OK)
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Ok(ToolServer { url: format!("http://{addr}/tool"), seen })
    }

    /// What the tool saw for `key`, if any request carried it.
    pub fn record(&self, key: &str) -> Option<KeyRecord> {
        self.seen.lock().get(key).cloned()
    }

    /// Everything the tool saw, by key.
    pub fn records(&self) -> BTreeMap<String, KeyRecord> {
        self.seen.lock().clone()
    }
}

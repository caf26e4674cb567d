//! A test tool server for the `http` executor: records every request's
//! Idempotency-Key, applies each key's effect once, and can fail or hold
//! requests on a script.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use warp::http::StatusCode;
use warp::Filter;

#[derive(Default)]
pub struct ToolState {
    /// Every request's key, in arrival order.
    pub keys: Vec<String>,
    /// Requests answered with success, per key: warden must not make a
    /// second successful call for a key (at most 1 each).
    pub completed: HashMap<String, u32>,
    /// Answer the first `fail_first` requests with 500.
    pub fail_first: u32,
    /// Hold the first `hold_first` requests this long before answering.
    pub hold_first: u32,
    pub hold: Duration,
    pub requests: u32,
}

#[derive(Clone)]
pub struct Tool {
    pub url: String,
    pub state: Arc<Mutex<ToolState>>,
}

impl Tool {
    pub async fn start(script: ToolState) -> Tool {
        let state = Arc::new(Mutex::new(script));
        let shared = state.clone();
        let route = warp::post()
            .and(warp::header::optional::<String>("idempotency-key"))
            .and(warp::body::json::<serde_json::Value>())
            .then(move |key: Option<String>, _body: serde_json::Value| {
                let state = shared.clone();
                async move {
                    let key = key.unwrap_or_default();
                    let (hold, fail) = {
                        let mut s = state.lock();
                        s.requests += 1;
                        s.keys.push(key.clone());
                        let n = s.requests;
                        ((n <= s.hold_first).then_some(s.hold), n <= s.fail_first)
                    };
                    if let Some(d) = hold {
                        tokio::time::sleep(d).await;
                    }
                    if fail {
                        return warp::reply::with_status("try again", StatusCode::INTERNAL_SERVER_ERROR);
                    }
                    *state.lock().completed.entry(key).or_default() += 1;
                    warp::reply::with_status("done", StatusCode::OK)
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Tool { url: format!("http://{addr}/tool"), state }
    }
}

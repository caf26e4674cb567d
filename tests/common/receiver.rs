//! Alert receivers for the notification tests: a webhook endpoint that
//! checks every request's signature and can refuse, fail or hang on a
//! script, and a real Alertmanager (Debian's `prometheus-alertmanager`)
//! on a loopback port, killed on drop.

use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::Value;
use sha2::Sha256;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warp::http::StatusCode;
use warp::Filter;

/// One request the webhook received.
#[derive(Clone, Debug)]
pub struct Hook {
    pub delivery_id: String,
    pub body: Value,
    pub signed: bool,
    /// Answered with a 2xx.
    pub accepted: bool,
}

#[derive(Default)]
pub struct HookScript {
    /// Answer 500 while set.
    pub refuse: bool,
    /// Answer the first `fail_first` requests with 500…
    pub fail_first: u32,
    /// …then hold the next `hold_next` requests this long before answering 200.
    pub hold_next: u32,
    pub hold: Duration,
    pub requests: u32,
    pub received: Vec<Hook>,
}

#[derive(Clone)]
pub struct Webhook {
    pub url: String,
    pub script: Arc<Mutex<HookScript>>,
}

impl Webhook {
    pub async fn start(secret: &'static str, script: HookScript) -> Webhook {
        let script = Arc::new(Mutex::new(script));
        let shared = script.clone();
        let route = warp::post()
            .and(warp::header::optional::<String>("x-warden-signature"))
            .and(warp::header::optional::<String>("x-warden-delivery"))
            .and(warp::body::bytes())
            .then(move |signature: Option<String>, id: Option<String>, body: bytes::Bytes| {
                let script = shared.clone();
                async move {
                    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
                    mac.update(&body);
                    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
                    let signed = signature.as_deref() == Some(format!("sha256={hex}").as_str());
                    let (hold, refuse, index) = {
                        let mut s = script.lock();
                        s.requests += 1;
                        let n = s.requests;
                        let refuse = s.refuse || n <= s.fail_first;
                        let hold = (!refuse && n <= s.fail_first + s.hold_next).then_some(s.hold);
                        let hook = Hook {
                            delivery_id: id.unwrap_or_default(),
                            body: serde_json::from_slice(&body).unwrap_or_default(),
                            signed,
                            accepted: false,
                        };
                        s.received.push(hook);
                        (hold, refuse, s.received.len() - 1)
                    };
                    if let Some(d) = hold {
                        tokio::time::sleep(d).await;
                    }
                    if refuse {
                        return warp::reply::with_status("not now", StatusCode::INTERNAL_SERVER_ERROR);
                    }
                    // Counted as accepted only if the answer was not given up on.
                    if hold.is_none() {
                        script.lock().received[index].accepted = true;
                    }
                    warp::reply::with_status("ok", StatusCode::OK)
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Webhook { url: format!("http://{addr}/hook"), script }
    }

    pub fn received(&self) -> Vec<Hook> {
        self.script.lock().received.clone()
    }
}

/// A real Alertmanager on loopback, killed on drop.
pub struct Alertmanager {
    child: Child,
    pub url: String,
}

/// The Alertmanager binary: Debian names it `prometheus-alertmanager`.
fn alertmanager_binary() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["prometheus-alertmanager", "alertmanager"].map(|n| dir.join(n)))
        .find(|p| p.is_file())
}

impl Alertmanager {
    /// Starts Alertmanager with a config that routes everything to a
    /// receiver with no integrations (the test reads its API). `None` when
    /// the binary is missing outside CI; under `CI=true` that is a failure.
    pub async fn start(dir: &Path) -> Option<Alertmanager> {
        let Some(binary) = alertmanager_binary() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true and no alertmanager binary: .ci/run installs Debian's prometheus-alertmanager"
            );
            eprintln!("SKIPPED: no alertmanager binary (apt-get install prometheus-alertmanager)");
            return None;
        };
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: nobody\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: nobody\n",
        )
        .unwrap();
        let port = super::process::free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // No gossip: a lone instance, no port 9094.
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("alertmanager starts");
        let am = Alertmanager { child, url: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(20);
        let http = reqwest::Client::new();
        loop {
            if let Ok(r) = http.get(format!("{}/-/ready", am.url)).send().await {
                if r.status().is_success() {
                    return Some(am);
                }
            }
            assert!(Instant::now() < deadline, "alertmanager not ready within 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Alerts Alertmanager holds and has not seen end (`GET /api/v2/alerts`).
    pub async fn alerts(&self) -> Vec<Value> {
        let r = reqwest::get(format!("{}/api/v2/alerts", self.url)).await.expect("alertmanager answers");
        r.json::<Vec<Value>>().await.expect("a list of alerts")
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

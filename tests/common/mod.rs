//! Shared fixtures for the actor-message tests: a catalog covering every tier,
//! node start-up on a temp dir, and condition waits with deadlines.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tempfile::TempDir;
use warden_actors::domain::*;
use warden_actors::ids::*;
use warden_actors::pipeline::SubmitRequest;
use warden_actors::sessions::OpenTurnRequest;
use warden_actors::supervisor::SupervisorConfig;
use warden_actors::{Node, NodeConfig};

/// Upper bound for any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn catalog() -> Vec<Capability> {
    let mut flaky = Capability::new("flaky.api", Tier::Reversible);
    flaky.max_attempts = 3;
    flaky.backoff_ms = 5;
    flaky.breaker = BreakerSpec { failure_threshold: 100, open_ms: 1_000 };
    let mut payments = Capability::new("payments.send", Tier::Reversible);
    payments.amount_limit = Some(100.0);
    let mut fragile = Capability::new("fragile.api", Tier::Observe);
    fragile.max_attempts = 1;
    fragile.breaker = BreakerSpec { failure_threshold: 3, open_ms: 300 };
    vec![
        Capability::new("search.web", Tier::Observe),
        Capability::new("notes.write", Tier::Reversible),
        Capability::new("email.send", Tier::Confirm),
        Capability::new("db.drop", Tier::Forbidden),
        payments,
        flaky,
        fragile,
    ]
}

/// The node name for `dir`: the same for every start on that data dir (its
/// Raft membership names it), and unique within this process. ractor's
/// registry and process groups are process-wide, and a node registers its
/// `RaftRpc` under its name, so two in-process nodes (tests running as
/// threads of one `cargo test` process) must not share one.
pub fn node_name(dir: &TempDir) -> String {
    static NAMES: Mutex<BTreeMap<PathBuf, String>> = Mutex::new(BTreeMap::new());
    let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    let next = format!("n{}", names.len() + 1);
    names.entry(dir.path().to_owned()).or_insert(next).clone()
}

pub fn config(dir: &TempDir) -> NodeConfig {
    let mut config = NodeConfig::new(&node_name(dir), dir.path(), catalog());
    config.supervisor = SupervisorConfig { backoff_base: Duration::from_millis(5), ..SupervisorConfig::default() };
    config.fault_injection = true;
    config
}

pub async fn start(dir: &TempDir) -> Node {
    Node::start(config(dir)).await.expect("node starts")
}

pub async fn turn(node: &Node, trust: Trust) -> Turn {
    let req = OpenTurnRequest { trust: Some(trust), summary: Some("test turn".into()), ..Default::default() };
    node.open_turn(req).await.expect("turn opens")
}

pub fn submit_req(turn: &Turn, capability: &str, args: Value) -> SubmitRequest {
    SubmitRequest {
        turn_id: turn.id.clone(),
        capability: capability.into(),
        args,
        idempotency_key: None,
        principal: None,
    }
}

pub async fn submit(node: &Node, turn: &Turn, capability: &str, args: Value) -> Action {
    node.submit(submit_req(turn, capability, args)).await.expect("submitted")
}

/// Waits until the action is terminal; fails the test if it is not within `WAIT`.
pub async fn terminal(node: &Node, id: &ActionId) -> Action {
    let action = node.wait_action(id, WAIT).await.expect("action exists");
    assert!(action.state.is_terminal(), "action {id} still {:?} after {WAIT:?}", action.state);
    action
}

/// Waits for the first committed event matching `pred`.
pub async fn next_event(
    rx: &mut tokio::sync::broadcast::Receiver<Arc<Event>>,
    pred: impl Fn(&Event) -> bool,
) -> Arc<Event> {
    tokio::time::timeout(WAIT, async {
        loop {
            match rx.recv().await {
                Ok(e) if pred(&e) => return e,
                Ok(_) => {}
                Err(e) => panic!("event stream broke: {e}"),
            }
        }
    })
    .await
    .expect("event arrives in time")
}

pub fn ok_args() -> Value {
    json!({"q": "rust actors"})
}

pub fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind().as_str()).collect()
}
pub mod api;
pub mod cluster;
pub mod history;
pub mod load;
pub mod process;
pub mod proxy;
pub mod receiver;
pub mod serial;
pub mod swap;
pub mod tool;

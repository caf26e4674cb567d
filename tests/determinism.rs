//! The state machine is deterministic: replaying a node's log into an empty
//! database rebuilds exactly the same state (same digest). This is what lets
//! replication feed the same `apply` on every replica.

mod common;

use common::*;
use serde_json::json;
use std::sync::Arc;
use warden_actors::consensus::replay_log;
use warden_actors::domain::*;
use warden_actors::store::{open_database, Store};

#[tokio::test]
async fn replaying_the_log_rebuilds_identical_state() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    let t = turn(&node, Trust::Normal).await;
    let low = turn(&node, Trust::Low).await;
    let mut ids = Vec::new();
    for (i, cap) in
        ["search.web", "notes.write", "email.send", "db.drop", "payments.send"].iter().cycle().take(30).enumerate()
    {
        let turn = if i % 3 == 0 { &low } else { &t };
        ids.push(submit(&node, turn, cap, json!({"amount": i * 10})).await.id);
    }
    let mut approve = false;
    let failing = submit(&node, &t, "flaky.api", json!({"_sim": {"fail": true}})).await;
    terminal(&node, &failing.id).await;
    let entry = node.dlq(true, None).unwrap().pop().unwrap();
    let replay = node.replay_dlq(&entry.id, None).await.unwrap();
    ids.push(replay.id);
    for id in &ids {
        let a = node.action(id).unwrap();
        if a.state == ActionState::AwaitingConfirmation {
            approve = !approve; // alternate: both paths end up in the log
            node.confirm(id, approve, "op").await.unwrap();
        }
    }
    // A rejected command is in the log too, and must replay as a rejection.
    assert!(node.confirm(&ids[0], true, "op").await.is_err());
    for id in &ids {
        terminal(&node, id).await;
    }
    let original = node.store().clone();
    let digest = original.state_digest().unwrap();

    let copy_dir = tempfile::tempdir().unwrap();
    let copy = Arc::new(open_database(&copy_dir.path().join("copy.redb")).unwrap());
    let applied = replay_log(&original, &copy).unwrap();
    assert_eq!(applied, original.last_index().unwrap());
    assert_eq!(Store::new(copy).state_digest().unwrap(), digest);
    drop(original);
    node.shutdown().await.unwrap();
}

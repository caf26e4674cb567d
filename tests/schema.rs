//! A data dir remembers the storage schema it was written in, and a node
//! refuses one of another schema with a message that says what to do.

mod common;

use common::*;
use warden_actors::store::META;
use warden_actors::version::{META_STORAGE_SCHEMA, STORAGE_SCHEMA};
use warden_actors::Node;

/// The storage schema recorded in a stopped node's data dir.
fn stored_schema(dir: &tempfile::TempDir) -> Option<u64> {
    let db = redb::Database::open(dir.path().join("warden.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    let schema = meta.get(META_STORAGE_SCHEMA).unwrap().map(|v| v.value());
    schema
}

#[tokio::test]
async fn a_new_data_dir_is_stamped_and_one_of_another_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    let t = turn(&node, warden_actors::domain::Trust::Normal).await;
    node.shutdown().await.unwrap();
    assert_eq!(stored_schema(&dir), Some(STORAGE_SCHEMA));

    // The same build opens it again, and finds what it wrote.
    let node = start(&dir).await;
    assert!(node.store().turn(&t.id).unwrap().is_some());
    node.shutdown().await.unwrap();

    // A data dir written by a later schema is refused, not misread.
    {
        let db = redb::Database::open(dir.path().join("warden.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap().insert(META_STORAGE_SCHEMA, STORAGE_SCHEMA + 1).unwrap();
        txn.commit().unwrap();
    }
    let Err(refused) = Node::start(config(&dir)).await else {
        panic!("a data dir of schema {} opened", STORAGE_SCHEMA + 1)
    };
    let message = refused.to_string();
    assert!(message.contains(&format!("storage schema {}", STORAGE_SCHEMA + 1)), "{message}");
    assert!(message.contains("new data dir"), "{message}");
}

/// The SHA-256 of every file under `dir`, by path.
fn fingerprint(dir: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
    use sha2::{Digest, Sha256};
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| (p.clone(), format!("{:x}", Sha256::digest(std::fs::read(&p).unwrap()))))
        .collect()
}

#[tokio::test]
async fn warden_node_refuses_a_data_dir_of_a_newer_schema_and_leaves_it_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&dir).await;
    turn(&node, warden_actors::domain::Trust::Normal).await;
    node.shutdown().await.unwrap();
    // What a later release would leave behind: its schema in the meta table.
    {
        let db = redb::Database::open(dir.path().join("warden.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap().insert(META_STORAGE_SCHEMA, STORAGE_SCHEMA + 1).unwrap();
        txn.commit().unwrap();
    }
    let before = fingerprint(dir.path());
    assert!(!before.is_empty());

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["node", "--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), out).await.expect("warden node exits").unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "warden node started on a newer data dir:\n{stderr}");
    let newer =
        format!("holds storage schema {}, newer than this warden's (schema {STORAGE_SCHEMA})", STORAGE_SCHEMA + 1);
    assert!(stderr.contains(&newer), "{stderr}");
    assert!(stderr.contains("it is left as it is"), "{stderr}");
    assert_eq!(fingerprint(dir.path()), before, "the refused data dir was written to");
}

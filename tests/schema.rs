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

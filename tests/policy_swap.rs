//! Zero drops under a policy swap: a 3-node cluster takes decisions
//! (`/v1/policies/decide`) and real action submissions from many clients
//! while 20 pushes and rollbacks alternate two bundles (`common::swap`).
//! Every request gets a 2xx with a decision from one of the two bundles,
//! none errs or times out, every recorded action's decision names the
//! bundle active at its place in the log, and each swap reaches every node
//! within `MAX_PROPAGATION` of the push's 2xx. The release-build throughput
//! of the same workload is `benches/policy_swap.rs`.

mod common;

use common::cluster::Cluster;
use common::serial::one_cluster_at_a_time;
use common::swap::{self, MAX_PROPAGATION, SWAPS};

/// Concurrent clients, spread over the three nodes.
const CLIENTS: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaps_under_load_drop_nothing_and_reach_every_node_within_a_second() {
    let _serial = one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3, "");
    cluster.settled().await;
    let urls: Vec<String> = cluster.all().into_iter().map(|i| cluster.url(i).to_owned()).collect();
    let report = swap::run(&urls, CLIENTS).await;
    println!("swap under load (debug build): {}", report.summary());
    assert_eq!(report.errors, 0, "requests that did not get a 2xx");
    assert_eq!(report.timeouts, 0, "requests that timed out");
    assert_eq!(report.foreign, 0, "decisions from neither bundle");
    assert!(report.actions > 0 && report.decisions > 0);
    assert!(report.max() <= MAX_PROPAGATION, "a swap took {:?} to reach every node", report.max());
    assert_eq!(report.activations, SWAPS + 1, "one activation per push and rollback");
    assert!(report.misattributed.is_empty(), "decided under another policy: {:?}", report.misattributed);
    assert!(report.checked as u64 >= report.actions, "{report:?}");
    cluster.converged(&cluster.all()).await;
}

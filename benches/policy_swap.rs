//! Policy swaps under load on three release `warden node` processes: the
//! workload of `tests/policy_swap.rs` (decisions and action submissions
//! from many clients while 20 pushes and rollbacks alternate two bundles),
//! measured once. Prints requests/s, errors and the propagation of each
//! swap (push 2xx → every node deciding with the new hash). Goal: ≥ 2,000
//! requests/s with 0 errors, propagation ≤ 1 s.
//!
//! Run: cargo bench --bench policy_swap

mod common;

#[path = "../tests/common/swap.rs"]
mod swap;

use common::{settle, start_cluster};

/// Clients, unless `WARDEN_BENCH_CLIENTS` says otherwise.
const CLIENTS: usize = 64;

fn main() {
    let clients = std::env::var("WARDEN_BENCH_CLIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(CLIENTS);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let cluster = start_cluster(None);
        let urls = cluster.urls();
        settle(&reqwest::Client::new(), &urls).await;
        let report = swap::run(&urls, clients).await;
        println!("policy_swap (release nodes): {}", report.summary());
        assert_eq!((report.errors, report.timeouts, report.foreign), (0, 0, 0), "{report:?}");
        assert!(report.misattributed.is_empty(), "{:?}", report.misattributed);
        assert_eq!(report.activations, swap::SWAPS + 1, "{report:?}");
        let met = |ok: bool| if ok { "met" } else { "NOT met" };
        println!(
            "goals: >= 2000 requests/s {}; propagation max <= {:?} {}",
            met(report.rate() >= 2000.0),
            swap::MAX_PROPAGATION,
            met(report.max() <= swap::MAX_PROPAGATION)
        );
    });
}

//! Multi-process cluster tests take both cores and pick free ports ahead of
//! binding them, so two at once make each other flaky. nextest runs them one
//! at a time (the `multi-node` test group in `.config/nextest.toml`, one
//! process per test, so this lock is never contended there); `cargo test`
//! runs a binary's tests as threads of one process, where this lock
//! serialises them. Each such test holds it for its whole run.
//!
//! tokio's `Mutex` does not poison: a test that fails releases it while
//! unwinding, and the next test runs normally.

use tokio::sync::{Mutex, MutexGuard};

static ONE_CLUSTER: Mutex<()> = Mutex::const_new(());

/// Waits until no other cluster test of this process runs; hold the guard
/// until the test ends.
pub async fn one_cluster_at_a_time() -> MutexGuard<'static, ()> {
    ONE_CLUSTER.lock().await
}

/// `one_cluster_at_a_time` for a test without an async runtime.
pub fn one_cluster_at_a_time_blocking() -> MutexGuard<'static, ()> {
    ONE_CLUSTER.blocking_lock()
}

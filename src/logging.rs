//! The `warden` binary's log: an env filter (`RUST_LOG`, else `DEFAULT`) to
//! stderr, minus openraft's reports of peers that did not answer.
//!
//! openraft logs every failed Raft RPC itself, at ERROR, on every retry:
//! "while requesting vote", "RPCError", "timeout". When warden's network
//! reported the failure as `Unreachable` (no connection to the peer, or its
//! session closed before the reply) or `Timeout`, that is an expected
//! transient condition — peers connecting at start, a peer stopping or dying
//! — not something an operator must act on. warden logs it once per change
//! instead (`consensus::network`, "raft: peer not answering; retrying"), and the
//! registry and health verdict say whether the peer is down.
//!
//! Likewise openraft reports, at ERROR, each call still waiting on a Raft
//! that stopped; when it stopped normally (`Fatal::Stopped`: warden's own
//! shutdown) that is no news either. A Raft that stopped on a storage error
//! or a panic is reported with that cause, which still shows, as does every
//! other openraft report (network or remote errors, storage, fatal).

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// The filter when `RUST_LOG` is not set.
pub const DEFAULT: &str = "info,ractor=warn,ractor_cluster=warn,openraft=warn,warp::server=off";

/// Installs the process's subscriber (once, at start).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| DEFAULT.into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::registry()
        .with(QuietPeerFailures)
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi))
        .init();
}

/// Drops openraft's events about an RPC the peer did not answer (see the module doc).
pub struct QuietPeerFailures;

impl<S: Subscriber> Layer<S> for QuietPeerFailures {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        !is_peer_failure_report(event)
    }
}

/// How openraft 0.9 displays the two errors that mean "the peer did not
/// answer" (`Unreachable`, `Timeout`), alone or as the transparent cause of
/// `RPCError` / `ReplicationError`.
const PEER_FAILURE_PREFIXES: [&str; 2] = ["Unreachable node: ", "timeout after "];
/// How openraft 0.9 shows `Fatal::Stopped` (a normal shutdown), bare or as a task result.
const STOPPED: [&str; 2] = ["Stopped", "Err(Stopped)"];

fn is_peer_failure_report(event: &Event<'_>) -> bool {
    if !event.metadata().target().starts_with("openraft") {
        return false;
    }
    let mut error = ErrorField(None);
    event.record(&mut error);
    error.0.is_some_and(|e| PEER_FAILURE_PREFIXES.iter().any(|p| e.starts_with(p)) || STOPPED.contains(&e.as_str()))
}

/// The text of an event's error field (`error`, `err`, or a task's `core_result`).
struct ErrorField(Option<String>);

const ERROR_FIELDS: [&str; 3] = ["error", "err", "core_result"];

impl Visit for ErrorField {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if ERROR_FIELDS.contains(&field.name()) {
            self.0 = Some(format!("{value:?}"));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if ERROR_FIELDS.contains(&field.name()) {
            self.0 = Some(value.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Collects the messages of the events that reach it.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber> Layer<S> for Seen {
        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            struct Message(String);
            impl Visit for Message {
                fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                    if field.name() == "message" {
                        self.0 = format!("{value:?}");
                    }
                }
            }
            let mut m = Message(String::new());
            event.record(&mut m);
            self.0.lock().unwrap().push(m.0);
        }
    }

    #[test]
    fn openraft_reports_of_silent_peers_are_dropped_and_real_errors_kept() {
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry().with(QuietPeerFailures).with(seen.clone());
        tracing::subscriber::with_default(subscriber, || {
            let unreachable = "Unreachable node: no connection to node b";
            let timeout = "timeout after 150ms when Vote 1->2";
            tracing::error!(target: "openraft::core::raft_core", error = %unreachable, "while requesting vote");
            tracing::error!(target: "openraft::replication", err = %unreachable, "RPCError");
            tracing::warn!(target: "openraft::replication", error = %timeout, "error replication to target=2");
            tracing::error!(target: "openraft::core::raft_core", error = %timeout, "timeout");
            tracing::error!(target: "openraft::raft::raft_inner", core_result = %"Err(Stopped)", "failure receiving");
            tracing::error!(target: "openraft::raft::raft_inner", error = %"Stopped", "error when recv_msg");
            // Kept: other openraft errors, and warden's own lines whatever they say.
            tracing::error!(target: "openraft::replication", err = %"NetworkError: call to node b failed", "kept 1");
            tracing::error!(target: "openraft::core::raft_core", error = %"storage error", "kept 2");
            tracing::error!(target: "warden::server", error = %unreachable, "kept 3");
            tracing::error!(target: "openraft::core::raft_core", "kept 4");
            let panicked = "Err(Panicked { backtrace: None })";
            tracing::error!(target: "openraft::raft::raft_inner", core_result = %panicked, "kept 5");
        });
        assert_eq!(*seen.0.lock().unwrap(), ["kept 1", "kept 2", "kept 3", "kept 4", "kept 5"]);
    }
}

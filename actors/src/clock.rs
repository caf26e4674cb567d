//! The node's clock: wall time in milliseconds since the epoch, and waiting
//! until a given time. Production nodes read the system clock; tests use a
//! manual clock they advance, so time-based behaviour (breaker windows,
//! confirmation deadlines, health windows) is tested without sleeping.
//!
//! `apply` never reads a clock: time reaches the state machine inside each
//! log entry, stamped by the proposer from this clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Cheap to clone; every clone reads the same time.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// `None`: the system clock. `Some`: a manual clock, moved only by `advance`.
    manual: Option<Arc<watch::Sender<u64>>>,
}

impl Clock {
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A clock that stands at `start_ms` until advanced.
    pub fn manual(start_ms: u64) -> Self {
        Self { manual: Some(Arc::new(watch::Sender::new(start_ms))) }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        match &self.manual {
            None => wall_ms(),
            Some(time) => *time.borrow(),
        }
    }

    /// Moves a manual clock forward and wakes whoever waits on it.
    ///
    /// # Panics
    /// On the system clock: nobody moves real time.
    pub fn advance(&self, by: Duration) {
        let time = self.manual.as_ref().expect("only a manual clock can be advanced");
        time.send_modify(|ms| *ms = ms.saturating_add(by.as_millis() as u64));
    }

    /// Resolves once the clock reads `at_ms` or later.
    pub async fn sleep_until(&self, at_ms: u64) {
        match &self.manual {
            None => {
                let left = at_ms.saturating_sub(wall_ms());
                if left > 0 {
                    tokio::time::sleep(Duration::from_millis(left)).await;
                }
            }
            Some(time) => {
                let mut rx = time.subscribe();
                // The sender lives as long as this clock does, so this ends only when the time comes.
                let _ = rx.wait_for(|ms| *ms >= at_ms).await;
            }
        }
    }
}

/// Wall time in ms since the epoch: what the system clock reads, and what
/// is not a node's decision reads directly (reports, names of runs, a
/// client's own timing).
pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_moves_only_when_advanced_and_wakes_its_sleepers() {
        let clock = Clock::manual(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(1_500).await }
        });
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_millis(499));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "woke before its time");
        clock.advance(Duration::from_millis(1));
        sleeper.await.unwrap();
        assert_eq!(clock.now_ms(), 1_500);
    }

    #[tokio::test]
    async fn the_system_clock_reads_wall_time() {
        let clock = Clock::system();
        let before = wall_ms();
        assert!(clock.now_ms() >= before);
        // A time in the past resolves at once.
        clock.sleep_until(before.saturating_sub(1)).await;
    }
}

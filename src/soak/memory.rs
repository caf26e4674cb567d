//! Each node's resident set over a soak, read from
//! `warden_resident_memory_bytes` in its `/metrics` once a second: the
//! first, highest and last sample. A killed node's restarted process goes
//! on in the same row, so only a run without faults measures growth.

use super::workload::{client, Targets};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often each node is sampled.
const EVERY: Duration = Duration::from_secs(1);

/// One node's samples, in bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeMemory {
    pub node: String,
    pub first: u64,
    pub peak: u64,
    pub last: u64,
}

/// The gauge's value in a `/metrics` exposition text.
pub fn resident_in(exposition: &str) -> Option<u64> {
    let value = exposition.lines().find_map(|l| l.strip_prefix("warden_resident_memory_bytes "))?;
    value.trim().parse::<f64>().ok().map(|v| v as u64)
}

/// Samples every node until `stop` turns true (or its sender is dropped),
/// then once more; a node that never answered has no row.
pub fn sample(targets: Targets, names: Vec<String>, mut stop: watch::Receiver<bool>) -> JoinHandle<Vec<NodeMemory>> {
    tokio::spawn(async move {
        let http = client();
        let mut rows: Vec<Option<NodeMemory>> = vec![None; names.len()];
        let mut done = false;
        loop {
            for (i, row) in rows.iter_mut().enumerate() {
                let text = match http.get(format!("{}/metrics", targets.get(i))).send().await {
                    Ok(r) => r.text().await.unwrap_or_default(),
                    Err(_) => continue,
                };
                let Some(bytes) = resident_in(&text) else { continue };
                let row = row.get_or_insert_with(|| NodeMemory {
                    node: names[i].clone(),
                    first: bytes,
                    peak: bytes,
                    last: bytes,
                });
                row.peak = row.peak.max(bytes);
                row.last = bytes;
            }
            if done {
                break;
            }
            done = tokio::select! {
                changed = stop.changed() => changed.is_err() || *stop.borrow(),
                _ = tokio::time::sleep(EVERY) => *stop.borrow(),
            };
        }
        rows.into_iter().flatten().collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauge_is_read_from_the_exposition_text() {
        let text = "# HELP warden_resident_memory_bytes x\n# TYPE warden_resident_memory_bytes gauge\n\
                    warden_resident_memory_bytes 52428800\nwarden_dlq_depth 0\n";
        assert_eq!(resident_in(text), Some(52_428_800));
        assert_eq!(resident_in("warden_dlq_depth 0\n"), None);
    }
}

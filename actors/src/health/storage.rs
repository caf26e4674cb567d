//! The task that reads the data dir's free space on the node's clock and
//! tells the storage gate (`disk::StorageGate`), which admission asks. A
//! crossing of the watermark is logged once: ERROR when new work starts to
//! be refused (an operator must free space), INFO when it is admitted again.
//! Every `[storage] size_every_ms` it also measures the state's tables.

use crate::disk::{free_space, StateSize, Transition};
use crate::runtime::Runtime;
use std::path::PathBuf;
use std::sync::Arc;

/// Checks free space now and then every `storage.check_every`, for as long as the node runs.
pub fn spawn_storage_watch(rt: &Arc<Runtime>, data_dir: PathBuf) {
    let rt = rt.clone();
    let tasks = rt.tasks.clone();
    tasks.spawn_unique("health:storage".into(), async move {
        let every = rt.config.storage.check_every.as_millis() as u64;
        let size_every = rt.config.storage.size_every.as_millis() as u64;
        let gate = rt.ledger.consensus().storage().clone();
        let mut last_probe_error: Option<String> = None;
        let mut next_size_at = 0;
        loop {
            if rt.clock.now_ms() >= next_size_at {
                next_size_at = rt.clock.now_ms().saturating_add(size_every);
                let store = rt.store.clone();
                let measure = move || -> crate::Result<StateSize> {
                    let (tables, oldest_event_ms) = store.state_size()?;
                    let floor = store.retained_floor()?;
                    Ok(StateSize {
                        tables,
                        oldest_event_ms,
                        oldest_event_seq: oldest_event_ms.map(|_| floor),
                        archive: store.archive().map(|a| a.size()).unwrap_or_default(),
                        at_ms: 0,
                    })
                };
                match tokio::task::spawn_blocking(measure).await {
                    Ok(Ok(size)) => gate.measured(size),
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot measure the state's tables"),
                    Err(_) => {}
                }
            }
            let dir = data_dir.clone();
            let space = tokio::task::spawn_blocking(move || free_space(&dir)).await;
            match space {
                Ok(Ok(space)) => {
                    last_probe_error = None;
                    let watermark = &rt.config.storage.watermark;
                    match gate.observe(space, watermark) {
                        Transition::BecameFull => tracing::error!(
                            data_dir = %data_dir.display(),
                            free_bytes = space.free_bytes,
                            watermark_bytes = watermark.threshold(space.total_bytes),
                            "the data dir is under its free-space low watermark: new work is refused (507 \
                             storage_full) until space is freed"
                        ),
                        Transition::Recovered => tracing::info!(
                            free_bytes = space.free_bytes,
                            "the data dir is over its free-space low watermark again: new work is admitted"
                        ),
                        Transition::Unchanged => {}
                    }
                }
                Ok(Err(e)) => {
                    let e = e.to_string();
                    if last_probe_error.as_ref() != Some(&e) {
                        tracing::warn!(data_dir = %data_dir.display(), error = %e, "cannot read the data dir's free space");
                        last_probe_error = Some(e);
                    }
                }
                Err(_) => {}
            }
            rt.clock.sleep_until(rt.clock.now_ms().saturating_add(every)).await;
        }
    });
}

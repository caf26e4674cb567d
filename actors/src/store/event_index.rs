//! The timeline's secondary indexes (`store::index` keys) live in a redb file
//! of their own, beside the node's database, and are written off the log's
//! writer thread: the indexer (`crate::indexer`) catches up from the
//! committed events after each applied batch. Applying a command writes its
//! events once; the 5–8 index rows each event has are written later, by
//! another thread, in another file, in larger transactions.
//!
//! Readers stay exact whatever the indexer's lag: the file records the last
//! seq it has indexed (its watermark), and a query walks the index up to it
//! and the events themselves past it (`IndexView`).
//!
//! The file is derived data. It is not replicated, not in snapshots nor in
//! the state digest, and is rebuilt from the events when it does not match
//! them: the watermark is stored with a fingerprint of the event it names,
//! checked before every catch-up, so a file left from other events (a copied
//! data dir, a volatile node that lost its log tail) starts over.

use super::archive::Archive;
use super::index::keys_of;
use super::index::IndexKey;
use super::tables::{decode_event, load, retained_floor, ACTIONS, EVENTS};
use crate::domain::{Action, Event};
use crate::error::{Result, WardenError};
use redb::{Database, ReadOnlyTable, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::collections::HashMap;
use std::path::Path;

/// `(index key, seq)` rows (`store::index::IndexKey::encode`).
pub const INDEX_ROWS: TableDefinition<(&str, u64), ()> = TableDefinition::new("events_by_key");
/// `through` (the last seq indexed) and `fingerprint` (of that event).
const INDEX_META: TableDefinition<&str, u64> = TableDefinition::new("index_meta");
const THROUGH: &str = "through";
const FINGERPRINT: &str = "fingerprint";
/// Every row of an event below this seq has been removed (`prune`).
const PRUNED: &str = "pruned";

/// Expired events whose rows `prune` lets gather before it walks the table.
pub const PRUNE_AT_LEAST: u64 = 10_000;
/// Rows `prune` holds in memory at once (their keys), to remove them; a
/// few in unit tests, so that their prunes take several chunks.
#[cfg(not(test))]
const PRUNE_CHUNK: usize = 65_536;
#[cfg(test)]
const PRUNE_CHUNK: usize = 7;

/// Events one catch-up transaction indexes at most.
pub const CATCH_UP_BATCH: usize = 8_192;
/// Catch-ups are committed without fsync, and fsync'd every this many: what
/// a crash loses is re-indexed from the events.
const DURABLE_EVERY: u64 = 32;

/// The index file of one node.
pub struct EventIndex {
    db: Database,
    commits: std::sync::atomic::AtomicU64,
}

/// What a catch-up did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaughtUp {
    /// Events indexed by this call.
    pub indexed: usize,
    /// The watermark after it.
    pub through: u64,
    /// The file did not match the events and was emptied first.
    pub reset: bool,
}

impl EventIndex {
    /// Opens (or creates) the index file at `path`, with redb's default
    /// page cache. A file redb cannot open is derived data: it is removed
    /// and started afresh.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_cached(path, None)
    }

    /// `open` with a page cache of `cache` bytes, if given.
    pub fn open_cached(path: &Path, cache: Option<usize>) -> Result<Self> {
        let create = || super::tables::builder(cache).create(path);
        let db = match create() {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(WardenError::Storage(format!("{} is in use by another process", path.display())))
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "the timeline index cannot be opened; rebuilding it");
                std::fs::remove_file(path)
                    .map_err(|e| WardenError::Storage(format!("cannot remove {}: {e}", path.display())))?;
                create()?
            }
        };
        let txn = db.begin_write()?;
        {
            let _ = txn.open_table(INDEX_ROWS)?;
            let _ = txn.open_table(INDEX_META)?;
        }
        txn.commit()?;
        Ok(Self { db, commits: Default::default() })
    }

    /// The index as of now: read it before the events, so the events read
    /// next are at least as new as the watermark.
    pub fn view(&self) -> Result<IndexView> {
        let txn = self.db.begin_read()?;
        let through = txn.open_table(INDEX_META)?.get(THROUGH)?.map_or(0, |g| g.value());
        Ok(IndexView { rows: Some(txn.open_table(INDEX_ROWS)?), through })
    }

    /// Removes the rows of events that expired (those below the state's
    /// oldest retained event), once at least `at_least` of them and half as
    /// many as are retained have expired since the last time: the walk
    /// reads every row, so each row is walked a bounded number of times on
    /// average. Returns how many rows went, if it walked.
    pub fn prune(&self, state: &Database, at_least: u64) -> Result<Option<u64>> {
        let (floor, retained) = {
            let read = state.begin_read()?;
            let events = read.open_table(EVENTS)?;
            (retained_floor(&read, &events)?, events.len()?)
        };
        let txn = self.db.begin_write()?;
        let pruned = txn.open_table(INDEX_META)?.get(PRUNED)?.map_or(0, |g| g.value());
        if floor.saturating_sub(pruned) < at_least.max(retained / 2) {
            txn.abort()?;
            return Ok(None);
        }
        // Found in chunks, then removed one by one: redb's `retain` copies a
        // page path per removed row (it must not change the tree it walks),
        // which grew the file by gigabytes per prune; a plain `remove`
        // changes a page already copied in this transaction in place.
        let mut removed = 0;
        {
            let mut rows = txn.open_table(INDEX_ROWS)?;
            let mut from: Option<(String, u64)> = None;
            loop {
                let mut doomed: Vec<(String, u64)> = Vec::new();
                let range = match &from {
                    Some((key, seq)) => rows.range((key.as_str(), *seq)..)?,
                    None => rows.range::<(&str, u64)>(..)?,
                };
                for row in range {
                    let row = row?;
                    let (key, seq) = row.0.value();
                    if seq < floor {
                        doomed.push((key.to_owned(), seq));
                        if doomed.len() >= PRUNE_CHUNK {
                            break;
                        }
                    }
                }
                for (key, seq) in &doomed {
                    rows.remove((key.as_str(), *seq))?;
                }
                removed += doomed.len() as u64;
                if doomed.len() < PRUNE_CHUNK {
                    break;
                }
                from = doomed.pop();
            }
        }
        txn.open_table(INDEX_META)?.insert(PRUNED, floor)?;
        txn.commit()?;
        Ok(Some(removed))
    }

    /// Rows and bytes of the index table.
    pub fn size(&self) -> Result<(u64, u64)> {
        let rows = self.db.begin_read()?.open_table(INDEX_ROWS)?;
        let stats = rows.stats()?;
        Ok((rows.len()?, stats.stored_bytes() + stats.metadata_bytes() + stats.fragmented_bytes()))
    }

    /// Indexes up to `max` committed events of `state` past the watermark,
    /// in one transaction. Empties the index first if its watermark names an
    /// event `state` does not hold as it was indexed.
    pub fn catch_up(&self, state: &Database, max: usize) -> Result<CaughtUp> {
        // The watermark is read inside the write transaction: two catch-ups
        // (a restarted indexer meeting its predecessor's) take turns.
        let mut txn = self.db.begin_write()?;
        let (mut through, fingerprint) = {
            let meta = txn.open_table(INDEX_META)?;
            let get = |k| -> Result<Option<u64>> { Ok(meta.get(k)?.map(|g| g.value())) };
            (get(THROUGH)?.unwrap_or(0), get(FINGERPRINT)?)
        };
        let read = state.begin_read()?;
        let events = read.open_table(EVENTS)?;
        // The watermark's event is gone: expired (below the retained events,
        // a seq the state has recorded), or a sign of another state (a
        // copied data dir, a volatile node that lost its log's tail).
        let reset = through > 0
            && match events.get(through)? {
                Some(held) => Some(fingerprint_of(held.value())) != fingerprint,
                None => through >= retained_floor(&read, &events)?,
            };
        if reset {
            through = 0;
        }
        let actions = read.open_table(ACTIONS)?;
        let mut keys = StoredKeys::new(&actions);
        let mut rows: Vec<(String, u64)> = Vec::new();
        let mut last: Option<(u64, u64)> = None;
        for row in events.range(through + 1..)?.take(max) {
            let (seq, bytes) = row?;
            let event = decode_event(bytes.value())?;
            rows.extend(keys.of(&event)?.into_iter().map(|k| (k, seq.value())));
            last = Some((seq.value(), fingerprint_of(bytes.value())));
        }
        drop((events, actions, read));
        if last.is_none() && !reset {
            txn.abort()?;
            return Ok(CaughtUp { indexed: 0, through, reset });
        }
        rows.sort_unstable();
        let n = self.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if !n.is_multiple_of(DURABLE_EVERY) {
            txn.set_durability(redb::Durability::None);
        }
        if reset {
            txn.delete_table(INDEX_ROWS)?;
        }
        {
            let mut table = txn.open_table(INDEX_ROWS)?;
            for (key, seq) in &rows {
                table.insert((key.as_str(), *seq), ())?;
            }
            let mut meta = txn.open_table(INDEX_META)?;
            if reset {
                meta.remove(PRUNED)?;
            }
            match last {
                Some((new_through, new_fingerprint)) => {
                    meta.insert(THROUGH, new_through)?;
                    meta.insert(FINGERPRINT, new_fingerprint)?;
                }
                None => {
                    meta.remove(THROUGH)?;
                    meta.remove(FINGERPRINT)?;
                }
            }
        }
        txn.commit()?;
        let new_through = last.map_or(0, |(seq, _)| seq);
        Ok(CaughtUp { indexed: (new_through - through) as usize, through: new_through, reset })
    }
}

/// The index keys of stored events (`keys_of`), each with its action's
/// capability read from the actions table, once per action: what the
/// indexer writes, and what a query checks past the watermark.
pub(super) struct StoredKeys<'t, T> {
    actions: &'t T,
    /// Where an action no longer in `actions` is looked up (expired events).
    archive: Option<&'t Archive>,
    capabilities: HashMap<String, Option<String>>,
}

impl<'t, T: ReadableTable<&'static str, &'static [u8]>> StoredKeys<'t, T> {
    pub(super) fn new(actions: &'t T) -> Self {
        Self { actions, archive: None, capabilities: HashMap::new() }
    }

    /// Also looks up actions that expired in `archive`.
    pub(super) fn with_archive(self, archive: &'t Archive) -> Self {
        Self { archive: Some(archive), ..self }
    }

    /// Every index key of `event`, sorted.
    pub(super) fn of(&mut self, event: &Event) -> Result<Vec<String>> {
        let capability = match &event.action_id {
            Some(id) => self.capability(id.as_str())?,
            None => None,
        };
        Ok(keys_of(event, capability.as_deref()))
    }

    /// The capability of action `id`, read once.
    fn capability(&mut self, id: &str) -> Result<Option<String>> {
        if let Some(known) = self.capabilities.get(id) {
            return Ok(known.clone());
        }
        let cap = match (load::<Action>(self.actions, id)?, self.archive) {
            (Some(action), _) => Some(action.capability),
            (None, Some(archive)) => archive.action(id)?.map(|a| a.capability),
            (None, None) => None,
        };
        self.capabilities.insert(id.to_owned(), cap.clone());
        Ok(cap)
    }

    /// Whether `event` has every key in `wanted`. Its action's capability is
    /// looked up only when a capability key is wanted: the other keys do
    /// not depend on it.
    pub(super) fn has_all(&mut self, event: &Event, wanted: &[String]) -> Result<bool> {
        let cap_prefix = IndexKey::Capability("").encode();
        let own = match wanted.iter().any(|k| k.starts_with(&cap_prefix)) {
            true => self.of(event)?,
            false => keys_of(event, None),
        };
        Ok(wanted.iter().all(|k| own.binary_search(k).is_ok()))
    }
}

/// The first 8 bytes of the SHA-256 of an event as stored.
fn fingerprint_of(bytes: &[u8]) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// One read of the index: the rows, and the last seq they cover. Events
/// past `through` are not in it yet; a query reads them from the events.
pub struct IndexView {
    rows: Option<ReadOnlyTable<(&'static str, u64), ()>>,
    pub through: u64,
}

impl IndexView {
    /// No index at all: every event is past the watermark.
    pub fn none() -> Self {
        Self { rows: None, through: 0 }
    }

    /// The first seq the index does not cover, within `[lo, hi]`.
    pub fn split(&self, lo: u64, hi: u64) -> u64 {
        self.through.saturating_add(1).clamp(lo, hi.max(lo))
    }

    /// The seqs indexed under `key` in `[lo, hi)` (`hi` at most the split), ascending.
    pub fn walk(&self, key: &str, lo: u64, hi: u64) -> Result<Box<dyn Iterator<Item = Result<u64>> + '_>> {
        match &self.rows {
            Some(rows) if lo < hi => {
                let range = rows.range((key, lo)..(key, hi))?;
                Ok(Box::new(range.map(|row| Ok(row?.0.value().1))))
            }
            _ => Ok(Box::new(std::iter::empty())),
        }
    }

    /// Whether the indexed event `seq` has the row `key`.
    pub fn has(&self, key: &str, seq: u64) -> Result<bool> {
        match &self.rows {
            Some(rows) => Ok(rows.get((key, seq))?.is_some()),
            None => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::apply::testing::{allow, entry, open_turn, submit};
    use super::super::tables::META;
    use super::super::{open_database, StateMachine, Store, Tables, TimelinePage, TimelineQuery};
    use super::*;
    use crate::command::Command;
    use crate::domain::AttemptOutcome;
    use crate::ids::*;
    use std::sync::Arc;

    /// A database holding `actions` actions of capabilities `x` and `y`,
    /// each dispatched, half of them failing for good (an incident each).
    fn state(dir: &Path, name: &str, actions: usize) -> Arc<Database> {
        let db = open_database(&dir.join(name)).unwrap();
        let turn = TurnId("turn_1".into());
        let mut cmds = vec![open_turn(&turn)];
        for i in 0..actions {
            let id = ActionId(format!("act_{i:03}"));
            let mut cmd = submit(&id.0, &turn, allow());
            if let Command::SubmitAction { capability, .. } = &mut cmd {
                *capability = if i % 2 == 0 { "x".into() } else { "y".into() };
            }
            cmds.push(cmd);
            cmds.push(Command::Dispatch { action_id: id.clone(), attempt: 1, node: "n".into(), reason: None });
            let outcome = match i % 4 {
                0 | 1 => AttemptOutcome::OK,
                _ => AttemptOutcome::Permanent { error: "no".into() },
            };
            cmds.push(Command::FinishAttempt { action_id: id, attempt: 1, outcome, latency_ms: 1 });
        }
        let txn = db.begin_write().unwrap();
        {
            let mut tables = Tables::open(&txn).unwrap();
            let mut machine = StateMachine { next_seq: 1, ..StateMachine::default() };
            for (i, cmd) in cmds.into_iter().enumerate() {
                machine.apply_at(&mut tables, i as u64 + 1, &entry(cmd)).unwrap().unwrap();
            }
            machine.save(&mut tables).unwrap();
        }
        txn.commit().unwrap();
        Arc::new(db)
    }

    fn queries() -> Vec<TimelineQuery> {
        let q = TimelineQuery::default;
        vec![
            q(),
            TimelineQuery { capability: Some("y".into()), ..q() },
            TimelineQuery { action_id: Some("act_007".into()), ..q() },
            TimelineQuery { kind: Some("action.".into()), capability: Some("x".into()), ..q() },
            TimelineQuery { kind: Some("dlq".into()), ..q() },
            TimelineQuery { incidents_only: true, ..q() },
            TimelineQuery { incidents_only: true, capability: Some("y".into()), after_seq: Some(40), ..q() },
            TimelineQuery { session_id: Some("s".into()), node: Some("n".into()), limit: Some(7), ..q() },
            TimelineQuery { capability: Some("nope".into()), ..q() },
        ]
    }

    /// The same events; the same cursor when the page is full. (An exhausted
    /// walk's cursor is the last seq it looked at, which is further when it
    /// read events past the index: either continues to the same nothing.)
    fn same_page(store: &Store, q: &TimelineQuery, got: &TimelinePage, want: &TimelinePage, at: &str) {
        assert_eq!(got.events, want.events, "{at}: {q:?}");
        if got.events.len() == crate::store::query::clamp_limit(q.limit) {
            assert_eq!(got.next_after, want.next_after, "{at}: {q:?}");
        } else {
            let rest = TimelineQuery { after_seq: got.next_after, ..q.clone() };
            assert!(store.timeline_page(&rest).unwrap().events.is_empty(), "{at}: {q:?}");
        }
    }

    #[test]
    fn a_query_answers_the_same_whatever_the_index_has_reached() {
        let dir = tempfile::tempdir().unwrap();
        let db = state(dir.path(), "s.redb", 24);
        let unindexed = Store::new(db.clone());
        let expected: Vec<_> = queries().iter().map(|q| unindexed.timeline_page(q).unwrap()).collect();
        assert!(expected.iter().all(|p| p.events.len() < 1000));
        assert!(expected[1].events.iter().all(|e| e.action_id.is_some()) && !expected[1].events.is_empty());
        assert!(expected[5].events.len() >= 12, "every failed action is an incident: {:?}", expected[5].events.len());
        assert!(expected[8].events.is_empty());

        let index = Arc::new(EventIndex::open(&dir.path().join("i.redb")).unwrap());
        let store = Store::with_index(db.clone(), index.clone());
        let total = db.begin_read().unwrap().open_table(EVENTS).unwrap().len().unwrap();
        let mut through = 0;
        loop {
            for (q, want) in queries().iter().zip(&expected) {
                same_page(&store, q, &store.timeline_page(q).unwrap(), want, &format!("through {through}"));
            }
            if through == total {
                break;
            }
            let caught = index.catch_up(&db, 17).unwrap();
            assert!(!caught.reset);
            assert_eq!(caught.indexed as u64, 17.min(total - through));
            through = caught.through;
        }
        assert_eq!(index.catch_up(&db, 17).unwrap(), CaughtUp { indexed: 0, through: total, reset: false });
        assert!(index.size().unwrap().0 >= total * 4, "kind, node, session and action at least");
    }

    #[test]
    fn an_index_of_other_events_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let (small, large) = (state(dir.path(), "a.redb", 3), state(dir.path(), "b.redb", 8));
        let index = EventIndex::open(&dir.path().join("i.redb")).unwrap();
        let first = index.catch_up(&large, usize::MAX).unwrap();
        assert!(!first.reset && first.through > 0);
        // The small state has no event at that watermark.
        let second = index.catch_up(&small, usize::MAX).unwrap();
        assert!(second.reset);
        let small_events = small.begin_read().unwrap().open_table(EVENTS).unwrap().len().unwrap();
        assert_eq!(second.through, small_events);
        let store = Store::with_index(small.clone(), Arc::new(index));
        for q in queries() {
            let want = Store::new(small.clone()).timeline_page(&q).unwrap();
            same_page(&store, &q, &store.timeline_page(&q).unwrap(), &want, "rebuilt");
        }
    }

    /// Applies `Expire` to `db` for its oldest `events` events (all recorded at 1,000 ms).
    fn expire(db: &Database, events: u64) {
        let txn = db.begin_write().unwrap();
        let mut machine = StateMachine::load(&txn.open_table(META).unwrap()).unwrap();
        {
            let mut tables = Tables::open(&txn).unwrap();
            let cmd = Command::Expire { before_ms: 1_001, max_events: events, sessions_before_ms: None };
            let index = machine.last_index + 1;
            machine.apply_at(&mut tables, index, &entry(cmd)).unwrap().unwrap();
            machine.save(&mut tables).unwrap();
        }
        txn.commit().unwrap();
    }

    #[test]
    fn the_rows_of_expired_events_are_pruned_once_enough_have_gathered_and_queries_agree() {
        let dir = tempfile::tempdir().unwrap();
        let db = state(dir.path(), "s.redb", 40);
        let index = EventIndex::open(&dir.path().join("i.redb")).unwrap();
        index.catch_up(&db, usize::MAX).unwrap();
        let (rows, _) = index.size().unwrap();
        let total = db.begin_read().unwrap().open_table(EVENTS).unwrap().len().unwrap();
        expire(&db, total / 2);
        let floor = db.begin_read().unwrap().open_table(EVENTS).unwrap().first().unwrap().unwrap().0.value();
        // Expired below the watermark: not a sign of another state.
        assert!(!index.catch_up(&db, usize::MAX).unwrap().reset);
        assert_eq!(index.prune(&db, u64::MAX).unwrap(), None, "too few have expired yet");
        let removed = index.prune(&db, 1).unwrap().expect("half the events expired: it walks");
        assert!(removed > 0);
        assert_eq!(index.size().unwrap().0, rows - removed);
        let read = index.db.begin_read().unwrap();
        let left = read.open_table(INDEX_ROWS).unwrap();
        assert!(left.iter().unwrap().all(|row| row.unwrap().0.value().1 >= floor), "a row below {floor} is left");
        assert_eq!(index.prune(&db, 1).unwrap(), None, "nothing expired since");
        let store = Store::with_index(db.clone(), Arc::new(index));
        for q in queries() {
            let want = Store::new(db.clone()).timeline_page(&q).unwrap();
            same_page(&store, &q, &store.timeline_page(&q).unwrap(), &want, "pruned");
        }
    }
}

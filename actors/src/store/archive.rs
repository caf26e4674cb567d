//! The archive: what retention removed from the replicated state, kept by
//! this node in immutable, checksummed segment files under
//! `<data_dir>/archive/`, so that the timeline, provenance and graph queries
//! still answer for an old incident (they read through to it, `store::query`).
//!
//! One `Expire` command makes one segment, written (and fsync'd) before the
//! removal it records is committed: a crash in between re-applies the command
//! and writes the same segment again, byte for byte. A segment is two files:
//!
//! - `seg-<first seq>-<last seq>.ndjson.zst`: zstd (with its frame checksum),
//!   one JSON object per line, `{"event": …}` (the stored form: header and
//!   typed data), then `{"action": …}` and `{"turn": …}` for the records that
//!   expired with those events;
//! - `seg-<first seq>-<last seq>.json`: its manifest (`SegmentInfo` and
//!   `SegmentIds`): seq and time range, counts, the data file's SHA-256, and
//!   the correlation, action and turn ids it holds. Written last: a data file
//!   without one is an unfinished write, ignored and overwritten.
//!
//! In memory the archive keeps each manifest's ranges and counts and, in
//! place of its id lists, a Bloom filter over them (about two bytes an id,
//! against some sixty for the strings): a query reads a segment only when
//! the filter says it may hold the id, and the segment's records decide.
//!
//! The archive is node-local: a node that joins later, or installs a
//! snapshot, has the retained state and not the archive of the window before.

use super::tables::{StoredEvent, StoredEventRef};
use crate::disk::ArchiveSize;
use crate::domain::{Action, Event, EventData, Turn};
use crate::error::{Result, WardenError};
use fastbloom::BloomFilter;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The archive's directory under a node's data dir.
pub const ARCHIVE_DIR: &str = "archive";

/// zstd's level for segments: its default, fast to write on the log's thread.
const LEVEL: i32 = 3;

/// Decoded segments kept for queries that walk one (a provenance chain reads
/// event after event of the same segment).
const CACHED_SEGMENTS: usize = 2;

/// The id filters' false-positive rate: a lookup among a thousand segments
/// that hold no match reads about one of them for nothing.
const FILTER_FALSE_POSITIVES: f64 = 0.001;
/// The filters' hash seed (fixed: a filter means the same after a restart).
const FILTER_SEED: u128 = 0x77_61_72_64_65_6e;

/// What one `Expire` command removed, in seq order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ArchiveBatch {
    pub events: Vec<Event>,
    pub actions: Vec<Action>,
    pub turns: Vec<Turn>,
}

/// A segment's ranges and counts: its manifest without the id lists.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentInfo {
    pub first_seq: u64,
    pub last_seq: u64,
    pub first_ts: u64,
    pub last_ts: u64,
    pub events: u64,
    pub actions: u64,
    pub turns: u64,
    /// The data file's size, compressed.
    pub bytes: u64,
    /// The data file's SHA-256, hex.
    pub sha256: String,
}

/// The ids a segment holds: the rest of its manifest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SegmentIds {
    /// Correlation ids of its events, sorted.
    pub correlations: Vec<String>,
    /// Ids of the actions its events are about and of its archived actions, sorted.
    pub action_ids: Vec<String>,
    /// Ids of its archived turns, sorted.
    pub turn_ids: Vec<String>,
    /// The correlation ids whose events raised or resolved its alert events, sorted.
    #[serde(default)]
    pub alert_causes: Vec<String>,
}

/// A manifest file: a segment's info, then its ids (one JSON object).
#[derive(Serialize, Deserialize)]
struct Manifest {
    #[serde(flatten)]
    info: SegmentInfo,
    #[serde(flatten)]
    ids: SegmentIds,
}

/// The kinds of id a segment's filter holds, each under its own tag.
#[derive(Clone, Copy)]
enum IdKind {
    Correlation = 1,
    Action,
    Turn,
    AlertCause,
}

/// A segment as the archive holds it: its info and a filter over its ids.
#[derive(Debug)]
pub struct HeldSegment {
    pub info: SegmentInfo,
    ids: BloomFilter,
}

impl HeldSegment {
    fn new(info: SegmentInfo, ids: &SegmentIds) -> Self {
        let tagged = [
            (IdKind::Correlation, &ids.correlations),
            (IdKind::Action, &ids.action_ids),
            (IdKind::Turn, &ids.turn_ids),
            (IdKind::AlertCause, &ids.alert_causes),
        ];
        let count = tagged.iter().map(|(_, list)| list.len()).sum::<usize>();
        let mut filter =
            BloomFilter::with_false_pos(FILTER_FALSE_POSITIVES).seed(&FILTER_SEED).expected_items(count.max(1));
        for (kind, list) in tagged {
            for id in list {
                filter.insert(&(kind as u8, id.as_str()));
            }
        }
        Self { info, ids: filter }
    }

    /// Whether it may hold `id` of `kind` (false: it does not).
    fn may_hold(&self, kind: IdKind, id: &str) -> bool {
        self.ids.contains(&(kind as u8, id))
    }

    /// Whether an event about action `id` (or the action itself) may be in it.
    pub fn has_action(&self, id: &str) -> bool {
        self.may_hold(IdKind::Action, id)
    }

    pub fn has_correlation(&self, id: &str) -> bool {
        self.may_hold(IdKind::Correlation, id)
    }

    pub fn has_turn(&self, id: &str) -> bool {
        self.may_hold(IdKind::Turn, id)
    }

    pub fn has_alert_cause(&self, id: &str) -> bool {
        self.may_hold(IdKind::AlertCause, id)
    }
}

impl SegmentInfo {
    /// The file stem both of its files share.
    pub fn stem(&self) -> String {
        format!("seg-{:020}-{:020}", self.first_seq, self.last_seq)
    }

    pub fn data_file(&self) -> String {
        format!("{}.ndjson.zst", self.stem())
    }

    pub fn manifest_file(&self) -> String {
        format!("{}.json", self.stem())
    }
}

/// A segment's records, decoded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Segment {
    pub events: Vec<Event>,
    pub actions: Vec<Action>,
    pub turns: Vec<Turn>,
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum LineRef<'a> {
    Event(StoredEventRef<'a>),
    Action(&'a Action),
    Turn(&'a Turn),
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Event(StoredEvent),
    Action(Box<Action>),
    Turn(Turn),
}

/// A node's archive directory and the manifests of its segments.
pub struct Archive {
    dir: PathBuf,
    /// Sorted by `first_seq`; segments never overlap.
    segments: RwLock<Vec<Arc<HeldSegment>>>,
    cache: Mutex<Vec<(u64, Arc<Segment>)>>,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> WardenError {
    WardenError::Storage(format!("archive: cannot {what} {}: {e}", path.display()))
}

fn zstd(e: std::io::Error) -> WardenError {
    WardenError::Storage(format!("archive: zstd: {e}"))
}

fn json(e: serde_json::Error) -> WardenError {
    WardenError::Storage(format!("archive: {e}"))
}

fn sorted(ids: impl Iterator<Item = String>) -> Vec<String> {
    ids.collect::<BTreeSet<_>>().into_iter().collect()
}

/// Writes `bytes` to `path` through a temporary file: fsync'd, then renamed.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
    file.write_all(bytes).map_err(|e| io("write", &tmp, e))?;
    file.sync_all().map_err(|e| io("sync", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("rename", &tmp, e))
}

impl Archive {
    /// Opens (or creates) the archive at `dir`, reading every manifest.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
        let mut segments = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| io("list", &dir, e))? {
            let path = entry.map_err(|e| io("list", &dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if !(name.starts_with("seg-") && name.ends_with(".json")) {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| io("read", &path, e))?;
            let manifest: Manifest = serde_json::from_slice(&bytes)
                .map_err(|e| WardenError::Storage(format!("archive: {} is not a manifest: {e}", path.display())))?;
            segments.push(Arc::new(HeldSegment::new(manifest.info, &manifest.ids)));
        }
        segments.sort_by_key(|s| s.info.first_seq);
        Ok(Self { dir, segments: RwLock::new(segments), cache: Mutex::new(Vec::new()) })
    }

    /// Writes `batch` as one segment (nothing for a batch without events).
    /// Deterministic: the same batch writes the same bytes, so writing it
    /// again (a command re-applied after a crash) changes nothing.
    pub fn write(&self, batch: &ArchiveBatch) -> Result<Option<SegmentInfo>> {
        let (Some(first), Some(last)) = (batch.events.first(), batch.events.last()) else { return Ok(None) };
        let mut encoder = zstd::stream::Encoder::new(Vec::new(), LEVEL)
            .and_then(|mut e| e.include_checksum(true).map(|_| e))
            .map_err(zstd)?;
        let mut put = |line: LineRef<'_>| -> Result<()> {
            serde_json::to_writer(&mut encoder, &line).map_err(json)?;
            encoder.write_all(b"\n").map_err(zstd)
        };
        batch.events.iter().try_for_each(|e| put(LineRef::Event(StoredEventRef::of(e))))?;
        batch.actions.iter().try_for_each(|a| put(LineRef::Action(a)))?;
        batch.turns.iter().try_for_each(|t| put(LineRef::Turn(t)))?;
        let data = encoder.finish().map_err(zstd)?;
        // The ids the timeline's action filter and the graph's alert lookup
        // match (`index::keys_of`), so a query reads only the segments that
        // can answer it.
        let mut action_ids: Vec<String> = batch.actions.iter().map(|a| a.id.to_string()).collect();
        let mut alert_causes = Vec::new();
        for event in &batch.events {
            action_ids.extend(event.action_id.as_ref().map(|a| a.to_string()));
            match &event.data {
                EventData::DlqReplayed { action_id, .. } => action_ids.push(action_id.to_string()),
                EventData::AlertRaised { cause, .. } | EventData::AlertResolved { cause, .. } => {
                    alert_causes.push(cause.to_string())
                }
                _ => {}
            }
        }
        let info = SegmentInfo {
            first_seq: first.seq,
            last_seq: last.seq,
            first_ts: first.ts,
            last_ts: last.ts,
            events: batch.events.len() as u64,
            actions: batch.actions.len() as u64,
            turns: batch.turns.len() as u64,
            bytes: data.len() as u64,
            sha256: hex(&Sha256::digest(&data)),
        };
        let ids = SegmentIds {
            correlations: sorted(batch.events.iter().map(|e| e.correlation_id.to_string())),
            action_ids: sorted(action_ids.into_iter()),
            turn_ids: sorted(batch.turns.iter().map(|t| t.id.to_string())),
            alert_causes: sorted(alert_causes.into_iter()),
        };
        let manifest = Manifest { info, ids };
        write_atomically(&self.dir.join(manifest.info.data_file()), &data)?;
        let manifest_bytes = serde_json::to_vec_pretty(&manifest).map_err(json)?;
        write_atomically(&self.dir.join(manifest.info.manifest_file()), &manifest_bytes)?;
        std::fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| io("sync", &self.dir, e))?;
        let held = Arc::new(HeldSegment::new(manifest.info, &manifest.ids));
        let first = held.info.first_seq;
        let mut segments = self.segments.write();
        segments.retain(|s| s.info.first_seq != first);
        let at = segments.partition_point(|s| s.info.first_seq < first);
        segments.insert(at, held.clone());
        Ok(Some(held.info.clone()))
    }

    /// Every segment's info, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.segments.read().iter().map(|s| s.info.clone()).collect()
    }

    pub fn size(&self) -> ArchiveSize {
        let segments = self.segments.read();
        ArchiveSize {
            segments: segments.len() as u64,
            bytes: segments.iter().map(|s| s.info.bytes).sum(),
            events: segments.iter().map(|s| s.info.events).sum(),
            oldest_seq: segments.first().map(|s| s.info.first_seq),
            oldest_ts: segments.first().map(|s| s.info.first_ts),
            newest_seq: segments.last().map(|s| s.info.last_seq),
        }
    }

    /// Reads a segment, checking its data file against the manifest's SHA-256.
    pub fn read(&self, info: &SegmentInfo) -> Result<Arc<Segment>> {
        if let Some((_, hit)) = self.cache.lock().iter().find(|(first, _)| *first == info.first_seq) {
            return Ok(hit.clone());
        }
        let segment = Arc::new(read_segment(&self.dir.join(info.data_file()), &info.sha256)?);
        let mut cache = self.cache.lock();
        if cache.len() >= CACHED_SEGMENTS {
            cache.remove(0);
        }
        cache.push((info.first_seq, segment.clone()));
        Ok(segment)
    }

    fn matching(&self, wanted: impl Fn(&HeldSegment) -> bool) -> Vec<Arc<HeldSegment>> {
        self.segments.read().iter().filter(|s| wanted(s)).cloned().collect()
    }

    /// Walks the archived events with `lo <= seq < hi`, in seq order, over
    /// the segments `wanted` keeps, until `f` answers false.
    pub fn walk(
        &self,
        lo: u64,
        hi: u64,
        wanted: impl Fn(&HeldSegment) -> bool,
        mut f: impl FnMut(&Event) -> Result<bool>,
    ) -> Result<()> {
        for held in self.matching(|s| s.info.last_seq >= lo && s.info.first_seq < hi && wanted(s)) {
            let segment = self.read(&held.info)?;
            for event in segment.events.iter().filter(|e| e.seq >= lo && e.seq < hi) {
                if !f(event)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Archived events with `lo <= seq < hi` that `keep` keeps, over the
    /// segments `wanted` keeps, in seq order, at most `limit`.
    fn collect(
        &self,
        (lo, hi): (u64, u64),
        limit: usize,
        wanted: impl Fn(&HeldSegment) -> bool,
        keep: impl Fn(&Event) -> bool,
    ) -> Result<Vec<Event>> {
        let mut out = Vec::new();
        if limit > 0 {
            self.walk(lo, hi, wanted, |e| {
                if keep(e) {
                    out.push(e.clone());
                }
                Ok(out.len() < limit)
            })?;
        }
        Ok(out)
    }

    /// Archived events with `lo <= seq < hi`, in seq order, at most `limit`.
    pub fn events_between(&self, lo: u64, hi: u64, limit: usize) -> Result<Vec<Event>> {
        self.collect((lo, hi), limit, |_| true, |_| true)
    }

    pub fn event(&self, seq: u64) -> Result<Option<Event>> {
        Ok(self.events_between(seq, seq + 1, 1)?.pop())
    }

    /// Archived events of correlation `id` below seq `hi`, in seq order.
    pub fn events_of_correlation(&self, id: &str, hi: u64, limit: usize) -> Result<Vec<Event>> {
        self.collect((0, hi), limit, |s| s.has_correlation(id), |e| e.correlation_id.as_str() == id)
    }

    /// Archived alert events raised or resolved by an event of correlation
    /// `id`, with `lo <= seq < hi`, in seq order.
    pub fn alerted_by(&self, id: &str, (lo, hi): (u64, u64), limit: usize) -> Result<Vec<Event>> {
        let caused = |e: &Event| match &e.data {
            EventData::AlertRaised { cause, .. } | EventData::AlertResolved { cause, .. } => cause.as_str() == id,
            _ => false,
        };
        self.collect((lo, hi), limit, |s| s.has_alert_cause(id), caused)
    }

    /// The archived record of action `id`, if it expired here.
    pub fn action(&self, id: &str) -> Result<Option<Action>> {
        for held in self.matching(|s| s.info.actions > 0 && s.has_action(id)).iter().rev() {
            if let Some(a) = self.read(&held.info)?.actions.iter().find(|a| a.id.as_str() == id) {
                return Ok(Some(a.clone()));
            }
        }
        Ok(None)
    }

    /// The archived record of turn `id`, if it expired here.
    pub fn turn(&self, id: &str) -> Result<Option<Turn>> {
        for held in self.matching(|s| s.has_turn(id)) {
            if let Some(t) = self.read(&held.info)?.turns.iter().find(|t| t.id.as_str() == id) {
                return Ok(Some(t.clone()));
            }
        }
        Ok(None)
    }

    /// Copies the segments with events in `[from_ms, to_ms)` to `out` (both
    /// files of each, the data checked against its checksum first); returns them.
    pub fn export(&self, from_ms: u64, to_ms: u64, out: &Path) -> Result<Vec<SegmentInfo>> {
        std::fs::create_dir_all(out).map_err(|e| io("create", out, e))?;
        let chosen = self.matching(|s| s.info.last_ts >= from_ms && s.info.first_ts < to_ms);
        for info in chosen.iter().map(|held| &held.info) {
            let (data_file, manifest_file) = (self.dir.join(info.data_file()), self.dir.join(info.manifest_file()));
            let data = std::fs::read(&data_file).map_err(|e| io("read", &data_file, e))?;
            check(&data, &info.sha256, &data_file)?;
            let manifest = std::fs::read(&manifest_file).map_err(|e| io("read", &manifest_file, e))?;
            write_atomically(&out.join(info.data_file()), &data)?;
            write_atomically(&out.join(info.manifest_file()), &manifest)?;
        }
        Ok(chosen.iter().map(|held| held.info.clone()).collect())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check(data: &[u8], sha256: &str, path: &Path) -> Result<()> {
    let actual = hex(&Sha256::digest(data));
    if actual != sha256 {
        return Err(WardenError::Storage(format!(
            "archive: {} is corrupt: its SHA-256 is {actual}, its manifest says {sha256}",
            path.display()
        )));
    }
    Ok(())
}

/// Reads and decodes one data file, checked against `sha256`.
pub fn read_segment(path: &Path, sha256: &str) -> Result<Segment> {
    let data = std::fs::read(path).map_err(|e| io("read", path, e))?;
    check(&data, sha256, path)?;
    let decoder = zstd::stream::Decoder::new(data.as_slice()).map_err(|e| io("decompress", path, e))?;
    let mut segment = Segment::default();
    for line in std::io::BufReader::new(decoder).lines() {
        let line = line.map_err(|e| io("decompress", path, e))?;
        match serde_json::from_str(&line).map_err(json)? {
            Line::Event(e) => segment.events.push(e.into()),
            Line::Action(a) => segment.actions.push(*a),
            Line::Turn(t) => segment.turns.push(t),
        }
    }
    Ok(segment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventData, EventScope, Trust};
    use crate::ids::{CorrelationId, SessionId, TurnId};

    fn event(seq: u64, correlation: &str) -> Event {
        let scope = EventScope::correlated(CorrelationId(correlation.into()));
        let data = EventData::TurnOpened { summary: Some(format!("turn {seq}")), trust: Trust::Normal };
        Event::new(seq, 1_000 + seq, "a".into(), scope, None, None, data)
    }

    fn turn(id: &str) -> Turn {
        Turn {
            id: TurnId(id.into()),
            session_id: SessionId("s".into()),
            correlation_id: CorrelationId("c".into()),
            summary: None,
            opened_ms: 1,
            opened_seq: 1,
        }
    }

    fn batch(seqs: std::ops::Range<u64>) -> ArchiveBatch {
        let events = seqs.map(|s| event(s, if s % 2 == 0 { "even" } else { "odd" })).collect();
        ArchiveBatch { events, actions: Vec::new(), turns: vec![turn("turn_1")] }
    }

    #[test]
    fn a_segment_reads_back_what_was_written_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(dir.path()).unwrap();
        archive.write(&batch(1..11)).unwrap().unwrap();
        archive.write(&batch(11..21)).unwrap().unwrap();
        let archive = Archive::open(dir.path()).unwrap();
        let size = archive.size();
        assert_eq!((size.segments, size.events, size.oldest_seq, size.newest_seq), (2, 20, Some(1), Some(20)));
        let all = archive.events_between(0, u64::MAX, 100).unwrap();
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..21).collect::<Vec<_>>());
        assert_eq!(all[4], event(5, "odd"));
        assert_eq!(archive.events_between(9, 13, 100).unwrap().len(), 4);
        assert_eq!(archive.events_between(0, u64::MAX, 3).unwrap().len(), 3);
        let odd = archive.events_of_correlation("odd", u64::MAX, 100).unwrap();
        assert_eq!(archive.events_of_correlation("odd", 10, 100).unwrap().len(), 5);
        assert_eq!(odd.len(), 10);
        assert!(odd.iter().all(|e| e.seq % 2 == 1));
        assert_eq!(archive.turn("turn_1").unwrap(), Some(turn("turn_1")));
        assert_eq!(archive.turn("turn_2").unwrap(), None);
        assert_eq!(archive.event(15).unwrap().map(|e| e.seq), Some(15));
        assert_eq!(archive.event(21).unwrap(), None);
    }

    #[test]
    fn a_segment_filter_keeps_every_id_it_holds_and_almost_none_it_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(dir.path()).unwrap();
        for n in 0..40u64 {
            let events = (n * 10 + 1..n * 10 + 11).map(|s| event(s, &format!("corr_{s}"))).collect();
            archive
                .write(&ArchiveBatch { events, actions: Vec::new(), turns: vec![turn(&format!("turn_{n}"))] })
                .unwrap();
        }
        // The filters are what the archive holds after a restart, built from the manifests.
        let archive = Archive::open(dir.path()).unwrap();
        let held = archive.segments.read().clone();
        let mut strangers = 0;
        for (n, segment) in held.iter().enumerate() {
            let own = |s: u64| s > n as u64 * 10 && s <= n as u64 * 10 + 10;
            for s in 1..=400u64 {
                let holds = segment.has_correlation(&format!("corr_{s}"));
                assert!(holds || !own(s), "segment {n} lost corr_{s}");
                strangers += usize::from(holds && !own(s));
            }
            assert!(segment.has_turn(&format!("turn_{n}")));
            assert!(!segment.has_correlation(&format!("turn_{n}")), "each kind of id is its own");
        }
        // 40 × 390 lookups of ids a segment does not hold, at a 0.1 % rate: ~16.
        assert!(strangers <= 40, "{strangers} false positives in 15,600 lookups");
        assert_eq!(archive.events_of_correlation("corr_123", u64::MAX, 10).unwrap().len(), 1);
        assert_eq!(archive.turn("turn_39").unwrap().map(|t| t.id.0), Some("turn_39".to_string()));
        // The manifest on disk keeps the id lists themselves.
        let manifest = std::fs::read_to_string(dir.path().join(held[0].info.manifest_file())).unwrap();
        let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
        assert_eq!(manifest["turn_ids"], serde_json::json!(["turn_0"]));
        assert_eq!(manifest["first_seq"], 1);
    }

    #[test]
    fn writing_a_batch_again_writes_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(dir.path()).unwrap();
        let first = archive.write(&batch(1..50)).unwrap().unwrap();
        let bytes = std::fs::read(dir.path().join(first.data_file())).unwrap();
        let again = archive.write(&batch(1..50)).unwrap().unwrap();
        assert_eq!(first, again);
        assert_eq!(std::fs::read(dir.path().join(first.data_file())).unwrap(), bytes);
        assert_eq!(archive.segments().len(), 1);
        assert_eq!(archive.write(&ArchiveBatch::default()).unwrap(), None);
    }

    #[test]
    fn a_corrupt_segment_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(dir.path()).unwrap();
        let info = archive.write(&batch(1..5)).unwrap().unwrap();
        let path = dir.path().join(info.data_file());
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let archive = Archive::open(dir.path()).unwrap();
        let err = archive.events_between(0, 10, 10).unwrap_err().to_string();
        assert!(err.contains("is corrupt") && err.contains(&info.data_file()), "{err}");
        assert!(archive.export(0, u64::MAX, &dir.path().join("out")).is_err());
    }

    #[test]
    fn export_copies_the_segments_of_a_time_window() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(dir.path().join("a")).unwrap();
        archive.write(&batch(1..11)).unwrap();
        archive.write(&batch(11..21)).unwrap();
        // Event times are 1,000 + seq: the second segment spans 1,011..=1,020.
        let out = dir.path().join("cold");
        let copied = archive.export(1_015, 2_000, &out).unwrap();
        assert_eq!(copied.len(), 1);
        let copy = Archive::open(&out).unwrap();
        assert_eq!(copy.events_between(0, u64::MAX, 100).unwrap().len(), 10);
        assert_eq!(copy.segments()[0].first_seq, 11);
    }
}

//! Read-only views of the state. Each call reads one MVCC snapshot, so reads
//! never wait for the log writer and never see half a batch.

use super::archive::{Archive, HeldSegment};
use super::event_index::{EventIndex, IndexView, StoredKeys};
use super::tables::*;
use crate::disk::TableSize;
use crate::domain::*;
use crate::error::Result;
use crate::ids::*;
use crate::limits::{DEFAULT_QUERY_LIMIT, MAX_QUERY_LIMIT};
use redb::{Database, ReadableTable, ReadableTableMetadata};
use std::sync::Arc;

/// Shared read access to a node's database (and its timeline index, and
/// its archive: what retention removed, read through by the queries here).
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    /// None: every timeline query reads the events themselves.
    index: Option<Arc<EventIndex>>,
    /// None: what expired is gone for the queries.
    archive: Option<Arc<Archive>>,
}

/// A memory recall: items of one namespace, filtered, newest first.
#[derive(Clone, Debug, Default)]
pub struct RecallQuery {
    /// Keys starting with this.
    pub prefix: Option<String>,
    /// Items carrying this tag.
    pub tag: Option<String>,
    /// Case-insensitive substring of the key or the value's JSON text.
    pub text: Option<String>,
    pub limit: Option<usize>,
}

/// A slice of the timeline, in log (seq) order, optionally filtered. Every
/// filter given must hold (they combine with AND).
#[derive(Clone, Debug, Default)]
pub struct TimelineQuery {
    /// Events at or after this time (ms since the epoch).
    pub from_ms: Option<u64>,
    /// Events before this time.
    pub to_ms: Option<u64>,
    /// Events with a seq greater than this (a page's `next` cursor sets it).
    pub after_seq: Option<u64>,
    pub limit: Option<usize>,
    /// Events whose kind starts with this (`action.`, `alert.raised`).
    pub kind: Option<String>,
    /// Events recorded by this node or about it (`store::index::keys_of`).
    pub node: Option<String>,
    /// Events about this capability (an action's events carry its capability).
    pub capability: Option<String>,
    pub session_id: Option<String>,
    /// Events about this action (a `dlq.replayed` also counts for the replay's action).
    pub action_id: Option<String>,
    /// Events of this severity (`page`, `ticket`): alerts and the events that raise them.
    pub severity: Option<String>,
    /// Only the incident kinds (`store::index::is_incident`).
    pub incidents_only: bool,
}

/// Index rows one query examines at most before it answers with what it has
/// and a cursor to go on from: a selective filter over a long window returns
/// short (possibly empty) pages rather than one slow answer.
pub const TIMELINE_SCAN_BUDGET: usize = 20_000;

/// The longest chain of causes `Store::incidents` follows back from one event.
pub const MAX_CAUSE_CHAIN: usize = 256;

/// An incident window (`Store::incidents`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Incidents {
    /// The incident events and their causes, in log order, each once.
    pub events: Vec<Event>,
    /// Incident event seq → the seqs of the events that caused it, oldest first.
    pub causes: std::collections::BTreeMap<u64, Vec<u64>>,
    /// As `TimelinePage::next_after`.
    #[serde(skip)]
    pub next_after: Option<u64>,
}

/// One page of a timeline query.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TimelinePage {
    pub events: Vec<Event>,
    /// The seq to continue after (as `after_seq`) for the rest of the
    /// window; none when the window is bounded (`to_ms`) and has no more.
    pub next_after: Option<u64>,
}

/// The smallest retained seq whose event has `ts >= at` (one past the last
/// event if none).
fn first_seq_at(events: &impl ReadableTable<u64, &'static [u8]>, floor: u64, at: u64) -> Result<u64> {
    let Some(last) = events.last()?.map(|(k, _)| k.value()) else { return Ok(floor) };
    let ts_of = |seq: u64| -> Result<u64> {
        let g = events.get(seq)?.ok_or_else(|| crate::WardenError::Storage(format!("event {seq} is missing")))?;
        Ok(decode_event(g.value())?.ts)
    };
    let (mut lo, mut hi) = (floor, last + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if ts_of(mid)? < at {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// How the archived part of a timeline page went.
#[derive(Default)]
struct Archived {
    /// The last archived seq examined.
    last: Option<u64>,
    scanned: usize,
    /// The page is full, or the scan budget spent: it ends here.
    stopped: bool,
}

/// The archived part of a timeline page: expired events with `lo <= seq <
/// floor` that pass `q`'s window and filters, appended to `page` in seq
/// order. Only segments that can hold a match are read (by time, and by
/// action for an action filter); each event is checked against its own
/// index keys (`StoredKeys`, with its action's capability, retained or
/// archived). Archived events count against the scan budget as rows do.
fn archived_page(
    archive: &Archive,
    actions: &impl ReadableTable<&'static str, &'static [u8]>,
    q: &TimelineQuery,
    (keys, kind): (&[String], Option<&str>),
    (lo, floor): (u64, u64),
    limit: usize,
    page: &mut TimelinePage,
) -> Result<Archived> {
    let (from, to) = (q.from_ms.unwrap_or(0), q.to_ms.unwrap_or(u64::MAX));
    let action = q.action_id.as_deref();
    let wanted =
        |s: &HeldSegment| s.info.last_ts >= from && s.info.first_ts < to && action.is_none_or(|a| s.has_action(a));
    let mut stored_keys = StoredKeys::new(actions).with_archive(archive);
    let mut out = Archived::default();
    archive.walk(lo, floor, wanted, |event| {
        if page.events.len() >= limit || out.scanned >= TIMELINE_SCAN_BUDGET {
            out.stopped = true;
            return Ok(false);
        }
        out.scanned += 1;
        out.last = Some(event.seq);
        if event.ts < from || event.ts >= to || !kind.is_none_or(|k| event.kind().as_str().starts_with(k)) {
            return Ok(true);
        }
        if !keys.is_empty() && !stored_keys.has_all(event, keys)? {
            return Ok(true);
        }
        page.events.push(event.clone());
        Ok(true)
    })?;
    Ok(out)
}

pub fn clamp_limit(limit: Option<usize>) -> usize {
    limit.unwrap_or(DEFAULT_QUERY_LIMIT).clamp(1, MAX_QUERY_LIMIT)
}

impl Store {
    /// A store without a timeline index (filtered queries scan the events).
    pub fn new(db: Arc<Database>) -> Self {
        Self { db, index: None, archive: None }
    }

    pub fn with_index(db: Arc<Database>, index: Arc<EventIndex>) -> Self {
        Self { db, index: Some(index), archive: None }
    }

    /// This store, reading through to `archive` for what expired.
    pub fn with_archive(self, archive: Arc<Archive>) -> Self {
        Self { archive: Some(archive), ..self }
    }

    pub fn archive(&self) -> Option<&Arc<Archive>> {
        self.archive.as_ref()
    }

    /// The oldest retained event's seq (`retained_floor`).
    pub fn retained_floor(&self) -> Result<u64> {
        self.read(|r| retained_floor(r, &r.open_table(EVENTS)?))
    }

    /// The time of the oldest retained event, if any.
    pub fn oldest_event_ms(&self) -> Result<Option<u64>> {
        self.read(|r| oldest_event_ts(&r.open_table(EVENTS)?))
    }

    /// An archived event below `floor` (the caller's view of what is retained).
    fn archived_event(&self, seq: u64, floor: u64) -> Result<Option<Event>> {
        match &self.archive {
            Some(archive) if seq < floor => archive.event(seq),
            _ => Ok(None),
        }
    }

    /// Indexes up to `max` committed events the timeline index has not
    /// reached (`EventIndex::catch_up`); none without an index.
    pub fn index_catch_up(&self, max: usize) -> Result<Option<super::CaughtUp>> {
        self.index.as_ref().map(|index| index.catch_up(&self.db, max)).transpose()
    }

    /// Removes the timeline index's rows of expired events, when enough have
    /// gathered (`EventIndex::prune`); how many went, if it walked.
    pub fn index_prune(&self, at_least: u64) -> Result<Option<u64>> {
        Ok(self.index.as_ref().map(|index| index.prune(&self.db, at_least)).transpose()?.flatten())
    }

    /// How many committed events the timeline index has not reached yet, of
    /// how many; none without an index.
    pub fn index_lag(&self) -> Result<Option<(u64, u64)>> {
        let Some(index) = &self.index else { return Ok(None) };
        let through = index.view()?.through;
        let last = self.read(|r| Ok(r.open_table(EVENTS)?.last()?.map_or(0, |(k, _)| k.value())))?;
        Ok(Some((last.saturating_sub(through), last)))
    }

    /// The timeline index as of now; taken before the events are read.
    fn index_view(&self) -> Result<IndexView> {
        match &self.index {
            Some(index) => index.view(),
            None => Ok(IndexView::none()),
        }
    }

    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    fn read<T>(&self, f: impl FnOnce(&redb::ReadTransaction) -> Result<T>) -> Result<T> {
        let txn = self.db.begin_read()?;
        f(&txn)
    }

    /// An action, retained or (read through) archived.
    pub fn action(&self, id: &ActionId) -> Result<Option<Action>> {
        match (self.read(|r| load(&r.open_table(ACTIONS)?, id.as_str()))?, &self.archive) {
            (None, Some(archive)) => archive.action(id.as_str()),
            (found, _) => Ok(found),
        }
    }

    /// A turn, retained or (read through) archived.
    pub fn turn(&self, id: &TurnId) -> Result<Option<Turn>> {
        match (self.read(|r| load(&r.open_table(TURNS)?, id.as_str()))?, &self.archive) {
            (None, Some(archive)) => archive.turn(id.as_str()),
            (found, _) => Ok(found),
        }
    }

    pub fn session(&self, id: &SessionId) -> Result<Option<Session>> {
        self.read(|r| load(&r.open_table(SESSIONS)?, id.as_str()))
    }

    /// How many sessions an `Expire` with this sessions cutoff would remove.
    pub fn expirable_sessions(&self, before_ms: u64) -> Result<usize> {
        self.read(|r| Ok(expirable_sessions(&r.open_table(SESSIONS)?, &r.open_table(TURNS)?, before_ms)?.len()))
    }

    /// Sessions active at or after `since_ms`, most recent first.
    pub fn sessions_active_since(&self, since_ms: u64) -> Result<Vec<Session>> {
        self.read(|r| {
            let mut out = Vec::new();
            for row in r.open_table(SESSIONS)?.iter()? {
                let session: Session = decode(row?.1.value())?;
                if session.last_activity_ms >= since_ms {
                    out.push(session);
                }
            }
            out.sort_by_key(|s| std::cmp::Reverse(s.last_activity_ms));
            Ok(out)
        })
    }

    /// Every action not yet in a terminal state: what a restarted node resumes.
    /// Every non-terminal action's summary, without decoding the actions.
    pub fn active_summaries(&self) -> Result<Vec<ActiveAction>> {
        self.read(|r| {
            let mut out = Vec::new();
            for row in r.open_table(ACTIVE)?.iter()? {
                out.push(decode(row?.1.value())?);
            }
            Ok(out)
        })
    }

    /// Every SLO advisory the log has recorded, with its latest episode.
    pub fn slo_episodes(&self) -> Result<Vec<SloEpisodeState>> {
        use super::apply::slo::{decode_episode, EPISODE_PREFIX};
        self.read(|r| {
            let mut out = Vec::new();
            for row in r.open_table(META)?.range(EPISODE_PREFIX..)? {
                let (k, v) = row?;
                let Some(rest) = k.value().strip_prefix(EPISODE_PREFIX) else { break };
                let Some((capability, advisory)) = rest.rsplit_once(':') else { continue };
                let (episode, open) = decode_episode(v.value());
                out.push(SloEpisodeState { capability: capability.into(), advisory: advisory.into(), episode, open });
            }
            Ok(out)
        })
    }

    /// Every alert's latest episode, as its `alert.*` events tell it.
    pub fn alerts(&self) -> Result<Vec<AlertRecord>> {
        use super::apply::alert::{alert_key, decode_alert, ALERT_PREFIX};
        let mut latest = Vec::new();
        self.read(|r| {
            for row in r.open_table(META)?.range(ALERT_PREFIX..)? {
                let (k, v) = row?;
                let Some(fingerprint) = k.value().strip_prefix(ALERT_PREFIX) else { break };
                latest.push((fingerprint.to_owned(), decode_alert(v.value()).0));
            }
            Ok(())
        })?;
        let mut out = Vec::new();
        for (fingerprint, episode) in latest {
            let events = self.events_by_correlation(&alert_key(&fingerprint, episode), Some(MAX_QUERY_LIMIT))?;
            if let Some(alert) = AlertRecord::from_events(&events) {
                out.push(alert);
            }
        }
        Ok(out)
    }

    /// Every node the topology has a record of (draining or not).
    pub fn nodes(&self) -> Result<Vec<NodeRecord>> {
        self.read(|r| {
            let mut out = Vec::new();
            for row in r.open_table(NODES)?.iter()? {
                out.push(decode(row?.1.value())?);
            }
            Ok(out)
        })
    }

    /// The replicated policy lifecycle: active bundle and history.
    pub fn policy_state(&self) -> Result<PolicyState> {
        self.read(|r| Ok(load(&r.open_table(POLICY)?, POLICY_STATE_KEY)?.unwrap_or_default()))
    }

    /// Audit entries with `seq > after`, oldest first, at most `limit`.
    pub fn policy_audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>> {
        self.read(|r| {
            let mut out = Vec::new();
            for row in r.open_table(POLICY_AUDIT)?.range(after.saturating_add(1)..)?.take(limit) {
                out.push(decode(row?.1.value())?);
            }
            Ok(out)
        })
    }

    /// Names of the nodes being drained: nothing new is dispatched to them.
    pub fn draining(&self) -> Result<std::collections::BTreeSet<String>> {
        Ok(self.nodes()?.into_iter().filter(|n| n.draining).map(|n| n.name).collect())
    }

    /// How many actions are not terminal yet.
    pub fn active_count(&self) -> Result<u64> {
        self.read(|r| Ok(r.open_table(ACTIVE)?.len()?))
    }

    pub fn active_actions(&self) -> Result<Vec<Action>> {
        self.read(|r| {
            let active = r.open_table(ACTIVE)?;
            let actions = r.open_table(ACTIONS)?;
            let mut out = Vec::new();
            for row in active.iter()? {
                let (id, _) = row?;
                if let Some(action) = load::<Action>(&actions, id.value())? {
                    out.push(action);
                }
            }
            Ok(out)
        })
    }

    pub fn dlq_entry(&self, id: &DlqId) -> Result<Option<DlqEntry>> {
        self.read(|r| load(&r.open_table(DLQ)?, id.as_str()))
    }

    /// Dead-letter entries, oldest first; `pending_only` leaves out replayed ones.
    pub fn dlq_entries(&self, pending_only: bool, limit: Option<usize>) -> Result<Vec<DlqEntry>> {
        let limit = clamp_limit(limit);
        self.read(|r| {
            let mut out = Vec::new();
            for row in r.open_table(DLQ)?.iter()? {
                let entry: DlqEntry = decode(row?.1.value())?;
                if !pending_only || entry.replays.is_empty() {
                    out.push(entry);
                }
            }
            out.sort_by_key(|e| e.entered_seq);
            out.truncate(limit);
            Ok(out)
        })
    }

    /// Dead-lettered actions not yet replayed (all of them, no page limit).
    pub fn dlq_depth(&self) -> Result<usize> {
        self.read(|r| {
            let mut depth = 0;
            for row in r.open_table(DLQ)?.iter()? {
                depth += usize::from(decode::<DlqEntry>(row?.1.value())?.replays.is_empty());
            }
            Ok(depth)
        })
    }

    pub fn memory(&self, ns: &str, key: &str) -> Result<Option<MemoryItem>> {
        self.read(|r| match r.open_table(MEMORY)?.get((ns, key))? {
            Some(g) => Ok(Some(decode(g.value())?)),
            None => Ok(None),
        })
    }

    pub fn recall(&self, ns: &str, q: &RecallQuery) -> Result<Vec<MemoryItem>> {
        let limit = clamp_limit(q.limit);
        let text = q.text.as_ref().map(|s| s.to_lowercase());
        self.read(|r| {
            let table = r.open_table(MEMORY)?;
            let start = q.prefix.as_deref().unwrap_or("");
            let mut out = Vec::new();
            for row in table.range((ns, start)..)? {
                let (k, v) = row?;
                let (row_ns, key) = k.value();
                if row_ns != ns || !key.starts_with(start) {
                    break;
                }
                let item: MemoryItem = decode(v.value())?;
                let tag_ok = q.tag.as_ref().is_none_or(|t| item.tags.contains(t));
                let text_ok = text.as_ref().is_none_or(|needle| {
                    item.key.to_lowercase().contains(needle) || item.value.to_string().to_lowercase().contains(needle)
                });
                if tag_ok && text_ok {
                    out.push(item);
                }
            }
            out.sort_by(|a, b| b.updated_ms.cmp(&a.updated_ms).then_with(|| a.key.cmp(&b.key)));
            out.truncate(limit);
            Ok(out)
        })
    }

    /// An event, retained or (read through) archived.
    pub fn event(&self, seq: u64) -> Result<Option<Event>> {
        self.read(|r| {
            let events = r.open_table(EVENTS)?;
            match events.get(seq)? {
                Some(g) => Ok(Some(decode_event(g.value())?)),
                None => self.archived_event(seq, retained_floor(r, &events)?),
            }
        })
    }

    /// Events in log order, by seq and/or by time window.
    pub fn timeline(&self, q: &TimelineQuery) -> Result<Vec<Event>> {
        Ok(self.timeline_page(q)?.events)
    }

    /// One page of the timeline: events in log order within the query's seq
    /// and time window that pass every filter. The most selective filter's
    /// index drives the walk (action, session, capability, severity, node,
    /// then kind; the incident index for `incidents_only`); the other filters
    /// are checked against their own index rows. Expired events come first,
    /// from the archive (`archived_page`), in the same order.
    pub fn timeline_page(&self, q: &TimelineQuery) -> Result<TimelinePage> {
        use super::index::IndexKey;
        let limit = clamp_limit(q.limit);
        let index = self.index_view()?;
        self.read(|r| {
            let events = r.open_table(EVENTS)?;
            let actions = r.open_table(ACTIONS)?;
            let floor = retained_floor(r, &events)?;
            let mut keys: Vec<String> = Vec::new();
            let filters = [
                q.action_id.as_deref().map(IndexKey::Action),
                q.session_id.as_deref().map(IndexKey::Session),
                q.capability.as_deref().map(IndexKey::Capability),
                q.severity.as_deref().map(IndexKey::Severity),
                q.node.as_deref().map(IndexKey::Node),
            ];
            keys.extend(filters.iter().flatten().map(IndexKey::encode));
            if q.incidents_only {
                keys.push(IndexKey::Incident.encode());
            }
            let kind = q.kind.as_deref().filter(|k| !k.is_empty());
            let start = q.after_seq.unwrap_or(0).saturating_add(1);
            let mut page = TimelinePage::default();
            let mut archived = Archived::default();
            if let (Some(archive), true) = (&self.archive, start < floor) {
                archived = archived_page(archive, &actions, q, (&keys, kind), (start, floor), limit, &mut page)?;
                if archived.stopped {
                    page.next_after = archived.last;
                    return Ok(page);
                }
            }
            // Event time is non-decreasing in seq (see StateMachine::last_ts):
            // the window is one contiguous seq range, found by binary search.
            let mut lo = start.max(floor);
            if let Some(from) = q.from_ms {
                lo = lo.max(first_seq_at(&events, floor, from)?);
            }
            let hi = match q.to_ms {
                Some(to) => first_seq_at(&events, floor, to)?.max(lo),
                None => u64::MAX,
            };
            // Seqs below `split` are indexed; from it on, the events are read
            // and checked against the filters one by one.
            let split = index.split(lo, hi);
            let indexed: Box<dyn Iterator<Item = Result<u64>> + '_> = match (keys.first(), kind) {
                (Some(key), _) => index.walk(key, lo, split)?,
                (None, Some(prefix)) => {
                    let mut walks = Vec::new();
                    for k in EventKind::ALL.iter().filter(|k| k.as_str().starts_with(prefix)) {
                        walks.push(index.walk(&IndexKey::Kind(k.as_str()).encode(), lo, split)?);
                    }
                    Box::new(merge_ascending(walks))
                }
                (None, None) => Box::new(events.range(lo..split)?.map(|row| Ok(row?.0.value()))),
            };
            let tail = events.range(split..hi.max(split))?.map(|row| Ok(row?.0.value()));
            let mut stored_keys = StoredKeys::new(&actions);
            let mut last = archived.last.unwrap_or(lo - 1);
            let mut exhausted = true;
            for (scanned, seq) in indexed.chain(tail).enumerate() {
                if page.events.len() >= limit || archived.scanned + scanned >= TIMELINE_SCAN_BUDGET {
                    exhausted = false;
                    break;
                }
                let seq = seq?;
                last = seq;
                let event = if seq < split {
                    let mut pass = true;
                    for key in keys.iter().skip(1) {
                        if !index.has(key, seq)? {
                            pass = false;
                            break;
                        }
                    }
                    if !pass {
                        continue;
                    }
                    let Some(g) = events.get(seq)? else { continue };
                    decode_event(g.value())?
                } else {
                    let Some(g) = events.get(seq)? else { continue };
                    let event = decode_event(g.value())?;
                    if !keys.is_empty() && !stored_keys.has_all(&event, &keys)? {
                        continue;
                    }
                    event
                };
                if kind.is_none_or(|k| event.kind().as_str().starts_with(k)) {
                    page.events.push(event);
                }
            }
            page.next_after = if exhausted && q.to_ms.is_some() { None } else { Some(last) };
            Ok(page)
        })
    }

    /// An incident window: the incident events of `q` (its window and
    /// filters, `incidents_only` set) and, for each, the chain of events that
    /// caused it (a failed action's back to its turn, an alert's to the event
    /// that raised it), merged into one stream in log order. `causes` maps
    /// each incident event that has causes to their seqs, oldest first.
    pub fn incidents(&self, q: &TimelineQuery) -> Result<Incidents> {
        let page = self.timeline_page(&TimelineQuery { incidents_only: true, ..q.clone() })?;
        self.read(|r| {
            let events = r.open_table(EVENTS)?;
            let floor = retained_floor(r, &events)?;
            let mut all: std::collections::BTreeMap<u64, Event> = std::collections::BTreeMap::new();
            let mut causes = std::collections::BTreeMap::new();
            for event in page.events {
                let mut chain = Vec::new();
                let mut next = event.causation_seq;
                while let Some(seq) = next {
                    if chain.len() >= MAX_CAUSE_CHAIN {
                        break;
                    }
                    let cause = match all.get(&seq) {
                        Some(known) => known.clone(),
                        None => match events.get(seq)? {
                            Some(g) => decode_event(g.value())?,
                            None => match self.archived_event(seq, floor)? {
                                Some(archived) => archived,
                                None => break,
                            },
                        },
                    };
                    next = cause.causation_seq.filter(|c| *c < seq);
                    chain.push(seq);
                    all.insert(seq, cause);
                }
                if !chain.is_empty() {
                    chain.reverse();
                    causes.insert(event.seq, chain);
                }
                all.insert(event.seq, event);
            }
            Ok(Incidents { events: all.into_values().collect(), causes, next_after: page.next_after })
        })
    }

    /// The alert events raised or resolved by events of correlation `id`,
    /// within `q`'s window, in log order.
    pub fn alerted_by(&self, id: &CorrelationId, q: &TimelineQuery) -> Result<Vec<Event>> {
        let limit = clamp_limit(q.limit);
        let key = super::index::IndexKey::AlertedBy(id.as_str()).encode();
        let index = self.index_view()?;
        self.read(|r| {
            let events = r.open_table(EVENTS)?;
            let floor = retained_floor(r, &events)?;
            let start = q.after_seq.unwrap_or(0).saturating_add(1);
            let mut out = match &self.archive {
                Some(archive) if start < floor => archive.alerted_by(id.as_str(), (start, floor), limit)?,
                _ => Vec::new(),
            };
            let lo = start.max(floor);
            let split = index.split(lo, u64::MAX);
            for seq in index.walk(&key, lo, split)? {
                if out.len() >= limit {
                    break;
                }
                if let Some(g) = events.get(seq?)? {
                    out.push(decode_event(g.value())?);
                }
            }
            // Past the index: each event checked for the same key.
            let actions = r.open_table(ACTIONS)?;
            let mut stored_keys = StoredKeys::new(&actions);
            let wanted = [key];
            for row in events.range(split..)? {
                if out.len() >= limit {
                    break;
                }
                let event = decode_event(row?.1.value())?;
                if stored_keys.has_all(&event, &wanted)? {
                    out.push(event);
                }
            }
            Ok(out)
        })
    }

    /// Every event of one correlation id, in log order.
    pub fn events_by_correlation(&self, id: &CorrelationId, limit: Option<usize>) -> Result<Vec<Event>> {
        let limit = clamp_limit(limit);
        self.read(|r| {
            let events = r.open_table(EVENTS)?;
            let mut out = match &self.archive {
                Some(archive) => archive.events_of_correlation(id.as_str(), retained_floor(r, &events)?, limit)?,
                None => Vec::new(),
            };
            let index = r.open_table(EVENTS_BY_CORRELATION)?;
            for row in index.range((id.as_str(), 0)..=(id.as_str(), u64::MAX))?.take(limit - out.len()) {
                let (_, seq) = row?.0.value();
                if let Some(g) = events.get(seq)? {
                    out.push(decode_event(g.value())?);
                }
            }
            Ok(out)
        })
    }

    /// Index of the last command in the log.
    pub fn last_index(&self) -> Result<u64> {
        self.read(|r| Ok(r.open_table(META)?.get(META_LAST_INDEX)?.map_or(0, |g| g.value())))
    }
}

/// Merges ascending seq walks into one ascending walk.
fn merge_ascending<'t, I: Iterator<Item = Result<u64>> + 't>(walks: Vec<I>) -> impl Iterator<Item = Result<u64>> + 't {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut walks: Vec<I> = walks;
    let mut heap = BinaryHeap::new();
    let mut failed: Option<crate::WardenError> = None;
    for (i, w) in walks.iter_mut().enumerate() {
        match w.next() {
            Some(Ok(seq)) => heap.push(Reverse((seq, i))),
            Some(Err(e)) => failed = Some(e),
            None => {}
        }
    }
    std::iter::from_fn(move || {
        if let Some(e) = failed.take() {
            return Some(Err(e));
        }
        let Reverse((seq, i)) = heap.pop()?;
        match walks[i].next() {
            Some(Ok(next)) => heap.push(Reverse((next, i))),
            Some(Err(e)) => failed = Some(e),
            None => {}
        }
        Some(Ok(seq))
    })
}

impl Store {
    /// Rows and bytes of every table of the file (the Raft log and its meta
    /// included) and of the timeline index's file, and the time of the
    /// oldest event held. Walks every table:
    /// for the storage watch's slow cadence, not for requests.
    pub fn state_size(&self) -> Result<(Vec<TableSize>, Option<u64>)> {
        fn size<T: ReadableTableMetadata>(name: &str, t: &T) -> Result<TableSize> {
            let stats = t.stats()?;
            let bytes = stats.stored_bytes() + stats.metadata_bytes() + stats.fragmented_bytes();
            Ok(TableSize { table: name.to_owned(), rows: t.len()?, bytes })
        }
        self.read(|r| {
            let mut tables = Vec::new();
            tables.push(size("log", &r.open_table(LOG)?)?);
            tables.push(size("raft_meta", &r.open_table(RAFT_META)?)?);
            tables.push(size("meta", &r.open_table(META)?)?);
            for (name, def) in [
                ("sessions", SESSIONS),
                ("turns", TURNS),
                ("actions", ACTIONS),
                ("active_actions", ACTIVE),
                ("dlq", DLQ),
                ("nodes", NODES),
            ] {
                tables.push(size(name, &r.open_table(def)?)?);
            }
            tables.push(size("idempotency", &r.open_table(IDEMPOTENCY)?)?);
            tables.push(size("memory", &r.open_table(MEMORY)?)?);
            let events = r.open_table(EVENTS)?;
            tables.push(size("events", &events)?);
            tables.push(size("events_by_correlation", &r.open_table(EVENTS_BY_CORRELATION)?)?);
            let oldest = oldest_event_ts(&events)?;
            if let Some(index) = &self.index {
                let (rows, bytes) = index.size()?;
                tables.push(TableSize { table: "events_by_key".into(), rows, bytes });
            }
            Ok((tables, oldest))
        })
    }

    /// SHA-256 over every state table (not the log): equal digests mean equal
    /// state. Replicas compare it to prove they converged.
    pub fn state_digest(&self) -> Result<String> {
        Ok(self.digest_at()?.1)
    }

    /// The log index the state has applied, and the state's digest, from one
    /// snapshot: replicas at the same index must have the same digest.
    pub fn digest_at(&self) -> Result<(u64, String)> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let mut feed = |name: &str, k: &[u8], v: &[u8]| {
            for part in [name.as_bytes(), k, v] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part);
            }
        };
        let index = self.read(|r| {
            let index = r.open_table(META)?.get(META_LAST_INDEX)?.map_or(0, |g| g.value());
            let tables = [
                ("sessions", SESSIONS),
                ("turns", TURNS),
                ("actions", ACTIONS),
                ("dlq", DLQ),
                ("nodes", NODES),
                ("policy", POLICY),
            ];
            for (name, def) in tables {
                for row in r.open_table(def)?.iter()? {
                    let (k, v) = row?;
                    feed(name, k.value().as_bytes(), v.value());
                }
            }
            for row in r.open_table(ACTIVE)?.iter()? {
                let (k, v) = row?;
                feed("active", k.value().as_bytes(), v.value());
            }
            for row in r.open_table(IDEMPOTENCY)?.iter()? {
                let (k, v) = row?;
                feed("idempotency", k.value().as_bytes(), v.value().as_bytes());
            }
            for row in r.open_table(MEMORY)?.iter()? {
                let (k, v) = row?;
                let (ns, key) = k.value();
                feed("memory", format!("{ns}\0{key}").as_bytes(), v.value());
            }
            for row in r.open_table(EVENTS)?.iter()? {
                let (k, v) = row?;
                feed("events", &k.value().to_be_bytes(), v.value());
            }
            for row in r.open_table(POLICY_AUDIT)?.iter()? {
                let (k, v) = row?;
                feed("policy_audit", &k.value().to_be_bytes(), v.value());
            }
            Ok(index)
        })?;
        Ok((index, format!("{:x}", h.finalize())))
    }

    /// Up to `limit` rows of the Raft log from `from_index` on, as stored
    /// (consensus decodes them: the store does not know openraft's types).
    pub fn raw_log(&self, from_index: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        self.read(|r| {
            let mut out = Vec::new();
            for row in r.open_table(LOG)?.range(from_index..)?.take(limit) {
                let (k, v) = row?;
                out.push((k.value(), v.value().to_vec()));
            }
            Ok(out)
        })
    }
}

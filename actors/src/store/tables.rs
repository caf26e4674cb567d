//! Table layout. Records are MessagePack (named fields, so they evolve).

use crate::domain::*;
use crate::error::Result;
use crate::ids::*;
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::path::Path;

type Bytes = &'static [u8];

/// openraft's log: index → entry.
pub const LOG: TableDefinition<u64, Bytes> = TableDefinition::new("log");
/// openraft's vote, committed and purged log ids, applied state, snapshot.
pub const RAFT_META: TableDefinition<&str, Bytes> = TableDefinition::new("raft_meta");
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub const SESSIONS: TableDefinition<&str, Bytes> = TableDefinition::new("sessions");
pub const TURNS: TableDefinition<&str, Bytes> = TableDefinition::new("turns");
pub const ACTIONS: TableDefinition<&str, Bytes> = TableDefinition::new("actions");
/// Non-terminal actions, each with its `ActiveAction` summary: what the
/// dispatcher scans.
pub const ACTIVE: TableDefinition<&str, Bytes> = TableDefinition::new("active_actions");
/// Idempotency key → the latest action carrying it.
pub const IDEMPOTENCY: TableDefinition<&str, &str> = TableDefinition::new("idempotency");
pub const DLQ: TableDefinition<&str, Bytes> = TableDefinition::new("dlq");
/// Node name → `NodeRecord` (topology decisions such as draining).
pub const NODES: TableDefinition<&str, Bytes> = TableDefinition::new("nodes");
pub const MEMORY: TableDefinition<(&str, &str), Bytes> = TableDefinition::new("memory");
pub const EVENTS: TableDefinition<u64, Bytes> = TableDefinition::new("events");
pub const EVENTS_BY_CORRELATION: TableDefinition<(&str, u64), ()> = TableDefinition::new("events_by_correlation");
/// Where the timeline's indexes were kept before they moved to their own
/// file (`store::event_index`): deleted when a database is opened.
const LEGACY_EVENTS_BY_KEY: TableDefinition<(&str, u64), ()> = TableDefinition::new("events_by_key");
/// The policy lifecycle: `POLICY_STATE_KEY` → `PolicyState` (active bundle, history).
pub const POLICY: TableDefinition<&str, Bytes> = TableDefinition::new("policy");
/// The audit trail of policy mutations: seq → `AuditEntry` (hash-chained).
pub const POLICY_AUDIT: TableDefinition<u64, Bytes> = TableDefinition::new("policy_audit");
pub const POLICY_STATE_KEY: &str = "state";
/// The active bundle's hash alone, read by every submission.
pub const POLICY_ACTIVE_HASH_KEY: &str = "active_hash";

pub const META_LAST_INDEX: &str = "last_index";
pub const META_NEXT_SEQ: &str = "next_seq";
pub const META_LAST_TS: &str = "last_ts";

/// Opens (or creates) the database and makes sure every table exists, so
/// readers never meet a missing table; redb's default page cache.
pub fn open_database(path: &Path) -> Result<Database> {
    open_database_cached(path, None)
}

/// A redb builder with a page cache of `cache` bytes, if given (else redb's default).
pub(crate) fn builder(cache: Option<usize>) -> redb::Builder {
    let mut builder = redb::Builder::new();
    if let Some(bytes) = cache {
        builder.set_cache_size(bytes);
    }
    builder
}

/// `open_database` with a page cache of `cache` bytes, if given.
pub fn open_database_cached(path: &Path, cache: Option<usize>) -> Result<Database> {
    let db = builder(cache).create(path)?;
    let txn = db.begin_write()?;
    {
        let _ = txn.open_table(LOG)?;
        let _ = txn.open_table(RAFT_META)?;
        let _ = txn.open_table(META)?;
        let _ = txn.open_table(SESSIONS)?;
        let _ = txn.open_table(TURNS)?;
        let _ = txn.open_table(ACTIONS)?;
        let _ = txn.open_table(ACTIVE)?;
        let _ = txn.open_table(IDEMPOTENCY)?;
        let _ = txn.open_table(DLQ)?;
        let _ = txn.open_table(NODES)?;
        let _ = txn.open_table(MEMORY)?;
        let _ = txn.open_table(EVENTS)?;
        let _ = txn.open_table(EVENTS_BY_CORRELATION)?;
        let _ = txn.open_table(POLICY)?;
        let _ = txn.open_table(POLICY_AUDIT)?;
    }
    // The timeline index was kept here before it moved to its own file
    // (`store::event_index`); its rows are dropped from this one.
    txn.delete_table(LEGACY_EVENTS_BY_KEY)?;
    txn.commit()?;
    Ok(db)
}

/// Every table, opened once per write transaction (opening per command would
/// cost more than the inserts). The state machine reads and writes through
/// its typed methods, and every write is counted, so that `apply` can assert
/// that a rejected command wrote nothing.
pub struct Tables<'t> {
    meta: redb::Table<'t, &'static str, u64>,
    sessions: redb::Table<'t, &'static str, Bytes>,
    turns: redb::Table<'t, &'static str, Bytes>,
    actions: redb::Table<'t, &'static str, Bytes>,
    active: redb::Table<'t, &'static str, Bytes>,
    idempotency: redb::Table<'t, &'static str, &'static str>,
    dlq: redb::Table<'t, &'static str, Bytes>,
    nodes: redb::Table<'t, &'static str, Bytes>,
    memory: redb::Table<'t, (&'static str, &'static str), Bytes>,
    events: redb::Table<'t, u64, Bytes>,
    events_by_correlation: redb::Table<'t, (&'static str, u64), ()>,
    policy: redb::Table<'t, &'static str, Bytes>,
    policy_audit: redb::Table<'t, u64, Bytes>,
    writes: u64,
}

impl<'t> Tables<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<Self> {
        Ok(Self {
            meta: txn.open_table(META)?,
            sessions: txn.open_table(SESSIONS)?,
            turns: txn.open_table(TURNS)?,
            actions: txn.open_table(ACTIONS)?,
            active: txn.open_table(ACTIVE)?,
            idempotency: txn.open_table(IDEMPOTENCY)?,
            dlq: txn.open_table(DLQ)?,
            nodes: txn.open_table(NODES)?,
            memory: txn.open_table(MEMORY)?,
            events: txn.open_table(EVENTS)?,
            events_by_correlation: txn.open_table(EVENTS_BY_CORRELATION)?,
            policy: txn.open_table(POLICY)?,
            policy_audit: txn.open_table(POLICY_AUDIT)?,
            writes: 0,
        })
    }

    /// How many writes went through these tables since they were opened.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    pub fn session(&self, id: &SessionId) -> Result<Option<Session>> {
        load(&self.sessions, id.as_str())
    }

    pub fn turn(&self, id: &TurnId) -> Result<Option<Turn>> {
        load(&self.turns, id.as_str())
    }

    pub fn action(&self, id: &ActionId) -> Result<Option<Action>> {
        load(&self.actions, id.as_str())
    }

    pub fn has_action(&self, id: &ActionId) -> Result<bool> {
        Ok(self.actions.get(id.as_str())?.is_some())
    }

    /// The latest action carrying `key`.
    pub fn action_with_key(&self, key: &IdempotencyKey) -> Result<Option<Action>> {
        let Some(id) = self.idempotency.get(key.0.as_str())?.map(|g| g.value().to_owned()) else {
            return Ok(None);
        };
        load(&self.actions, &id)
    }

    pub fn dlq_entry(&self, id: &DlqId) -> Result<Option<DlqEntry>> {
        load(&self.dlq, id.as_str())
    }

    pub fn node(&self, name: &str) -> Result<Option<NodeRecord>> {
        load(&self.nodes, name)
    }

    pub fn memory_item(&self, ns: &str, key: &str) -> Result<Option<MemoryItem>> {
        self.memory.get((ns, key))?.map(|g| decode(g.value())).transpose()
    }

    /// The hash of the bundle the cluster activated last (none before the first).
    pub fn active_policy_hash(&self) -> Result<Option<String>> {
        load(&self.policy, POLICY_ACTIVE_HASH_KEY)
    }

    pub fn policy_state(&self) -> Result<PolicyState> {
        Ok(load(&self.policy, POLICY_STATE_KEY)?.unwrap_or_default())
    }

    /// The newest entry of the audit trail.
    pub fn last_audit_entry(&self) -> Result<Option<AuditEntry>> {
        self.policy_audit.last()?.map(|(_, v)| decode(v.value())).transpose()
    }

    pub fn meta(&self, key: &str) -> Result<Option<u64>> {
        Ok(self.meta.get(key)?.map(|g| g.value()))
    }

    pub fn put_meta(&mut self, key: &str, value: u64) -> Result<()> {
        self.writes += 1;
        self.meta.insert(key, value)?;
        Ok(())
    }

    pub fn put_session(&mut self, session: &Session) -> Result<()> {
        self.writes += 1;
        store(&mut self.sessions, session.id.as_str(), session)
    }

    pub fn put_turn(&mut self, turn: &Turn) -> Result<()> {
        self.writes += 1;
        store(&mut self.turns, turn.id.as_str(), turn)
    }

    /// Writes the action and keeps the index of non-terminal actions in step
    /// (an action enters it once, when created, and leaves it once, when terminal).
    pub fn put_action(&mut self, action: &Action) -> Result<()> {
        self.writes += 1;
        store(&mut self.actions, action.id.as_str(), action)?;
        if action.state.is_terminal() {
            self.active.remove(action.id.as_str())?;
            Ok(())
        } else {
            store(&mut self.active, action.id.as_str(), &ActiveAction::of(action))
        }
    }

    /// Makes `id` the latest action carrying `key`.
    pub fn put_idempotency_key(&mut self, key: &IdempotencyKey, id: &ActionId) -> Result<()> {
        self.writes += 1;
        self.idempotency.insert(key.0.as_str(), id.as_str())?;
        Ok(())
    }

    pub fn put_dlq_entry(&mut self, entry: &DlqEntry) -> Result<()> {
        self.writes += 1;
        store(&mut self.dlq, entry.id.as_str(), entry)
    }

    pub fn put_node(&mut self, record: &NodeRecord) -> Result<()> {
        self.writes += 1;
        store(&mut self.nodes, record.name.as_str(), record)
    }

    pub fn put_memory_item(&mut self, item: &MemoryItem) -> Result<()> {
        self.writes += 1;
        self.memory.insert((item.ns.as_str(), item.key.as_str()), encode(item)?.as_slice())?;
        Ok(())
    }

    /// Writes the policy state and, beside it, the active hash.
    pub fn put_policy_state(&mut self, state: &PolicyState) -> Result<()> {
        self.writes += 1;
        store(&mut self.policy, POLICY_STATE_KEY, state)?;
        match &state.active {
            Some(active) => store(&mut self.policy, POLICY_ACTIVE_HASH_KEY, &active.hash),
            None => Ok(()),
        }
    }

    pub fn put_audit_entry(&mut self, entry: &AuditEntry) -> Result<()> {
        self.writes += 1;
        self.policy_audit.insert(entry.seq, encode(entry)?.as_slice())?;
        Ok(())
    }

    /// The oldest events still held, in seq order, at most `limit`, while
    /// `take` says so.
    pub fn oldest_events(&self, limit: usize, take: impl Fn(&Event) -> bool) -> Result<Vec<Event>> {
        let mut out = Vec::new();
        for row in self.events.iter()?.take(limit) {
            let event = decode_event(row?.1.value())?;
            if !take(&event) {
                break;
            }
            out.push(event);
        }
        Ok(out)
    }

    /// The seq of the oldest event still held.
    pub fn first_event_seq(&self) -> Result<Option<u64>> {
        Ok(self.events.first()?.map(|(k, _)| k.value()))
    }

    /// Every DLQ entry (retention keeps what they refer to).
    pub fn dlq_entries(&self) -> Result<Vec<DlqEntry>> {
        self.dlq.iter()?.map(|row| decode(row?.1.value())).collect()
    }

    /// The ids of the non-terminal actions.
    pub fn active_ids(&self) -> Result<Vec<ActionId>> {
        self.active.iter()?.map(|row| Ok(ActionId(row?.0.value().to_owned()))).collect()
    }

    /// Removes an expired event and its entry in the index by correlation id.
    pub fn remove_event(&mut self, event: &Event) -> Result<()> {
        self.writes += 1;
        self.events.remove(event.seq)?;
        self.events_by_correlation.remove((event.correlation_id.as_str(), event.seq))?;
        Ok(())
    }

    /// Removes an expired (terminal) action, and its idempotency key if the
    /// key still names it.
    pub fn remove_action(&mut self, action: &Action) -> Result<()> {
        self.writes += 1;
        self.actions.remove(action.id.as_str())?;
        self.active.remove(action.id.as_str())?;
        let key = action.idempotency_key.0.as_str();
        if self.idempotency.get(key)?.is_some_and(|g| g.value() == action.id.as_str()) {
            self.idempotency.remove(key)?;
        }
        Ok(())
    }

    /// Whether an event of correlation `id` with a seq after `after` is held.
    pub fn has_events_of_correlation_after(&self, id: &CorrelationId, after: u64) -> Result<bool> {
        let mut rows =
            self.events_by_correlation.range((id.as_str(), after.saturating_add(1))..=(id.as_str(), u64::MAX))?;
        Ok(rows.next().transpose()?.is_some())
    }

    /// The sessions retention may remove (`expirable_sessions`).
    pub fn expirable_sessions(&self, before_ms: u64) -> Result<Vec<SessionId>> {
        expirable_sessions(&self.sessions, &self.turns, before_ms)
    }

    pub fn remove_session(&mut self, id: &SessionId) -> Result<()> {
        self.writes += 1;
        self.sessions.remove(id.as_str())?;
        Ok(())
    }

    pub fn remove_turn(&mut self, id: &TurnId) -> Result<()> {
        self.writes += 1;
        self.turns.remove(id.as_str())?;
        Ok(())
    }

    /// Writes the event and its entry in the index by correlation id (the
    /// timeline's other indexes are written later: `store::event_index`).
    pub fn put_event(&mut self, event: &Event) -> Result<()> {
        self.writes += 1;
        self.events.insert(event.seq, encode_event(event)?.as_slice())?;
        self.events_by_correlation.insert((event.correlation_id.as_str(), event.seq), ())?;
        Ok(())
    }
}

/// An event as stored: the header and the typed data (`EventData`'s derived
/// encoding), the kind implied by the data. Borrowed to write, owned to read.
#[derive(Serialize)]
pub(crate) struct StoredEventRef<'a> {
    seq: u64,
    ts: u64,
    node: &'a str,
    session_id: &'a Option<SessionId>,
    turn_id: &'a Option<TurnId>,
    correlation_id: &'a CorrelationId,
    action_id: &'a Option<ActionId>,
    causation_seq: Option<u64>,
    data: &'a EventData,
}

#[derive(Deserialize)]
pub(crate) struct StoredEvent {
    seq: u64,
    ts: u64,
    node: String,
    session_id: Option<SessionId>,
    turn_id: Option<TurnId>,
    correlation_id: CorrelationId,
    action_id: Option<ActionId>,
    causation_seq: Option<u64>,
    data: EventData,
}

impl<'a> StoredEventRef<'a> {
    pub(crate) fn of(e: &'a Event) -> Self {
        Self {
            seq: e.seq,
            ts: e.ts,
            node: &e.node,
            session_id: &e.session_id,
            turn_id: &e.turn_id,
            correlation_id: &e.correlation_id,
            action_id: &e.action_id,
            causation_seq: e.causation_seq,
            data: &e.data,
        }
    }
}

impl From<StoredEvent> for Event {
    fn from(stored: StoredEvent) -> Self {
        let StoredEvent { seq, ts, node, session_id, turn_id, correlation_id, action_id, causation_seq, data } = stored;
        let scope = EventScope { session_id, turn_id, correlation_id };
        Event::new(seq, ts, node, scope, action_id, causation_seq, data)
    }
}

/// The seq of the oldest event retained: those below it expired (and are in
/// the archive, if the node keeps one). The next seq when none is retained.
pub fn retained_floor(r: &redb::ReadTransaction, events: &impl ReadableTable<u64, Bytes>) -> Result<u64> {
    match events.first()? {
        Some((k, _)) => Ok(k.value()),
        None => Ok(r.open_table(META)?.get(META_NEXT_SEQ)?.map_or(1, |g| g.value())),
    }
}

/// The sessions of normal trust idle since before `before_ms` of which no
/// turn is retained, in id order (a low-trust session is never one: its
/// trust must not lapse by idling).
pub fn expirable_sessions(
    sessions: &impl ReadableTable<&'static str, Bytes>,
    turns: &impl ReadableTable<&'static str, Bytes>,
    before_ms: u64,
) -> Result<Vec<SessionId>> {
    let mut idle = Vec::new();
    for row in sessions.iter()? {
        let session: Session = decode(row?.1.value())?;
        if session.trust == Trust::Normal && session.last_activity_ms < before_ms {
            idle.push(session.id);
        }
    }
    if idle.is_empty() {
        return Ok(idle);
    }
    let mut in_use = std::collections::HashSet::new();
    for row in turns.iter()? {
        in_use.insert(decode::<Turn>(row?.1.value())?.session_id);
    }
    idle.retain(|id| !in_use.contains(id));
    Ok(idle)
}

/// The time of the oldest event retained, if any.
pub fn oldest_event_ts(events: &impl ReadableTable<u64, Bytes>) -> Result<Option<u64>> {
    events.first()?.map(|(_, v)| decode_event(v.value()).map(|e| e.ts)).transpose()
}

pub fn encode_event(e: &Event) -> Result<Vec<u8>> {
    encode(&StoredEventRef::of(e))
}

pub fn decode_event(bytes: &[u8]) -> Result<Event> {
    Ok(decode::<StoredEvent>(bytes)?.into())
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    Ok(rmp_serde::to_vec_named(value)?)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    Ok(rmp_serde::from_slice(bytes)?)
}

/// Reads and decodes one record of a string-keyed table.
pub fn load<T: DeserializeOwned>(table: &impl ReadableTable<&'static str, Bytes>, key: &str) -> Result<Option<T>> {
    match table.get(key)? {
        Some(guard) => Ok(Some(decode(guard.value())?)),
        None => Ok(None),
    }
}

/// Encodes and writes one record of a string-keyed table.
fn store<T: Serialize>(table: &mut redb::Table<'_, &'static str, Bytes>, key: &str, value: &T) -> Result<()> {
    table.insert(key, encode(value)?.as_slice())?;
    Ok(())
}

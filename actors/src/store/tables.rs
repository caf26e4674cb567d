//! Table layout. Records are MessagePack (named fields, so they evolve).

use crate::domain::{Event, EventData, EventScope};
use crate::error::Result;
use crate::ids::{ActionId, CorrelationId, SessionId, TurnId};
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

pub const META_LAST_INDEX: &str = "last_index";
pub const META_NEXT_SEQ: &str = "next_seq";
pub const META_LAST_TS: &str = "last_ts";

/// Opens (or creates) the database and makes sure every table exists, so
/// readers never meet a missing table.
pub fn open_database(path: &Path) -> Result<Database> {
    let db = Database::create(path)?;
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
    }
    txn.commit()?;
    Ok(db)
}

/// Every table, opened once per write transaction (opening per command would
/// cost more than the inserts).
pub struct Tables<'t> {
    pub meta: redb::Table<'t, &'static str, u64>,
    pub sessions: redb::Table<'t, &'static str, Bytes>,
    pub turns: redb::Table<'t, &'static str, Bytes>,
    pub actions: redb::Table<'t, &'static str, Bytes>,
    pub active: redb::Table<'t, &'static str, Bytes>,
    pub idempotency: redb::Table<'t, &'static str, &'static str>,
    pub dlq: redb::Table<'t, &'static str, Bytes>,
    pub nodes: redb::Table<'t, &'static str, Bytes>,
    pub memory: redb::Table<'t, (&'static str, &'static str), Bytes>,
    pub events: redb::Table<'t, u64, Bytes>,
    pub events_by_correlation: redb::Table<'t, (&'static str, u64), ()>,
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
        })
    }
}

/// An event as stored: the header and the typed data (`EventData`'s derived
/// encoding), the kind implied by the data. Borrowed to write, owned to read.
#[derive(Serialize)]
struct StoredEventRef<'a> {
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
struct StoredEvent {
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

pub fn encode_event(e: &Event) -> Result<Vec<u8>> {
    encode(&StoredEventRef {
        seq: e.seq,
        ts: e.ts,
        node: &e.node,
        session_id: &e.session_id,
        turn_id: &e.turn_id,
        correlation_id: &e.correlation_id,
        action_id: &e.action_id,
        causation_seq: e.causation_seq,
        data: &e.data,
    })
}

pub fn decode_event(bytes: &[u8]) -> Result<Event> {
    let StoredEvent { seq, ts, node, session_id, turn_id, correlation_id, action_id, causation_seq, data } =
        decode(bytes)?;
    let scope = EventScope { session_id, turn_id, correlation_id };
    Ok(Event::new(seq, ts, node, scope, action_id, causation_seq, data))
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
pub fn store<T: Serialize>(table: &mut redb::Table<'_, &'static str, Bytes>, key: &str, value: &T) -> Result<()> {
    table.insert(key, encode(value)?.as_slice())?;
    Ok(())
}

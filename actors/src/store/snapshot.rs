//! The whole replicated state as one value: what a Raft snapshot carries.
//! `capture` reads every state table from one MVCC view; `restore` replaces
//! them all inside the caller's transaction.

use super::machine::StateMachine;
use super::tables::*;
use crate::error::Result;
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

type Rows<K, V> = Vec<(K, V)>;

#[derive(Default, Serialize, Deserialize)]
pub struct StateSnapshot {
    meta: Rows<String, u64>,
    sessions: Rows<String, ByteBuf>,
    turns: Rows<String, ByteBuf>,
    actions: Rows<String, ByteBuf>,
    active: Rows<String, ByteBuf>,
    idempotency: Rows<String, String>,
    dlq: Rows<String, ByteBuf>,
    #[serde(default)]
    nodes: Rows<String, ByteBuf>,
    memory: Rows<(String, String), ByteBuf>,
    events: Rows<u64, ByteBuf>,
    events_by_correlation: Vec<(String, u64)>,
    #[serde(default)]
    policy: Rows<String, ByteBuf>,
    #[serde(default)]
    policy_audit: Rows<u64, ByteBuf>,
}

fn records(txn: &ReadTransaction, def: TableDefinition<&'static str, &'static [u8]>) -> Result<Rows<String, ByteBuf>> {
    let mut out = Vec::new();
    for row in txn.open_table(def)?.iter()? {
        let (k, v) = row?;
        out.push((k.value().to_owned(), ByteBuf::from(v.value())));
    }
    Ok(out)
}

fn refill(
    txn: &WriteTransaction,
    def: TableDefinition<&'static str, &'static [u8]>,
    rows: &Rows<String, ByteBuf>,
) -> Result<()> {
    let mut table = txn.open_table(def)?;
    for (k, v) in rows {
        table.insert(k.as_str(), v.as_slice())?;
    }
    Ok(())
}

impl StateSnapshot {
    pub fn capture(txn: &ReadTransaction) -> Result<Self> {
        let mut s = Self {
            sessions: records(txn, SESSIONS)?,
            turns: records(txn, TURNS)?,
            actions: records(txn, ACTIONS)?,
            dlq: records(txn, DLQ)?,
            active: records(txn, ACTIVE)?,
            nodes: records(txn, NODES)?,
            policy: records(txn, POLICY)?,
            ..Self::default()
        };
        for row in txn.open_table(POLICY_AUDIT)?.iter()? {
            let (k, v) = row?;
            s.policy_audit.push((k.value(), ByteBuf::from(v.value())));
        }
        for row in txn.open_table(META)?.iter()? {
            let (k, v) = row?;
            s.meta.push((k.value().to_owned(), v.value()));
        }
        for row in txn.open_table(IDEMPOTENCY)?.iter()? {
            let (k, v) = row?;
            s.idempotency.push((k.value().to_owned(), v.value().to_owned()));
        }
        for row in txn.open_table(MEMORY)?.iter()? {
            let (k, v) = row?;
            let (ns, key) = k.value();
            s.memory.push(((ns.to_owned(), key.to_owned()), ByteBuf::from(v.value())));
        }
        for row in txn.open_table(EVENTS)?.iter()? {
            let (k, v) = row?;
            s.events.push((k.value(), ByteBuf::from(v.value())));
        }
        for row in txn.open_table(EVENTS_BY_CORRELATION)?.iter()? {
            let (key, _) = row?;
            let (cid, seq) = key.value();
            s.events_by_correlation.push((cid.to_owned(), seq));
        }
        Ok(s)
    }

    /// Replaces every state table with this snapshot's rows; returns the
    /// state machine's counters as the snapshot left them.
    pub fn restore(&self, txn: &WriteTransaction) -> Result<StateMachine> {
        for def in [SESSIONS, TURNS, ACTIONS, DLQ, ACTIVE, NODES, POLICY] {
            txn.delete_table(def)?;
        }
        txn.delete_table(META)?;
        txn.delete_table(IDEMPOTENCY)?;
        txn.delete_table(MEMORY)?;
        txn.delete_table(EVENTS)?;
        txn.delete_table(EVENTS_BY_CORRELATION)?;
        txn.delete_table(POLICY_AUDIT)?;
        refill(txn, SESSIONS, &self.sessions)?;
        refill(txn, TURNS, &self.turns)?;
        refill(txn, ACTIONS, &self.actions)?;
        refill(txn, DLQ, &self.dlq)?;
        refill(txn, ACTIVE, &self.active)?;
        refill(txn, NODES, &self.nodes)?;
        refill(txn, POLICY, &self.policy)?;
        {
            let mut meta = txn.open_table(META)?;
            for (k, v) in &self.meta {
                meta.insert(k.as_str(), *v)?;
            }
            let mut idempotency = txn.open_table(IDEMPOTENCY)?;
            for (k, v) in &self.idempotency {
                idempotency.insert(k.as_str(), v.as_str())?;
            }
            let mut memory = txn.open_table(MEMORY)?;
            for ((ns, key), v) in &self.memory {
                memory.insert((ns.as_str(), key.as_str()), v.as_slice())?;
            }
            let mut events = txn.open_table(EVENTS)?;
            for (seq, v) in &self.events {
                events.insert(*seq, v.as_slice())?;
            }
            let mut by_correlation = txn.open_table(EVENTS_BY_CORRELATION)?;
            for (cid, seq) in &self.events_by_correlation {
                by_correlation.insert((cid.as_str(), *seq), ())?;
            }
            let mut audit = txn.open_table(POLICY_AUDIT)?;
            for (seq, v) in &self.policy_audit {
                audit.insert(*seq, v.as_slice())?;
            }
        }
        let meta = txn.open_table(META)?;
        StateMachine::load(&meta)
    }
}

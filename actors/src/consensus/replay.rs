//! Rebuilding state from a log, as a replica does: every committed entry's
//! commands applied in order to an empty database. `tests/determinism.rs`
//! replays a node's log this way and compares the two states.

use super::RaftEntry;
use crate::command::Entry;
use crate::error::Result;
use crate::store::{decode, StateMachine, Store, Tables};

/// Up to `limit` log entries from `from_index` on: the commands of each
/// (none for a blank or membership entry).
pub fn log_entries(source: &Store, from_index: u64, limit: usize) -> Result<Vec<(u64, Vec<Entry>)>> {
    let mut out = Vec::new();
    for (index, bytes) in source.raw_log(from_index, limit)? {
        let entry: RaftEntry = decode(&bytes)?;
        let commands = match entry.payload {
            openraft::EntryPayload::Normal(commands) => commands,
            _ => Vec::new(),
        };
        out.push((index, commands));
    }
    Ok(out)
}

/// Applies every entry of `source`'s log to `target` (a fresh database), in
/// batches. Returns the last index applied.
pub fn replay_log(source: &Store, target: &redb::Database) -> Result<u64> {
    const BATCH: usize = 1_024;
    let mut machine = StateMachine { next_seq: 1, ..StateMachine::default() };
    let mut next = 1;
    loop {
        let entries = log_entries(source, next, BATCH)?;
        let Some(&(last, _)) = entries.last() else { return Ok(machine.last_index) };
        let txn = target.begin_write()?;
        {
            let mut tables = Tables::open(&txn)?;
            for (index, commands) in &entries {
                assert!(*index > machine.last_index, "the log is in index order");
                machine.skip(*index);
                for command in commands {
                    // A rejected command is rejected again, identically: that is part of determinism.
                    drop(machine.apply_at(&mut tables, *index, command)?);
                }
            }
            machine.save(&mut tables)?;
        }
        txn.commit()?;
        next = last + 1;
    }
}

//! `warden archive export`: copies a node's archive segments (what retention
//! removed from the replicated state, `store::archive`) for a time window out
//! of its data dir, for cold storage. Each segment is checked against its
//! checksum before it is copied; the copy is itself an archive directory
//! (`Archive::open` reads it).

use anyhow::Context;
use std::path::Path;
use warden_actors::store::{Archive, ARCHIVE_DIR};

/// A time on the command line: RFC 3339 (`2026-12-01T00:00:00Z`) or
/// milliseconds since the epoch.
pub fn parse_time(s: &str) -> anyhow::Result<u64> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    let t = humantime::parse_rfc3339_weak(s)
        .with_context(|| format!("{s:?} is neither an RFC 3339 time nor milliseconds since the epoch"))?;
    Ok(t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
}

/// Copies the segments of `data_dir`'s archive with events in `[from_ms,
/// to_ms)` to `out`; prints one line per segment and a total.
pub fn export(data_dir: &Path, from_ms: u64, to_ms: u64, out: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(from_ms < to_ms, "--from must be before --to");
    let dir = data_dir.join(ARCHIVE_DIR);
    anyhow::ensure!(
        dir.is_dir(),
        "{} has no archive (no {} directory): nothing has expired there",
        data_dir.display(),
        dir.display()
    );
    let archive = Archive::open(&dir)?;
    let copied = archive.export(from_ms, to_ms, out)?;
    for s in &copied {
        println!("{}  seq {}..={}  {} events  {} bytes", s.data_file(), s.first_seq, s.last_seq, s.events, s.bytes);
    }
    let (events, bytes): (u64, u64) = copied.iter().fold((0, 0), |(e, b), s| (e + s.events, b + s.bytes));
    eprintln!("{} segments ({events} events, {bytes} bytes) copied to {}", copied.len(), out.display());
    Ok(())
}

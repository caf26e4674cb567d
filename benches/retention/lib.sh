# Shared by benches/retention/run.sh and catchup.sh (sourced, not run; $ROOT is the repository).

# Sets WARDEN to the release binary; stops the bench when it or Node.js (the load driver) is missing.
require_release_and_node() {
  WARDEN=$ROOT/target/release/warden
  [[ -x $WARDEN ]] || { echo "build it first: cargo build --release" >&2; exit 2; }
  command -v node >/dev/null || { echo "node (Node.js) is needed for the load driver" >&2; exit 2; }
}

# The node config both benches use, after whatever node-specific lines the caller writes first:
# a short retention ($RETENTION_MS, checked every second), frequent snapshots ($SNAPSHOT_EVERY),
# sizes measured every second, and one tier-1 sim capability the load driver calls.
retention_toml() {
  cat <<TOML
[raft]
snapshot_every = $SNAPSHOT_EVERY

[retention]
events_ms = $RETENTION_MS
every_ms = 1000

[storage]
size_every_ms = 1000

[[capability]]
name = "bench.effect"
tier = 1
max_attempts = 3
timeout_ms = 5000
executor = { kind = "sim", latency_ms = 0, jitter_ms = 0, fail_rate = 0.0 }
TOML
}

# One sample of a node's /v1/health at base URL $1: events written, retained events, state bytes,
# timeline index bytes, archive bytes and segments, last snapshot bytes and build ms.
health_sample() {
  curl -fs "$1/v1/health" | python3 -c '
import json, sys
s = json.load(sys.stdin)["storage"]; size = s["size"]
rows = {t["table"]: t for t in size.get("tables", [])}
retained = rows.get("events", {}).get("rows", 0)
oldest = size.get("oldest_event_seq") or 1
state = sum(t["bytes"] for t in size.get("tables", []) if t["table"] != "events_by_key")
snap = s.get("last_snapshot") or {}
a = size.get("archive") or {}
print(oldest + retained - 1, retained, state, rows.get("events_by_key", {}).get("bytes", 0),
      a.get("bytes", 0), a.get("segments", 0), snap.get("bytes", 0), snap.get("build_ms", 0))'
}

mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }

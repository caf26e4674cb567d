#!/usr/bin/env bash
# Bounded growth under retention (docs/performance.md, "Retention"): one release node with a short
# retention, driven by closed-loop clients (benches/compare/drive.mjs: POST /v1/actions, then
# GET /v1/actions/{id}?wait_ms= until terminal) until it has written --events events. A line is
# printed at every --every events written: retained events, state bytes, RSS (and its peak so
# far), the last snapshot's size and build time, the archive, and the throughput since the
# previous line. With retention on, every column but the archive should stay flat.
#
#   cargo build --release                      # first: this script runs target/release/warden
#   benches/retention/run.sh [--events 5000000] [--every 1000000] [--clients 128]
#                            [--retention-ms 10000] [--snapshot-every 3000]
#
# Output: one markdown table row per line on stdout, progress on stderr; the node's log and data
# dir in a temp dir, removed at the end unless --keep is given.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/benches/retention/lib.sh"
EVENTS=5000000 EVERY=1000000 CLIENTS=128 RETENTION_MS=10000 SNAPSHOT_EVERY=3000 KEEP=0
while (($#)); do
  case $1 in
    --events) EVENTS=$2 ;; --every) EVERY=$2 ;; --clients) CLIENTS=$2 ;;
    --retention-ms) RETENTION_MS=$2 ;; --snapshot-every) SNAPSHOT_EVERY=$2 ;;
    --keep) KEEP=1; shift; continue ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift 2
done
require_release_and_node
PORT=18100
TMP=$(mktemp -d /tmp/warden-retention.XXXXXX)
log() { echo "[retention $(date -u +%T)] $*" >&2; }

cat >"$TMP/warden.toml" <<TOML
name = "ret"
data_dir = "$TMP/data"
http_addr = "127.0.0.1:$PORT"

TOML
retention_toml >>"$TMP/warden.toml"

NODE_PID= DRIVE_PID=
cleanup() {
  [[ -n $DRIVE_PID ]] && kill "$DRIVE_PID" 2>/dev/null || true
  [[ -n $NODE_PID ]] && kill "$NODE_PID" 2>/dev/null && wait "$NODE_PID" 2>/dev/null || true
  if ((KEEP)); then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
"$WARDEN" node --config "$TMP/warden.toml" >"$TMP/node.log" 2>&1 &
NODE_PID=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/v1/health" >/dev/null && break; sleep 0.2; done
log "node up (pid $NODE_PID, log $TMP/node.log); retention ${RETENTION_MS} ms, snapshot every $SNAPSHOT_EVERY entries"

# The load: drive.mjs runs of 200,000 calls, back to back, until the sampler is done.
( while true; do
    node "$ROOT/benches/compare/drive.mjs" --system warden --url "http://127.0.0.1:$PORT" \
      --clients "$CLIENTS" --n 200000 --warmup 0 >/dev/null 2>>"$TMP/drive.log" || sleep 1
  done ) &
DRIVE_PID=$!

sample() { health_sample "http://127.0.0.1:$PORT"; }
rss() { awk '/^VmRSS/ {r=$2} /^VmHWM/ {h=$2} END {print r, h}' "/proc/$NODE_PID/status"; }

echo "| events written | retained events | state (warden.redb tables) | timeline index | RSS (peak so far) | last snapshot | archive | events/s since previous |"
echo "|---|---|---|---|---|---|---|---|"
next=$EVERY last_events=0 last_t=$(date +%s.%N)
while ((next <= EVENTS)); do
  sleep 2
  kill -0 "$NODE_PID" 2>/dev/null || { log "the node exited: see $TMP/node.log"; KEEP=1; exit 1; }
  read -r written retained state index abytes asegs sbytes sms < <(sample) || continue
  ((written >= next)) || continue
  read -r rss_kb hwm_kb < <(rss)
  now=$(date +%s.%N)
  rate=$(awk -v e=$((written - last_events)) -v a="$last_t" -v b="$now" 'BEGIN {printf "%.0f", e / (b - a)}')
  echo "| $written | $retained | $(mib "$state") MiB | $(mib "$index") MiB | $((rss_kb / 1024)) MiB ($((hwm_kb / 1024)) MiB) | $(mib "$sbytes") MiB in $sms ms | $(mib "$abytes") MiB, $asegs segments | $rate |"
  last_events=$written last_t=$now
  while ((next <= written)); do next=$((next + EVERY)); done
done
log "done; data dir $(du -sh "$TMP/data" | cut -f1), archive $(du -sh "$TMP/data/archive" | cut -f1)"

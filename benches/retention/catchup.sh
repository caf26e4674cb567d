#!/usr/bin/env bash
# Follower catch-up under retention (docs/performance.md, "Retention"): three release nodes with a
# short retention; node c is killed, the load (benches/compare/drive.mjs through node a) runs until
# the cluster has written the next --at figure of events, the load stops, and c is started again.
# Printed per round: the events written in all and while c was down, the retained state and the
# last snapshot on the leader, and how long c took to apply everything the leader had applied:
# the snapshot it installed (time from its start, log index) and the log entries after it.
# With retention, the catch-up time should follow the retained state and the log since the
# leader's last snapshot (at most --snapshot-every entries), not the history.
#
#   cargo build --release                      # first: this script runs target/release/warden
#   benches/retention/catchup.sh [--at 500000,1500000,3000000] [--clients 128]
#                                [--retention-ms 10000] [--snapshot-every 3000]
#
# Output: one markdown table row per round on stdout, progress on stderr; the nodes' logs and data
# dirs in a temp dir, removed at the end unless --keep is given.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/benches/retention/lib.sh"
AT=500000,1500000,3000000 CLIENTS=128 RETENTION_MS=10000 SNAPSHOT_EVERY=3000 KEEP=0
while (($#)); do
  case $1 in
    --at) AT=$2 ;; --clients) CLIENTS=$2 ;;
    --retention-ms) RETENTION_MS=$2 ;; --snapshot-every) SNAPSHOT_EVERY=$2 ;;
    --keep) KEEP=1; shift; continue ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift 2
done
require_release_and_node
TMP=$(mktemp -d /tmp/warden-catchup.XXXXXX)
log() { echo "[catchup $(date -u +%T)] $*" >&2; }
NAMES=(a b c)
declare -A HTTP=([a]=18200 [b]=18201 [c]=18202) RAFT=([a]=18210 [b]=18211 [c]=18212) PID=()
echo "catchup-bench-cookie-0123456789" >"$TMP/cookie"

for n in "${NAMES[@]}"; do retention_toml >"$TMP/$n.toml"; done

start() {
  local n=$1 seeds=()
  for m in "${NAMES[@]}"; do [[ $m == "$n" ]] || seeds+=(--seed "127.0.0.1:${RAFT[$m]}"); done
  "$WARDEN" node --name "$n" --data-dir "$TMP/$n" --config "$TMP/$n.toml" \
    --http-addr "127.0.0.1:${HTTP[$n]}" --cluster-addr "127.0.0.1:${RAFT[$n]}" "${seeds[@]}" \
    --cookie-file "$TMP/cookie" --bootstrap a,b,c >>"$TMP/$n.log" 2>&1 &
  PID[$n]=$!
}
DRIVE_PID=
stop_load() {
  [[ -n $DRIVE_PID ]] || return 0
  kill "$DRIVE_PID" 2>/dev/null || true
  pkill -f "drive.mjs --system warden --url http://127.0.0.1:${HTTP[a]}" 2>/dev/null || true
  wait "$DRIVE_PID" 2>/dev/null || true
  DRIVE_PID=
}
cleanup() {
  stop_load
  for n in "${NAMES[@]}"; do [[ -n ${PID[$n]:-} ]] && kill "${PID[$n]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if ((KEEP)); then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

cluster() { curl -fs "http://127.0.0.1:${HTTP[$1]}/v1/cluster"; }
# The node's view: "<applied_index> <leader>".
raft_of() { cluster "$1" | python3 -c 'import json,sys; r=json.load(sys.stdin)["raft"]; print(r.get("applied_index") or 0, r.get("leader") or "-")'; }
# Events written, retained events, state bytes, last snapshot bytes and build ms, from $1's health.
health_of() {
  local w r st _ix _ab _as sb sm
  read -r w r st _ix _ab _as sb sm < <(health_sample "http://127.0.0.1:${HTTP[$1]}") || return 1
  echo "$w $r $st $sb $sm"
}

for n in "${NAMES[@]}"; do start "$n"; done
for _ in $(seq 300); do
  read -r _ leader < <(raft_of a 2>/dev/null || echo "0 -") || true
  [[ $leader != "-" ]] && break
  sleep 0.2
done
[[ $leader != "-" ]] || { log "no leader: see $TMP/*.log"; KEEP=1; exit 1; }
log "cluster up (leader $leader); retention ${RETENTION_MS} ms, snapshot every $SNAPSHOT_EVERY entries, data in $TMP"

echo "| events written | written while c was down | retained events | state (leader) | last snapshot (leader) | snapshot installed on c (index) | log entries after it | c caught up in |"
echo "|---|---|---|---|---|---|---|---|"
IFS=, read -r -a TARGETS <<<"$AT"
written=0
for target in "${TARGETS[@]}"; do
  kill -9 "${PID[c]}"; wait "${PID[c]}" 2>/dev/null || true
  # What the previous round's load wrote (nothing is written between rounds but expiry).
  before=$written
  log "c killed at $before events; loading to $target"
  ( while true; do
      node "$ROOT/benches/compare/drive.mjs" --system warden --url "http://127.0.0.1:${HTTP[a]}" \
        --clients "$CLIENTS" --n 200000 --warmup 0 >/dev/null 2>>"$TMP/drive.log" || sleep 1
    done ) &
  DRIVE_PID=$!
  while true; do
    sleep 2
    read -r written _ < <(health_of a) || continue
    ((written >= target)) && break
  done
  stop_load
  # What c must reach: the leader's applied index once the last writes settled.
  sleep 2
  read -r _ leader < <(raft_of a)
  read -r goal _ < <(raft_of "$leader")
  read -r written retained state sbytes sms < <(health_of "$leader")
  log "load stopped at $written events; leader $leader applied $goal; starting c"
  t0=$(date +%s.%N)
  lines=$(wc -l <"$TMP/c.log")
  start c
  until read -r applied _ < <(raft_of c 2>/dev/null) && ((applied >= goal)); do sleep 0.05; done
  took=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
  # The snapshot c installed in this round: when (from its start) and up to which index.
  read -r installed at_index < <(tail -n +"$((lines + 1))" "$TMP/c.log" | python3 -c '
import re, sys, datetime
t0 = float(sys.argv[1]); found = "- 0"
for line in sys.stdin:
    m = re.match(r"(\S+Z) .*installed a snapshot .*index: (\d+)", line)
    if m:
        ts = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
        found = "%.2f %s" % (ts - t0, m.group(2))
print(found)' "$t0")
  tail_entries=$((goal - at_index))
  ((at_index > 0)) || tail_entries="all ($goal)"
  echo "| $written | $((written - before)) | $retained | $(mib "$state") MiB | $(mib "$sbytes") MiB in $sms ms | after $installed s ($at_index) | $tail_entries | $took s |"
done
log "done"

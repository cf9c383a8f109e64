#!/usr/bin/env bash
# Gloo-only check of bench/gloo_allreduce.py (no pccl needed): a few dtypes and ops on 2 and
# 3 local ranks with sizes that are not multiples of the pattern period; every row must be
# "ok" (or "ok~") and the script must exit 0. Exits 77 (skipped) if torch does not import.
# Usage: bench/check_gloo.sh [python]
set -u
PY=${1:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)
SCRIPT=$HERE/gloo_allreduce.py
if ! timeout 120 "$PY" -c 'import torch, torch.distributed as d; assert d.is_gloo_available()' 2>/dev/null; then
    echo "check_gloo: torch with gloo is not importable by $PY: skipped"
    exit 77
fi
fail=0
run() {  # peers dtype op
    local out rc
    out=$(timeout 300 "$PY" "$SCRIPT" --machine --peers "$1" --dtype "$2" --op "$3" \
        --sizes 1K,300K,1M --iters 2 --warmup 1 --timeout 60 2>&1)
    rc=$?
    local rows bad
    rows=$(grep -c '^@gloo row ' <<<"$out")
    bad=$(grep '^@gloo row ' <<<"$out" | awk '$8 != "ok" && $8 != "ok~"' | wc -l)
    if [[ $rc -ne 0 || $rows -ne 3 || $bad -ne 0 ]]; then
        echo "FAIL peers=$1 dtype=$2 op=$3 (exit $rc, $rows rows, $bad bad)"
        grep -v '^@gloo \(begin\|progress\)' <<<"$out" | sed 's/^/    /'
        fail=1
    else
        echo "ok   peers=$1 dtype=$2 op=$3"
    fi
}
run 2 float32 sum
run 3 float32 avg
run 3 bfloat16 sum
run 2 float16 max
run 3 int32 prod
run 2 int8 min
# An unsupported dtype must fail cleanly with one error line, not hang.
out=$(timeout 60 "$PY" "$SCRIPT" --machine --peers 2 --dtype uint16 --sizes 1K 2>&1)
if [[ $? -eq 1 && $(grep -c '^@gloo error' <<<"$out") -eq 1 ]]; then
    echo "ok   uint16 rejected"
else
    echo "FAIL uint16 not rejected cleanly:"; sed 's/^/    /' <<<"$out"; fail=1
fi
exit $fail

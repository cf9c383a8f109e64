#!/usr/bin/env bash
# Checks tests/failure_summary.sh on a made-up ctest log: the failing suite's Catch2 failure and
# a failing script's last lines are printed; passing suites and the library's log lines are not.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log="$(mktemp)"; trap 'rm -f "$log"' EXIT
cat > "$log" <<'LOG'
Start testing: Dec 07 18:57 UTC
----------------------------------------------------------
1/3 Testing: pccl_tests
1/3 Test: pccl_tests
Output:
----------------------------------------------------------
[pccl 2026-12-07T20:05:43.833Z 5446 WARN] a library log line
-------------------------------------------------------------------------------
secured run: a man in the middle
-------------------------------------------------------------------------------
tests/test_security_mitm.cpp:150
...............................................................................

tests/support/cluster.cpp:473: FAILED:
explicitly with message:
  the relay never flipped a bit
<end of output>
Test time =  129.73 sec
----------------------------------------------------------
Test Failed.
----------------------------------------------------------
2/3 Testing: demo
Output:
everything fine in the demo
Test Passed.
----------------------------------------------------------
3/3 Testing: wan_poolcheck
Output:
PASS: first
FAIL: teardown: namespaces left behind
Test Failed.
LOG
out="$(bash "$here/failure_summary.sh" "$log")"
fail() { echo "failure_summary_test: $1"; echo "$out"; exit 1; }
grep -q -- "---- pccl_tests: Test Failed." <<<"$out" || fail "the failing Catch2 suite is not named"
grep -q "cluster.cpp:473: FAILED:" <<<"$out" || fail "the Catch2 failure line is missing"
grep -q "the relay never flipped a bit" <<<"$out" || fail "the failure's message is missing"
grep -q "secured run: a man in the middle" <<<"$out" || fail "the failing test case's name is missing"
grep -q -- "---- wan_poolcheck: Test Failed." <<<"$out" || fail "the failing script is not named"
grep -q "FAIL: teardown: namespaces left behind" <<<"$out" || fail "the failing script's last lines are missing"
! grep -q "demo" <<<"$out" || fail "a passing suite is printed"
! grep -q "a library log line" <<<"$out" || fail "library log lines are printed"
echo "failure_summary_test: ok"

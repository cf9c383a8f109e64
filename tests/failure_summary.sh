#!/usr/bin/env bash
# Prints what failed in a ctest log (build/Testing/Temporary/LastTest.log), without the library's
# log lines: for each test that did not pass, its status and the Catch2 failure blocks, or its last
# lines where it printed none. A failing suite's full output is long and CI shows only its ends,
# so `make test` prints this last.
log="${1:?usage: failure_summary.sh LastTest.log}"
[ -r "$log" ] || { echo "failure_summary: no $log"; exit 0; }
echo "==== what failed (from $log) ===="
awk '
  function flush(status,   i, from, n) {
    if (name == "" || status == "Test Passed.") { name = ""; return }
    print "---- " name ": " status
    n = 0
    for (i = 1; i <= count; i++) {
      if (lines[i] ~ /FAILED:|due to unexpected exception|due to a fatal error/) {
        from = (i > 12 ? i - 12 : 1)
        if (from <= shown) from = shown + 1
        for (; from <= i + 8 && from <= count; from++) print lines[from]
        shown = from - 1; n++
        if (n >= 6) { print "(more failures in the log)"; break }
      }
    }
    if (n == 0) for (i = (count > 25 ? count - 25 : 1); i <= count; i++) print lines[i]
    name = ""
  }
  /^[0-9]+\/[0-9]+ Testing: / { name = $3; count = 0; shown = 0; next }
  /^Test (Passed|Failed)\.|^Test .*(Timeout|Exception|Not Run)/ { flush($0); next }
  name != "" && !/^\[pccl / && !/^-+$/ { lines[++count] = $0 }
' "$log" | tail -n 200
echo "==== end of what failed ===="

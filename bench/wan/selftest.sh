#!/usr/bin/env bash
# Short self-check of the WAN emulation harness (about 15 s): brings up the 2-host `selftest`
# profile (20 ms RTT, 200 Mbit/s) under its own names (prefix pcclwst), checks the RTT (within
# 10%), the 16-stream TCP throughput (80-102% of the rate) and 2% injected loss, and tears it
# down. Exit 0 pass, 1 fail, 77 skipped (not root, no /dev/net/tun, no iproute2, or the
# binaries are not built).
#
#   bench/wan/selftest.sh [BUILD_DIR]      (default: the most recent build*/ with bench/wan)
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
args=()
if [ $# -ge 1 ]; then args=(--bin-dir "$1/bench/wan"); fi
exec python3 "$here/wan.py" "${args[@]}" selftest

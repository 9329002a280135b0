#!/usr/bin/env bash
# Run every cargo-fuzz target: scripts/fuzz-all.sh SECONDS [RUNS]
# SECONDS per target (0 = no time limit), or RUNS executions per target when given.
# Fails on the first crash, hang (10 s per input) or out-of-memory (2 GiB); prints each
# target's executions. Works on stable Rust (`-s none`, no sanitizer).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
runs=${2:-0}
targets=(qdl qpl import alist qc message link_frame tcp_stream etsi_request)
cargo fuzz build -s none >/dev/null
work=$(mktemp -d /tmp/qkd-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  cp fuzz/corpus/"$t"/* "$work/$t"/ 2>/dev/null || true
  limit=()
  [ "$secs" -gt 0 ] && limit+=(-max_total_time="$secs")
  [ "$runs" -gt 0 ] && limit+=(-runs="$runs")
  # The recorded sessions' messages are up to hundreds of KB; small inputs explore more.
  [ "$t" = message ] && limit+=(-max_len=4096)
  start=$(date +%s)
  if ! cargo fuzz run -s none "$t" "$work/$t" -- "${limit[@]}" -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 >"$work/$t.log" 2>&1; then
    tail -40 "$work/$t.log"
    echo "FAIL: fuzz target $t (input in fuzz/artifacts/$t/)"
    exit 1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t.log" | grep -o '[0-9]*$' || echo '?')
  peak=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$work/$t.log" | grep -o '[0-9]*$' || echo '?')
  echo "fuzz $t: $execs executions in $(( $(date +%s) - start )) s, peak RSS ${peak} MB, 0 crashes"
done

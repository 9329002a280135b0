#!/usr/bin/env bash
# Kill `qkd distill` with SIGKILL at random moments, then check what it left (issue 13):
#   * never a visible key file from an unfinished run: after a kill, either no key file is
#     visible, or the pair is complete and identical to the reference key, or a commit record
#     (.keys.commit) says the commit had begun and the next run completes it;
#   * never a pair that differs;
#   * the rerun succeeds and gives the reference key.
# Usage: scripts/kill-distill.sh [QKD_BINARY] [KILLS]   (defaults: target/release/qkd, 20)
set -euo pipefail
QKD=${1:-target/release/qkd}
KILLS=${2:-20}
dir=$(mktemp -d /tmp/qkd-kill.XXXXXX)
trap 'rm -rf "$dir"' EXIT
"$QKD" simulate --pulses 100000000 --distance-km 5 --seed 21 --out "$dir/run" >/dev/null
args=(distill --alice "$dir/run/alice.qpl" --bob "$dir/run/bob.qdl" --insecure-deterministic-rng 5
      --pa-block-bits 2^21)
"$QKD" "${args[@]}" --out "$dir/ref" >/dev/null
ref=$(sha256sum < "$dir/ref/alice.key")
# How long a run takes, to spread the kills over it.
t0=$(date +%s%N); "$QKD" "${args[@]}" --out "$dir/time" >/dev/null; t1=$(date +%s%N)
run_ms=$(( (t1 - t0) / 1000000 ))
echo "reference run: ${run_ms} ms; killing $KILLS runs at random moments"
seen_partial=0; seen_complete=0; seen_none=0
for i in $(seq 1 "$KILLS"); do
  out="$dir/k$i"
  "$QKD" "${args[@]}" --out "$out" >/dev/null 2>&1 &
  pid=$!
  # Half the kills anywhere in the run, half around its end (where the keys are committed).
  if [ $((i % 2)) -eq 1 ]; then
    delay_ms=$(( RANDOM % (run_ms + 20) ))
  else
    delay_ms=$(( run_ms * 85 / 100 + RANDOM % (run_ms * 30 / 100 + 1) ))
  fi
  sleep "$(awk "BEGIN { print $delay_ms / 1000 }")"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  a="$out/alice.key"; b="$out/bob.key"
  if [ -e "$out/.keys.commit" ]; then
    seen_partial=$((seen_partial + 1))            # committed, renames interrupted
  elif [ -e "$a" ] || [ -e "$b" ]; then
    if [ ! -e "$a" ] || [ ! -e "$b" ]; then
      echo "FAIL kill $i: one key file without a commit record"; ls -la "$out"; exit 1
    fi
    if [ "$(sha256sum < "$a")" != "$ref" ] || [ "$(sha256sum < "$b")" != "$ref" ]; then
      echo "FAIL kill $i: a visible key differs from the reference"; exit 1
    fi
    seen_complete=$((seen_complete + 1))
  else
    seen_none=$((seen_none + 1))
  fi
  # The rerun recovers whatever the kill left and succeeds with the reference key.
  if ! "$QKD" "${args[@]}" --out "$out" --force >/dev/null 2>"$dir/err"; then
    echo "FAIL kill $i: the rerun failed: $(cat "$dir/err")"; exit 1
  fi
  for k in "$a" "$b"; do
    if [ "$(sha256sum < "$k")" != "$ref" ]; then
      echo "FAIL kill $i: the rerun's $(basename "$k") differs from the reference"; exit 1
    fi
  done
  if ls "$out" | grep -q '\.partial$'; then
    echo "FAIL kill $i: temporary files left after the rerun"; ls -la "$out"; exit 1
  fi
done
echo "ok: $KILLS kills (no key visible: $seen_none, complete pair: $seen_complete, commit interrupted: $seen_partial); every rerun gave the reference key"

#!/usr/bin/env bash
# Two `qkd kme` processes on 127.0.0.1 and an independent ETSI GS QKD 014 client from PyPI
# (etsi-qkd-014-client) fetching matching keys from them. Needs python3 with venv and pip
# access to PyPI. Usage: .ci/etsi_client.sh [path/to/qkd]
set -euo pipefail
cd "$(dirname "$0")/.."
QKD=$(realpath "${1:-target/debug/qkd}")
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "etsi-qkd-014-client==0.9.0"

"$QKD" simulate --pulses 30000000 --distance-km 5 --seed 3 --out "$work/link" > /dev/null
"$QKD" distill --alice "$work/link/alice.qpl" --bob "$work/link/bob.qdl" \
    --store "$work/stores" --pa-block-bits '2^20' > /dev/null
"$QKD" pki --out "$work/pki" kme-a kme-b sae-alice sae-bob > /dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pa=$(free_port); pb=$(free_port)
start_kme() { # store me sae port peer peer_port
    "$QKD" kme --store "$1" --listen "127.0.0.1:$4" \
        --tls-cert "$work/pki/$2.crt" --tls-key "$work/pki/$2.key" --client-ca "$work/pki/ca.crt" \
        --sae "$3" --peer "127.0.0.1:$6" --peer-id "$5" > "$work/$2.log" 2>&1 &
    pids+=($!)
}
start_kme "$work/stores/alice" kme-a sae-alice "$pa" kme-b "$pb"
start_kme "$work/stores/bob" kme-b sae-bob "$pb" kme-a "$pa"
for i in $(seq 1 100); do
    if grep -q listening "$work/kme-a.log" && grep -q listening "$work/kme-b.log"; then break; fi
    sleep 0.1
done
grep -q listening "$work/kme-a.log" || { cat "$work/kme-a.log"; exit 1; }
grep -q listening "$work/kme-b.log" || { cat "$work/kme-b.log"; exit 1; }
timeout 60 "$work/venv/bin/python" .ci/etsi_client.py "$work/pki" "$pa" "$pb"

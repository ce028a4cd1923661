#!/usr/bin/env bash
# `make demo`: a 3-node devstack, a file in IPFS, a docker job and a wasm job
# on it, results downloaded and printed, the devstack stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
B="$PWD/cmd/bacalhau"
work=$(mktemp -d /tmp/bacalhau-demo.XXXXXX)
echo "demo: working in $work"

"$B" devstack --nodes 3 --repo-dir "$work/repos" --env-file "$work/env" >"$work/devstack.out" 2>"$work/devstack.log" &
devstack=$!
stop() { kill -TERM "$devstack" 2>/dev/null && wait "$devstack" 2>/dev/null || true; }
trap stop EXIT
for _ in $(seq 1 120); do [ -s "$work/env" ] && break; kill -0 "$devstack" 2>/dev/null || break; sleep 0.5; done
[ -s "$work/env" ] || { echo "demo: the devstack did not start:"; cat "$work/devstack.log"; exit 1; }
# shellcheck disable=SC1091
source "$work/env"
sed -n 's/^node /  node /p' "$work/devstack.log"

printf 'the quick brown fox\njumps over\nthe lazy dog\n' >"$work/file.txt"
cid=$("$B" ipfs add "$work/file.txt")
echo "demo: added file.txt to IPFS: $cid"

echo
echo "\$ bacalhau run --wait -v $cid:/inputs/file.txt -o results:/outputs busybox -- sh -c 'wc -l /inputs/file.txt > /outputs/n'"
job=$("$B" run --wait --id-only -v "$cid:/inputs/file.txt" -o results:/outputs busybox -- \
      sh -c 'wc -l /inputs/file.txt > /outputs/n; echo counted on $(hostname)')
"$B" get "$job" --output-dir "$work/docker-results" >/dev/null
echo "job $job: exitCode $(cat "$work/docker-results/exitCode")"
echo "  stdout:    $(cat "$work/docker-results/stdout")"
echo "  results/n: $(cat "$work/docker-results/results/n")"

clang --target=wasm32-wasi -O2 examples/hello.c -o "$work/hello.wasm"
echo
echo "\$ bacalhau wasm run --wait -v $cid:/inputs/file.txt hello.wasm /inputs/file.txt"
job=$("$B" wasm run --wait --id-only -v "$cid:/inputs/file.txt" "$work/hello.wasm" /inputs/file.txt)
"$B" get "$job" --output-dir "$work/wasm-results" >/dev/null
echo "job $job: exitCode $(cat "$work/wasm-results/exitCode")"
echo "  stdout: $(cat "$work/wasm-results/stdout")"

echo
echo "\$ bacalhau run --wait --concurrency 3 --verifier deterministic busybox -- sha256sum /inputs/file.txt"
job=$("$B" run --wait --id-only -c 3 --verifier deterministic -v "$cid:/inputs/file.txt" busybox -- sha256sum /inputs/file.txt)
"$B" describe "$job" --output json | .venv/bin/python -c '
import json, sys
job = json.load(sys.stdin)
print("job %s: %s" % (job["id"], job["state"]))
for e in job["executions"]:
    print("  node ...%s: %s, verification %s" % (e["node_id"][-8:], e["state"], e["verification"]))'
echo
"$B" list --limit 3
echo
echo "demo: stopping the devstack"

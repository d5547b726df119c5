#!/usr/bin/env bash
# Start a seed node and two providers on loopback, train the MNIST-sized
# MLP across the providers through the seed node, train it again on
# in-process executors, and check that both print the same final loss,
# and that the seed node's ledger holds a countersigned receipt of each
# provider session whose FLOPs are the part's cost × steps (within 1%).
# Everything it starts is stopped on exit; every wait is bounded.
#
# Run from anywhere:  bash examples/cluster/run.sh [--steps n]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

tmp=$(mktemp -d)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

# await FILE WORD: wait (at most 30 s) for a line "WORD on ADDR" in FILE
# and print ADDR.
await() {
	for _ in $(seq 300); do
		addr=$(awk -v w="$1" '$1 == w && $2 == "on" { print $3; exit }' "$2" 2>/dev/null || true)
		if [ -n "$addr" ]; then
			echo "$addr"
			return 0
		fi
		sleep 0.1
	done
	echo "timed out waiting for '$1 on' in $2" >&2
	return 1
}

echo "== building rookery and the example"
go build -o "$tmp/rookery" ./cmd/rookery
go build -o "$tmp/cluster" ./examples/cluster

echo "== starting a seed node"
"$tmp/rookery" seed --listen 127.0.0.1:0 --http 127.0.0.1:0 --ttl 10s --lease-key "$tmp/lease.key" --ledger "$tmp/ledger.db" >"$tmp/seed.out" 2>"$tmp/seed.log" &
pids+=($!)
seed=$(await listening "$tmp/seed.out")
http=$(await http "$tmp/seed.out")
# The seed node signs a lease for each provider a requester finds; the
# providers serve only requesters holding one.
key=$(awk '$1 == "lease" && $2 == "key" { print $3; exit }' "$tmp/seed.out")
echo "seed node: gRPC $seed, HTTP http://$http/v1/providers, lease key $key"

for i in 1 2; do
	echo "== starting provider $i"
	"$tmp/rookery" provider --listen 127.0.0.1:0 --seed-node "$seed" --seed-pubkey "$key" --name "provider-$i" --key "$tmp/p$i.key" \
		--max-memory 2GiB --metrics 127.0.0.1:0 >"$tmp/p$i.out" 2>"$tmp/p$i.log" &
	pids+=($!)
	echo "provider $i: $(await listening "$tmp/p$i.out"), metrics http://$(await metrics "$tmp/p$i.out")/metrics"
done

if command -v curl >/dev/null; then
	echo "== what the seed node knows (GET /v1/providers, abridged)"
	curl -s "http://$http/v1/providers" | grep -E '"(address|name|gflops|health)"' || true
fi

echo "== training through the seed node (its ledger gets each provider session's receipts)"
"$tmp/cluster" --seed-node "$seed" --check-ledger "http://$http" "$@" | tee "$tmp/remote.txt"
echo "== training in process"
"$tmp/cluster" "$@" | tee "$tmp/local.txt"

remote=$(grep '^final loss' "$tmp/remote.txt")
local=$(grep '^final loss' "$tmp/local.txt")
echo "== through the seed node: $remote; in process: $local"
if [ "$remote" != "$local" ]; then
	echo "the final losses differ" >&2
	exit 1
fi
echo "same final loss"
if ! grep -q '^ledger: every provider session has its receipts' "$tmp/remote.txt"; then
	echo "the ledger does not hold the receipts" >&2
	exit 1
fi
echo "== the seed node's ledger, checked again: rookery ledger verify --seed http://$http"
"$tmp/rookery" ledger verify --seed "http://$http"
echo "== the seed node's page: http://$http/"
if [ -n "${ROOKERY_SCREENSHOT:-}" ]; then
	if command -v chromium >/dev/null; then
		# its own profile, bounded in time; the page reads the ledger first
		timeout 60 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$tmp/chromium" \
			--window-size=1280,1000 --virtual-time-budget=5000 --screenshot="$ROOKERY_SCREENSHOT" "http://$http/" >/dev/null 2>&1 || true
		[ -s "$ROOKERY_SCREENSHOT" ] && echo "screenshot of the page: $ROOKERY_SCREENSHOT"
	else
		echo "no chromium here: no screenshot (apt-get install chromium)"
	fi
fi

#!/usr/bin/env bash
# Trains across providers behind NATs on a small internet emulated with
# Linux network namespaces, and prints what happens (see main.go):
#
#   sudo bash examples/nat/run.sh
#
# Two seed nodes on the "internet" (198.18.0.1, 198.18.0.2), providers a
# and b behind cone NATs, c behind a symmetric NAT, the requester behind
# its own NAT; all addresses are from 198.18.0.0/15, which is reserved
# for benchmarking networks, and no traffic leaves the namespaces the run
# makes. The last line is one JSON object:
#
#   {"direct": N, "relayed": M, "same_model": true|false, "join_seconds": S,
#    "step_ms_direct": X, "step_ms_relayed": Y, "step_ms_tcp": Z, ...}
#
# Needs root, iproute2 (ip) and nftables (nft; Debian: apt-get install
# nftables). Everything it made is removed on any exit, Ctrl-C included.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export PATH="/usr/local/go/bin:${PATH}"

if [[ $(id -u) -ne 0 ]]; then
	echo "run.sh: needs root, to make network namespaces and NAT rules (sudo bash examples/nat/run.sh)" >&2
	exit 2
fi
for tool in ip nft go; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "run.sh: $tool is missing (ip: iproute2, nft: nftables)" >&2
		exit 2
	fi
done

prefix="natsh$$"
work="$(mktemp -d)"
cleanup() {
	# The program removes its namespaces itself; this catches a run that
	# was killed before it could.
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${prefix}-" || true); do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
		ip netns del "$ns" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "building ./cmd/rookery and ./examples/nat"
go build -o "$work/rookery" ./cmd/rookery
go build -o "$work/nat" ./examples/nat
"$work/nat" -rookery "$work/rookery" -prefix "$prefix" "$@"

#!/usr/bin/env bash
# A local Iris network of real node processes on this machine's loopback.
#
#   testnet/local.sh up [N]   build iris and the worker image, start N nodes
#                             (default 3) each with its own private CSV,
#                             create a network on the first, join the others
#                             (each through the node before it), show the
#                             map, and run a statistics job on every node
#   testnet/local.sh status   the map as every node sees it
#   testnet/local.sh down     stop the nodes and delete their directories
#
# Nodes live in testnet/.data/local/<name>/ with logs beside them. Ports:
# p2p 17001.., API 18001.. (IRIS_P2P_BASE, IRIS_API_BASE to change).
# IRIS_PROFILE=debug reuses a debug build instead of building release;
# IRIS_NO_BUILD=1 uses the binary already there.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
data="$here/.data/local"
profile=${IRIS_PROFILE:-release}
p2p_base=${IRIS_P2P_BASE:-17000}
api_base=${IRIS_API_BASE:-18000}
key=${IRIS_NETWORK_KEY:-local-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')}
names=(alice bob carol dave erin frank grace heidi ivan judy)

iris() { "$root/target/$profile/iris" "$@"; }

build() {
  # scripts/test.sh has just built everything; building only the binary
  # again would unify features differently and recompile half the tree.
  [ -n "${IRIS_NO_BUILD:-}" ] && [ -x "$root/target/$profile/iris" ] && return 0
  local flags=()
  [ "$profile" = release ] && flags=(--release)
  (cd "$root" && cargo build "${flags[@]}" --bin iris)
}

wait_api() { # dir
  for _ in $(seq 1 200); do
    iris status --dir "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "node in $1 did not start; its log ends with:" >&2
  tail -5 "$1/node.log" >&2
  return 1
}

up() {
  local n=${1:-3}
  if [ "$n" -lt 1 ] || [ "$n" -gt ${#names[@]} ]; then
    echo "N must be 1 to ${#names[@]}" >&2; exit 2
  fi
  [ -d "$data" ] && down
  build
  mkdir -p "$data"
  for i in $(seq 0 $((n - 1))); do
    local name=${names[$i]} dir="$data/${names[$i]}"
    iris init --dir "$dir" --name "$name" --p2p-listen 127.0.0.1 \
      --p2p-port $((p2p_base + i + 1)) --api-port $((api_base + i + 1)) >/dev/null
    # The binary itself, not the shell function: $! must be the node's pid.
    "$root/target/$profile/iris" run --dir "$dir" >/dev/null 2>"$dir/node.log" &
    echo $! >"$dir/pid"
  done
  for i in $(seq 0 $((n - 1))); do wait_api "$data/${names[$i]}"; done
  echo "== ${names[0]} creates network 'local'"
  iris network create --dir "$data/${names[0]}" --name local --key "$key"
  for i in $(seq 1 $((n - 1))); do
    local via addr
    via="$data/${names[$((i - 1))]}"
    addr=$(iris status --dir "$via" --json | sed -n 's/.*"\(\/ip4\/127\.0\.0\.1\/tcp\/[0-9]*\/p2p\/[A-Za-z0-9]*\)".*/\1/p' | head -1)
    echo "== ${names[$i]} joins through ${names[$((i - 1))]}"
    iris network join --dir "$data/${names[$i]}" --key "$key" "$addr"
  done
  sleep 1
  echo "== the map as ${names[$((n - 1))]} sees it"
  iris nodes --dir "$data/${names[$((n - 1))]}"
  if docker info >/dev/null 2>&1; then
    job "$n"
  else
    echo "(no Docker engine here: skipping the job)"
  fi
  echo
  echo "Try: $root/target/$profile/iris events --dir $data/${names[0]}"
  echo "Stop with: testnet/local.sh down"
}

# Every node gets the worker image and its own private data (y = 2x + i on
# 100 * (i + 1) rows); the master runs the worker on all of them.
job() { # n
  local n=$1
  "$root/docker/build-images.sh" worker >/dev/null
  for i in $(seq 0 $((n - 1))); do
    local dir="$data/${names[$i]}"
    iris images load --dir "$dir" "$root/docker/.build/iris-worker.tar" >/dev/null
    { echo "x,y"; for x in $(seq 1 $((100 * (i + 1)))); do echo "$x,$((2 * x + i))"; done; } \
      >"$dir/workspace/private/data.csv"
  done
  echo "== ${names[0]} (master) runs the worker on every node's private data"
  iris job run --dir "$data/${names[0]}" --image iris-worker:latest --on all -- \
    /iris-worker stats /workspace/private/data.csv
  local id
  id=$(iris job list --dir "$data/${names[0]}" --json | sed -n 's/.*"id": "\(job-[0-9a-f]*\)".*/\1/p' | tail -1)
  echo "== results, from each node's workspace/public/jobs/$id/stats.json"
  for i in $(seq 0 $((n - 1))); do
    local stats="$data/${names[$i]}/workspace/public/jobs/$id/stats.json"
    printf '%-6s rows=%s\n' "${names[$i]}" "$(sed -n 's/.*"rows": \([0-9]*\).*/\1/p' "$stats")"
  done
}

status() {
  for dir in "$data"/*/; do
    [ -f "$dir/pid" ] || continue
    echo "== $(basename "$dir")"
    iris nodes --dir "$dir" || true
  done
}

down() {
  for pidfile in "$data"/*/pid; do
    [ -f "$pidfile" ] || continue
    kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  for pidfile in "$data"/*/pid; do
    [ -f "$pidfile" ] || continue
    for _ in $(seq 1 50); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$(cat "$pidfile")" 2>/dev/null || true
  done
  rm -rf "$data"
  echo "local network stopped"
}

case "${1:-}" in
  up) up "${2:-3}" ;;
  status) status ;;
  down) down ;;
  *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac

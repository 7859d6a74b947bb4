#!/usr/bin/env bash
# The whole test suite, as CI runs it: unit and integration tests (real node
# processes on loopback, the real Docker engine), then a smoke run of the
# local network script.
set -euo pipefail
cd "$(dirname "$0")/.."

# The worker image the executor tests run (FROM scratch, our own binary).
docker/build-images.sh worker
cargo build --workspace --all-targets
cargo test --workspace

echo "== smoke: testnet/local.sh up 3 / down"
trap 'testnet/local.sh down >/dev/null 2>&1 || true' EXIT
IRIS_PROFILE=debug IRIS_NO_BUILD=1 testnet/local.sh up 3 | tee /tmp/iris-local-smoke.$$
alive=$(grep -cE ' (master|slave) +alive ' /tmp/iris-local-smoke.$$ || true)
succeeded=$(grep -cE '^(alice|bob|carol) +succeeded +0 ' /tmp/iris-local-smoke.$$ || true)
rm -f /tmp/iris-local-smoke.$$
if [ "$alive" -ne 3 ] || [ "$succeeded" -ne 3 ]; then
  echo "smoke FAILED: expected 3 alive nodes and 3 succeeded tasks, saw $alive and $succeeded" >&2
  exit 1
fi
echo "smoke: 1 passed, 0 failed"

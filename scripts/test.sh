#!/usr/bin/env bash
# The whole test suite, as CI runs it: unit and integration tests (real node
# processes on loopback, the real Docker engine, a real browser), then a smoke run of the
# testnet: 3 node containers, the federated-learning demo for 2 rounds, the
# exfiltration drill, the fault drills, and down.
set -euo pipefail
cd "$(dirname "$0")/.."

# The dashboard's tests drive a real headless Chromium through chromedriver,
# both from Debian's packages.
if ! command -v chromedriver >/dev/null || ! [ -x /usr/bin/chromium ]; then
    echo "== installing chromium and chromium-driver (the dashboard's browser tests)"
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# The worker image the tests run and the node image of the testnet, both
# FROM scratch from our own static binaries.
docker/build-images.sh all
cargo build --workspace --all-targets
cargo test --workspace

# The Python client (python/), from a venv of its own with httpx, pydantic
# and pytest from PyPI, against real nodes of the binary just built.
echo "== python: pytest python/tests"
venv=target/python-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check ./python pytest
IRIS_BIN="$PWD/target/debug/iris" "$venv/bin/pytest" -q python/tests

echo "== smoke: testnet/testnet.sh up 3, demo 2, the Python FedAvg example, exfil, chaos, down"
# Its own name: a testnet you have running stays as it is.
export IRIS_TESTNET_NAME=iris-smoke IRIS_NO_BUILD=1
trap 'testnet/testnet.sh down >/dev/null 2>&1 || true' EXIT
testnet/testnet.sh up 3
testnet/testnet.sh demo 2
(eval "$(testnet/testnet.sh env)" && "$venv/bin/python" python/examples/fedavg.py --rounds 2)
testnet/testnet.sh exfil
testnet/testnet.sh chaos
testnet/testnet.sh down
trap - EXIT
echo "smoke: 1 passed, 0 failed"

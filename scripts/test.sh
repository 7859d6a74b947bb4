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

# Every part runs even when one before it failed, so one failing test
# binary hides nothing; a summary of every failure comes last, and the
# script exits non-zero if there was any.
logs=target/test-logs
mkdir -p "$logs"
failed=()
passed=0
# How long each step took, for the summary: CI has a time budget, and
# this is where it goes.
took=()
timed() { # name command...: runs a step and notes how long it took
    local name=$1 start=$SECONDS status=0
    shift
    "$@" || status=$?
    took+=("$(printf '%5d s  %s' $((SECONDS - start)) "$name")")
    return $status
}
part() { # name command...: runs a part, remembers whether it failed
    local name=$1
    shift
    echo "== $name"
    if timed "$name" "$@"; then
        passed=$((passed + 1))
    else
        failed+=("$name")
    fi
}

# One build serves everything: every crate and test is built once, as
# static binaries for this machine in the dev profile, and the images
# below are made of those binaries (a release build for the images
# besides would compile every crate twice and double CI's build time).
# The explicit target keeps the static flag away from proc-macro crates.
target=x86_64-unknown-linux-gnu
export CARGO_BUILD_TARGET=$target
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
export IRIS_BIN="$PWD/target/$target/debug/iris"
timed "build: cargo build --workspace --all-targets" cargo build --workspace --all-targets
# The worker image the tests run and the node image of the testnet, both
# FROM scratch from those binaries. Without them nothing else can run.
timed "build: docker/build-images.sh all" env IRIS_IMAGE_PROFILE=dev docker/build-images.sh all

# No two modules of a crate use each other, directly or in a circle.
part "modules: no import circle in src/ or behaviours/src/" python3 scripts/module_cycles.py src behaviours/src
# Each type's inherent impl in one file, tests files aside.
part "types: no impl spread over files" python3 scripts/impl_spread.py src behaviours/src

# Every test binary, not only those before the first failure.
cargo_tests() {
    cargo test --workspace --no-fail-fast 2>&1 | tee "$logs/cargo-test.log"
}
part "cargo test --workspace" cargo_tests

# The Python client (python/), from a venv of its own with httpx, pydantic
# and pytest from PyPI, against real nodes of the binary just built.
venv=target/python-venv
# pip and pytest run as modules of the venv's python: their own scripts
# name the venv's path, which breaks when the checkout moves.
python_tests() {
    "$venv/bin/python" -c "" 2>/dev/null || python3 -m venv --clear "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check ./python pytest &&
        "$venv/bin/python" -m pytest -q python/tests
}
part "python: pytest python/tests" python_tests

# The REST API against its own OpenAPI document, by a fuzzer nobody here
# wrote: schemathesis, every check, 10 examples an operation, a fixed seed.
part "api: schemathesis against /v1/openapi.json" scripts/fuzz-api.sh 10

# Sites behind NAT, each in network namespaces of its own with a router
# that lets nothing in (one lets out only TCP to the master's port 443,
# one only an HTTP proxy): the map, a job on all, a secure sum and
# transfers between sites, through the master's relay and hole punching;
# images shipped to a site with an empty engine of its own; the Python
# FedAvg example; the master and a site restarted; the exfiltration
# drill. Its own namespaces and that site's engine, all removed.
natlab() {
    trap 'testnet/natlab.sh down >/dev/null 2>&1 || true' EXIT
    local status=0
    { testnet/natlab.sh up 4 --strict --proxy && testnet/natlab.sh check &&
        testnet/natlab.sh demo 2 && testnet/natlab.sh chaos && testnet/natlab.sh exfil; } 2>&1 || status=$?
    testnet/natlab.sh down >/dev/null 2>&1 || true
    trap - EXIT
    return $status
}
part "nat: testnet/natlab.sh up 4 --strict --proxy, check, demo 2, chaos, exfil, down (4 sites behind NAT, 2 outbound-only, 1 with an engine of its own)" natlab

# The smoke run of the testnet: its steps build on each other, so it stops
# at its first failure. Its own name: a testnet you have running stays as
# it is.
smoke() {
    export IRIS_TESTNET_NAME=iris-smoke IRIS_NO_BUILD=1
    trap 'testnet/testnet.sh down >/dev/null 2>&1 || true' EXIT
    local status=0 step
    fedavg() { (eval "$(testnet/testnet.sh env)" && "$venv/bin/python" python/examples/fedavg.py --rounds 2); }
    # A step's errors go to standard output too, and a failing step is
    # named, so that a log that keeps only standard output still says why.
    for step in "testnet/testnet.sh up 3" "testnet/testnet.sh demo 2" fedavg \
        "testnet/testnet.sh exfil" "testnet/testnet.sh chaos" "testnet/testnet.sh down"; do
        $step 2>&1 || { status=$?; echo "smoke: '$step' failed (exit $status)"; break; }
    done
    [ $status -eq 0 ] || testnet/testnet.sh down >/dev/null 2>&1 || true
    trap - EXIT
    return $status
}
part "smoke: testnet/testnet.sh up 3, demo 2, the Python FedAvg example, exfil, chaos, down" smoke

# The real Python workload (breast-cancer data, numpy and scikit-learn in
# an image built from Debian's packages) trained over 5 nodes from the
# Python client's driver, while a site is killed and the master restarts;
# the model is checked against a central fit. Its own testnet.
training() {
    export IRIS_TESTNET_NAME=iris-train IRIS_NO_BUILD=1
    trap 'testnet/testnet.sh down >/dev/null 2>&1 || true' EXIT
    local status=0
    { testnet/testnet.sh up 5 >/dev/null && testnet/testnet.sh train 10 --chaos; } 2>&1 || status=$?
    testnet/testnet.sh down >/dev/null 2>&1 || true
    trap - EXIT
    return $status
}
part "training: testnet/testnet.sh up 5, train 10 --chaos (Python, scikit-learn, real data), down" training

echo
echo "== time taken"
printf '%s\n' "${took[@]}"
echo "$SECONDS s in all"
echo
echo "== summary"
if [ ${#failed[@]} -gt 0 ]; then
    for name in "${failed[@]}"; do
        echo "FAILED: $name"
    done
    # The failing tests by name, and the test binaries that failed.
    grep -E '^test .* \.\.\. FAILED$' "$logs/cargo-test.log" | sed 's/^/    /' || true
    sed -n '/targets\? failed:/,/^$/p' "$logs/cargo-test.log" | sed 's/^/    /' || true
fi
echo "test.sh: $passed passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]

#!/usr/bin/env bash
# Fuzzes the REST API with schemathesis (from PyPI, in a venv of its own):
# a fresh node of the binary just built, every check against
# /v1/openapi.json, a bounded number of examples per operation, and the
# exceptions schemathesis.toml lists with why.
# Passes only if schemathesis finds nothing: each finding is a request the
# document allows that the node refuses, or a status the document does
# not list.
#
#   scripts/fuzz-api.sh [EXAMPLES]      (10 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-10}
venv=target/fuzz-venv
# The binary scripts/test.sh built, or the default debug build.
iris=${IRIS_BIN:-target/debug/iris}
dir=$(mktemp -d -t iris-fuzz.XXXXXX)
node=
peer=
cleanup() {
    [ -n "$node" ] && kill "$node" 2>/dev/null && wait "$node" 2>/dev/null
    # A session the fuzzer opened outlives the node on purpose (sessions
    # survive a restart): its containers, labelled with the node, go here.
    if [ -n "$peer" ]; then
        docker ps -aq --filter "label=iris.node=$peer" | xargs -r docker rm -f >/dev/null
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

# The newest Python 3 here: CPython 3.11 before 3.11.8 has an AST bug
# (gh-106905) that crashes hypothesis's lambda descriptions mid-run.
if ! "$venv/bin/python" -c "" 2>/dev/null; then
    python=python3
    for candidate in python3.13 python3.12; do
        if command -v "$candidate" >/dev/null && "$candidate" -c "" 2>/dev/null; then
            python=$candidate
            break
        fi
    done
    # pyenv's shims answer for versions it has but has not selected.
    for version in 3.13 3.12; do
        [ "$python" = python3 ] || break
        found=$(pyenv root 2>/dev/null)/versions
        for installed in "$found"/"$version".*; do
            [ -x "$installed/bin/python3" ] && python=$installed/bin/python3 && break
        done
    done
    "$python" -m venv --clear "$venv"
fi
# Exact versions: a new release must not turn CI red by itself (4.32.5
# came out mid-session and brought new checks and a new crash).
"$venv/bin/python" -m pip install -q --disable-pip-version-check 'schemathesis==4.32.4' 'hypothesis==6.170.16'
# Python 3.11 before 3.11.8 (the newest here may be 3.11.7) crashes
# hypothesis's lambda descriptions: fuzz_lambda_fix.py says "lambda" instead.
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp scripts/fuzz_lambda_fix.py "$site/iris_fuzz_lambda_fix.py"
echo "import iris_fuzz_lambda_fix" > "$site/iris_fuzz_lambda_fix.pth"
"$iris" init --dir "$dir" --name fuzz --p2p-port 0 --p2p-listen 127.0.0.1 --api-port 0 >/dev/null
"$iris" run --dir "$dir" 2>"$dir/node.log" &
node=$!
for _ in $(seq 300); do
    [ -s "$dir/api.port" ] && curl -sf "http://127.0.0.1:$(cat "$dir/api.port")/v1/status" \
        -H "Authorization: Bearer $(cat "$dir/api.token")" >/dev/null && break
    kill -0 "$node" 2>/dev/null || { cat "$dir/node.log"; exit 1; }
    sleep 0.2
done
base="http://127.0.0.1:$(cat "$dir/api.port")"
peer=$(curl -sf "$base/v1/status" -H "Authorization: Bearer $(cat "$dir/api.token")" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["peer_id"])')
# The node's own files are where the fuzzer may name them: its workspace.
cd "$dir"
"$OLDPWD/$venv/bin/st" --config-file "$OLDPWD/schemathesis.toml" run "$base/v1/openapi.json" \
    --checks all \
    --header "Authorization: Bearer $(cat api.token)" \
    --max-examples "$examples" \
    --workers 2 \
    --seed 1

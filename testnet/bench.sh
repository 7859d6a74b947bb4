# The time of a training round, sourced by testnet.sh: for the Rust worker
# (a linear model on `shard`) and the Python workload (logistic regression
# on `cancer`, numpy in iris-python), R rounds each way, in one run:
#
#   cold   a job per round, a new container on every site every round
#   warm   a job per round, each site's container kept between rounds
#   bare   no Iris at all: `docker run --rm` of the same containers, one
#          per site, side by side, with the same sandbox flags
#
#   testnet/testnet.sh bench [R]      R rounds each (default 10)
#
# A round of Iris is the whole of it (the job to every site and back, and
# the secure sum); a bare round is the containers alone. Each mean is over
# rounds 2 to R (round 1 of a warm training starts its containers).

# The mean of rounds 2 and later that a driver printed.
steady_mean() { sed -n 's/^mean of rounds 2 to [0-9]*: \([0-9.]*\) s$/\1/p' | tail -1; }

# One training by `driver args...`, its steady mean printed.
timed_training() { # driver-args...
  local out
  out=$(eval "$(env_vars)" && "$python" "$@") || { echo "$out" >&2; die "a training failed"; }
  steady_mean <<<"$out"
}

# R bare rounds of `image argv...` on every node, side by side; each node's
# data dir is mounted at /workspace/data and `in` at /workspace/in.
bare_rounds() { # rounds dataset in image argv...
  local rounds=$1 dataset=$2 in=$3 r node pids start times=()
  shift 3
  for r in $(seq 1 "$rounds"); do
    start=$(now_ms) pids=()
    for node in "${nodes[@]}"; do
      local out="$data/bench/out/$node"
      mkdir -p "$out"
      docker run --rm --network none --read-only --cap-drop ALL --security-opt no-new-privileges \
        --user "$(id -u):$(id -g)" --memory 256m --label "iris.testnet=$data" \
        -v "$data/$node/workspace/private/$dataset:/workspace/data:ro" -v "$in:/workspace/in:ro" \
        -v "$out:/workspace/out" "$@" >/dev/null &
      pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || die "a bare round failed: $*"; done
    [ "$r" -gt 1 ] && times+=($(($(now_ms) - start)))
  done
  printf '%s\n' "${times[@]}" | awk '{ s += $1 } END { printf "%.3f", s / NR / 1000 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

bench() { # rounds
  load_state
  local rounds=$1 python ts=$(date +%s) in="$data/bench/in"
  [ "$rounds" -ge 3 ] 2>/dev/null || die "bench: at least 3 rounds"
  prepare_cancer
  python=$(client_python)
  rm -rf "$data/bench" && mkdir -p "$in"

  say "the Rust worker: $rounds rounds of a linear model on 'shard', cold, warm, bare"
  local worker_argv=(/iris-worker gradient /workspace/data/shard.csv --target y --model "{model}"
    --lr 0.4 --steps 25)
  local rounds_py=("$root/python/examples/rounds.py" --image "$worker" --dataset shard --length 4
    --rounds "$rounds")
  local rust_cold rust_warm rust_bare
  rust_cold=$(timed_training "${rounds_py[@]}" --name "bench-rust-cold-$ts" -- "${worker_argv[@]}")
  rust_warm=$(timed_training "${rounds_py[@]}" --name "bench-rust-warm-$ts" --warm -- "${worker_argv[@]}")
  echo '{"model": [0, 0, 0]}' >"$in/model.json"
  rust_bare=$(bare_rounds "$rounds" shard "$in" "$worker" /iris-worker gradient \
    /workspace/data/shard.csv --target y --model /workspace/in/model.json --lr 0.4 --steps 25)

  say "the Python workload: $rounds rounds of logistic regression on 'cancer', cold, warm, bare"
  local py_cold py_warm py_bare
  py_cold=$(timed_training "$root/python/examples/cancer.py" --name "bench-py-cold-$ts" --rounds "$rounds")
  py_warm=$(timed_training "$root/python/examples/cancer.py" --name "bench-py-warm-$ts" --rounds "$rounds" --warm)
  cp "$data/$master/workspace/public/bench-py-cold-$ts/scaling.json" "$in/scaling.json"
  echo "{\"model\": [$(seq -s, 0 30 | sed 's/[0-9]\+/0/g')]}" >"$in/model.json"
  py_bare=$(bare_rounds "$rounds" cancer "$in" "$python_image" /iris/cancer.py round \
    /workspace/data/cancer.csv /workspace/in/scaling.json /workspace/in/model.json \
    /workspace/out/update.json --epochs 10)

  say "seconds a round, mean of rounds 2 to $rounds, ${#nodes[@]} sites (bare = docker run of the same containers)"
  printf '   %-8s %8s %8s %8s %12s %12s\n' workload cold warm bare "cold/bare" "warm/bare"
  printf '   %-8s %8s %8s %8s %12s %12s\n' rust "$rust_cold" "$rust_warm" "$rust_bare" \
    "$(ratio "$rust_cold" "$rust_bare")" "$(ratio "$rust_warm" "$rust_bare")"
  printf '   %-8s %8s %8s %8s %12s %12s\n' python "$py_cold" "$py_warm" "$py_bare" \
    "$(ratio "$py_cold" "$py_bare")" "$(ratio "$py_warm" "$py_bare")"
  rm -rf "$data/bench"
}

# A real Python workload, sourced by testnet.sh: logistic regression on
# scikit-learn's breast-cancer data (569 patients) split unevenly over the
# testnet's nodes, trained by federated averaging with secure sums from the
# Python client's Training driver (python/examples/cancer.py), and checked
# against a central fit on the pooled rows (docs/testnet.md).
#
#   testnet/testnet.sh train [R]      R rounds (default 20)
#   testnet/testnet.sh train R --chaos
#                                     the same, while one site is killed
#                                     (kill -9) after round 3 and the master
#                                     restarts after round 6: each round
#                                     needs all sites but two (a quorum) and
#                                     ends 60 s after it began (a deadline),
#                                     and the driver resumes from the
#                                     master's checkpoint (5 nodes or more:
#                                     a secure sum over the 3 sites left)
#
# The job image, iris-python, is Debian's python3 with numpy and
# scikit-learn, built without a registry (docker/python/build.sh).

python_image=iris-python:latest
# The federated model's test accuracy may trail the central fit's by this
# much (one patient in the 114 held out is 0.009).
accuracy_tolerance=0.03

# A Python with iris_client's dependencies, in the venv the tests use; the
# client itself is this checkout's (PYTHONPATH), never an older install.
export PYTHONPATH="$root/python${PYTHONPATH:+:$PYTHONPATH}"
client_python() {
  local venv="$root/target/python-venv"
  if ! "$venv/bin/python" -c "import iris_client, httpx" 2>/dev/null; then
    python3 -m venv "$venv" >/dev/null
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$root/python" >/dev/null
  fi
  echo "$venv/bin/python"
}

# iris-python's /iris/cancer.py on this host, as the researcher's own tool
# (the data split for the testnet, the check against a central fit).
cancer_tool() { # dir args...
  local dir=$1; shift
  docker run --rm --network none --user "$(id -u):$(id -g)" --label "iris.testnet=$data" \
    -v "$dir:/work" "$python_image" /iris/cancer.py "$@"
}

train() { # rounds [--chaos]
  load_state
  local rounds=$1 chaos=${2:-} split="$data/cancer" python name result
  [ "$rounds" -ge 1 ] 2>/dev/null || die "train: rounds must be a number from 1"
  case "$chaos" in
    "") ;;
    --chaos)
      [ "${#nodes[@]}" -ge 5 ] || die "train --chaos needs 5 nodes or more (testnet.sh up 5)"
      [ "$rounds" -ge 8 ] || die "train --chaos needs 8 rounds or more"
      ;;
    *) die "train: unknown option '$chaos'" ;;
  esac
  prepare_cancer
  python=$(client_python)

  name="cancer-$(date +%s)"
  result="$split/result.json"
  say "training $name: $rounds rounds of FedAvg by secure sums, from Python"
  local driver=(--name "$name" --rounds "$rounds" --out "$result")
  if [ -z "$chaos" ]; then
    (eval "$(env_vars)" && "$python" "$root/python/examples/cancer.py" "${driver[@]}") ||
      die "the training failed"
  else
    train_through_chaos "$python" --quorum $((${#nodes[@]} - 2)) --deadline 60 "${driver[@]}"
  fi

  say "the federated model against a central fit on the pooled rows"
  local check federated central
  check=$(cancer_tool "$split" check /work /work/result.json) || die "the check failed"
  echo "   $check"
  federated=$(json_field federated <<<"$check")
  central=$(json_field central <<<"$check")
  awk -v f="$federated" -v c="$central" -v t="$accuracy_tolerance" 'BEGIN { exit !(f >= c - t) }' ||
    die "the federated model's accuracy $federated trails the central fit's $central by more than $accuracy_tolerance"
  echo "   federated $federated, central $central: within $accuracy_tolerance"
}

# The image, the data split over the nodes and declared by each owner as
# the dataset `cancer`, and each site owner's approval of its commands.
prepare_cancer() {
  local split="$data/cancer" i
  say "building $python_image from Debian's packages (kept after the first time)"
  [ -n "${IRIS_NO_BUILD:-}" ] && docker image inspect "$python_image" >/dev/null 2>&1 ||
    "$root/docker/python/build.sh"
  say "the data: $((569 - 114)) patients over ${#nodes[@]} sites, 114 held out for the test"
  rm -rf "$split" && mkdir -p "$split"
  cancer_tool "$split" split /work "${#nodes[@]}"
  for i in "${!nodes[@]}"; do
    local node=${nodes[$i]} dir="$data/${nodes[$i]}/workspace/private/cancer"
    mkdir -p "$dir"
    cp "$split/site-$((i + 1)).csv" "$dir/cancer.csv"
    on "$node" datasets add cancer private/cancer --replace --tag testnet --tag classification \
      --description "breast-cancer patients, this site's share" --rows-bucket 10 --mock-rows 20 |
      sed -n "1s/^/   [$node's owner] /p"
  done
  # A site runs the researcher's code only with its owner's approval: here
  # each owner approves the two commands of the image, pinned to its digest.
  for node in "${nodes[@]:1}"; do
    for command in stats round; do
      echo "   [$node's owner] iris policy allow-image $python_image --prefix -- /iris/cancer.py $command"
      on "$node" policy allow-image "$python_image" --prefix -- /iris/cancer.py "$command" >/dev/null
    done
  done
  wait_until 30 all_hold cancer >/dev/null || die "the dataset 'cancer' did not reach every map"
}

# The driver runs while the last node is killed after round 3 and the
# master restarts after round 6; it must finish every round.
train_through_chaos() { # python driver-args...
  local python=$1 log="$data/cancer/driver.log" victim=${nodes[$((${#nodes[@]} - 1))]} pid
  shift
  (eval "$(env_vars)" && exec "$python" -u "$root/python/examples/cancer.py" "$@") >"$log" 2>&1 &
  pid=$!
  wait_until 600 driver_said "$log" "round   3:" >/dev/null || { cat "$log"; die "round 3 never ended"; }
  say "kill -9 $victim, a site, in the middle of the training"
  docker kill --signal KILL "$prefix-$victim" >/dev/null
  wait_until 600 driver_said "$log" "round   6:" >/dev/null || { cat "$log"; die "round 6 never ended"; }
  say "restart the master, $master, in the middle of the training"
  docker restart "$prefix-$master" >/dev/null
  if ! wait "$pid"; then
    cat "$log"
    die "the training did not survive the chaos"
  fi
  cat "$log"
  docker start "$prefix-$victim" >/dev/null
  [ "$(grep -c '^round ' "$log")" -eq "$rounds" ] || die "not every round ended once"
  grep -q "the master is away" "$log" || die "the driver never saw the master away"
  grep -q "from $((${#nodes[@]} - 1)) sites" "$log" || die "no round went on without $victim"
}

driver_said() { grep -q "$2" "$1" 2>/dev/null; }

# Whether the last node lists the dataset on every node.
all_hold() { # dataset
  [ "$(on "${nodes[$((${#nodes[@]} - 1))]}" datasets --tag testnet | awk -v d="$1" 'NR > 1 && $1 == d' | wc -l)" -eq "${#nodes[@]}" ]
}

# The federated-averaging demo, sourced by testnet.sh: rounds of FedAvg by
# secure sums over every node's shard, checked against plain federated
# averaging and a central fit, then the same training with differential
# privacy, the privacy checks and the time per round (docs/testnet.md).
#
#   testnet/testnet.sh demo [R]       R rounds (default 10)

has_worker() { on "$1" images 2>/dev/null | grep -q "${worker%:*}"; }

# Runs a job from the master and prints its JSON; on failure shows why.
master_job() { # iris job run args...
  local out
  if ! out=$(on "$master" job run --json --image "$worker" --memory 64m --timeout 60s "$@"); then
    echo "$out" >&2
    die "a job failed: iris job run $*"
  fi
  echo "$out"
}

# One round of federated averaging by secure aggregation: every node takes
# `steps` gradient steps from `weights` on its own shard and writes its
# update (its weights and its loss, weighted by its rows); the master gets
# only their sum, and divides. Prints "LOSS WEIGHTS", where LOSS is the loss
# of `weights` over all the data.
fedavg_round() { # weights steps
  local train id sum entries
  # An update holds the weights and the loss.
  entries=$(($(tr -cd , <<<"$1" | wc -c) + 2))
  train=$(master_job --on dataset:shard --secure-sum update.json --sum-length "$entries" -- /iris-worker gradient \
    /workspace/data/shard.csv --target y --weights "$1" --lr "$lr" --steps "$2")
  id=$(json_field id <<<"$train")
  sum="$data/$master/workspace/gathered/$id/sum.json"
  [ -f "$sum" ] || die "round $id left no sum"
  # The vector is Σ rows·(weights, loss); the weight Σ rows.
  awk -v v="$(json_field vector <"$sum")" -v w="$(json_field weight <"$sum")" 'BEGIN {
    n = split(v, a, ","); out = ""
    for (i = 1; i < n; i++) out = out (i > 1 ? "," : "") sprintf("%.12g", a[i] / w)
    printf "%.12g %s\n", a[n] / w, out
  }'
}

# One round with differential privacy: every node takes `steps` steps from
# `weights` and reports how far they moved the weights (--delta,
# unweighted); each site's node clips that to `dp_clip` and adds noise of
# its own for `dp_epsilon`; the master moves the weights by the noisy sum
# over the number of nodes. Prints the new weights.
dp_round() { # weights steps
  local train id sum entries
  entries=$(($(tr -cd , <<<"$1" | wc -c) + 2))
  train=$(master_job --on dataset:shard --secure-sum update.json --sum-length "$entries" \
    --clip "$dp_clip" --epsilon "$dp_epsilon" -- /iris-worker gradient \
    /workspace/data/shard.csv --target y --weights "$1" --lr "$lr" --steps "$2" --delta)
  id=$(json_field id <<<"$train")
  sum="$data/$master/workspace/gathered/$id/sum.json"
  [ -f "$sum" ] || die "round $id left no sum"
  awk -v w="$1" -v d="$(json_field vector <"$sum")" -v n="${#nodes[@]}" 'BEGIN {
    k = split(w, a, ","); split(d, b, ","); out = ""
    for (i = 1; i <= k; i++) out = out (i > 1 ? "," : "") sprintf("%.12g", a[i] + b[i] / n)
    print out
  }'
}

# The same round by plain federated averaging, to check the secure one: the
# master gathers every update and a container on it averages them.
plain_round() { # weights steps
  local train id avg model files=()
  train=$(master_job --on dataset:shard --gather -- /iris-worker gradient /workspace/data/shard.csv \
    --target y --weights "$1" --lr "$lr" --steps "$2")
  id=$(json_field id <<<"$train")
  while read -r file; do files+=("/workspace/in/$file"); done \
    < <(grep -o '"gathered/[^"]*/update.json"' <<<"$train" | tr -d '"')
  [ ${#files[@]} -eq ${#nodes[@]} ] || die "round gathered ${#files[@]} updates from ${#nodes[@]} nodes"
  avg=$(master_job --on "$master" --input "gathered/$id" -- /iris-worker average "${files[@]}")
  model="$data/$master/workspace/outputs/$(json_field id <<<"$avg")/model.json"
  echo "$(json_field loss <"$model") $(json_field weights <"$model")"
}

# The same round with no Iris at all: `docker run --rm` of the training
# containers side by side, then of the averaging one, on this one host.
# Prints the mean milliseconds of 3 such rounds.
bare_round_ms() { # weights steps
  local tmp="$data/.bare" total=0 t0 node run
  run=(docker run --rm --network none --user "$(id -u):$(id -g)" --label "iris.testnet=$data")
  mkdir -p "$tmp"
  for _ in 1 2 3; do
    t0=$(now_ms)
    for node in "${nodes[@]}"; do
      "${run[@]}" -v "$data/$node/workspace/private/shard:/workspace/data:ro" "$worker" \
        /iris-worker gradient /workspace/data/shard.csv --target y --weights "$1" \
        --lr "$lr" --steps "$2" >"$tmp/$node.json" &
    done
    wait
    "${run[@]}" -v "$tmp:/in:ro" "$worker" /iris-worker average $(printf '/in/%s.json ' "${nodes[@]}") >/dev/null
    total=$((total + $(now_ms) - t0))
  done
  rm -rf "$tmp"
  echo $((total / 3))
}

demo() {
  local rounds=${1:-10} lr=0.4 steps=25 weight_tol=0.05 loss_tol=0.01
  [[ "$rounds" =~ ^[0-9]+$ ]] && [ "$rounds" -ge 1 ] || die "R must be a number of rounds, 1 or more"
  load_state
  wait_until 60 has_worker "$master" >/dev/null || die "$master has not loaded $worker"
  [ ${#nodes[@]} -ge 3 ] || die "the demo sums securely over 3 nodes or more (testnet.sh up 3)"
  say "federated averaging over ${nodes[*]}: $rounds rounds of $steps local steps (learning rate $lr)"
  echo "   each round: every node trains on its own shard; the master learns only the secure sum of the updates"
  say "the datasets of the network, as $master sees them"
  on "$master" datasets --tag testnet
  say "a dry run first: one step on a mock sample, on $master alone (no site runs anything)"
  on "$master" job run --dry-run --on dataset:shard --image "$worker" --memory 64m --timeout 60s -- \
    /iris-worker gradient /workspace/data/mock.csv --target y --weights 0,0,0 --lr "$lr" --steps 1 |
    sed 's/^/   /' || die "the dry run failed"
  say "the rounds, on dataset:shard"
  printf '%5s  %-10s  %-7s  %s\n' ROUND LOSS TIME "WEIGHTS (x1, x2, bias)"
  local weights=0,0,0 times=() r t0 ms result loss next
  for r in $(seq 1 "$rounds"); do
    t0=$(now_ms)
    result=$(fedavg_round "$weights" "$steps")
    loss=${result% *} next=${result#* }
    ms=$(($(now_ms) - t0))
    times+=("$ms")
    printf '%5d  %-10.6f  %-7s  %s\n' "$r" "$loss" "$(secs "$ms")s" "$(brief "$next")"
    weights=$next
  done
  # Zero steps: the loss of the final model, evaluated where the data are.
  result=$(fedavg_round "$weights" 0)
  loss=${result% *}
  printf '%5s  %-10.6f  %-7s  %s\n' final "$loss" "" "$(brief "$weights")"

  say "check: the same last round by plain federated averaging (the master gathers each update)"
  local secure plain agree
  secure=$(fedavg_round "$weights" "$steps")
  plain=$(plain_round "$weights" "$steps")
  agree=$(awk -v s="$secure" -v p="$plain" 'BEGIN {
    gsub(",", " ", s); gsub(",", " ", p); n = split(s, a, " "); split(p, b, " ")
    for (i = 1; i <= n; i++) { d = a[i] - b[i]; if (d < 0) d = -d; if (d > gap) gap = d }
    printf "largest difference %.2e (tolerance 1e-6) ", gap; print (gap <= 1e-6) ? "-> agree" : "-> DISAGREE"
  }')
  echo "secure  loss and weights: $secure"
  echo "plain   loss and weights: $plain"
  echo "$agree"

  say "check: a central fit on the union of the shards (done here only to verify)"
  local mounts=() csvs=() node central
  for node in "${nodes[@]}"; do
    mounts+=(-v "$data/$node/workspace/private/shard/shard.csv:/shards/$node.csv:ro")
    csvs+=("/shards/$node.csv")
  done
  central=$(docker run --rm --network none --user "$(id -u):$(id -g)" --label "iris.testnet=$data" \
    "${mounts[@]}" "$worker" /iris-worker fit "${csvs[@]}" --target y)
  local c_weights c_loss verdict
  c_weights=$(json_field weights <<<"$central")
  c_loss=$(json_field loss <<<"$central")
  verdict=$(awk -v f="$weights" -v c="$c_weights" -v fl="$loss" -v cl="$c_loss" \
    -v wt="$weight_tol" -v lt="$loss_tol" 'BEGIN {
      n = split(f, a, ","); split(c, b, ",")
      for (i = 1; i <= n; i++) { d = a[i] - b[i]; if (d < 0) d = -d; if (d > gap) gap = d }
      rel = (fl - cl) / cl
      printf "federated  loss %.6f  weights", fl; for (i = 1; i <= n; i++) printf " %.4f", a[i]; print ""
      printf "central    loss %.6f  weights", cl; for (i = 1; i <= n; i++) printf " %.4f", b[i]; print ""
      printf "gap: weights %.4f (tolerance %s), loss %+.2f%% (tolerance %.0f%%) ", gap, wt, 100 * rel, 100 * lt
      print (gap <= wt && rel <= lt) ? "-> agree" : "-> DISAGREE"
    }')
  echo "$verdict"

  # With a handful of sites, noise that protects each site's whole update
  # is large next to the update: the epsilon a round that keeps the model
  # near the central fit is large too, and this says so.
  local dp_clip=0.5 dp_epsilon=30 dp_weights=0,0,0 dp_loss
  say "with differential privacy: $rounds rounds, each site's update clipped to $dp_clip and noised for epsilon $dp_epsilon a round"
  echo "   each site's node (not the job) clips how far its steps moved the weights and adds noise of its own"
  for r in $(seq 1 "$rounds"); do
    dp_weights=$(dp_round "$dp_weights" "$steps")
  done
  # Evaluated without noise, for the demo only (the owners allowed it).
  result=$(fedavg_round "$dp_weights" 0)
  dp_loss=${result% *}
  awk -v f="$dp_weights" -v c="$c_weights" -v fl="$dp_loss" -v cl="$c_loss" -v nf="$weights" \
    -v r="$rounds" -v e="$dp_epsilon" 'BEGIN {
      n = split(f, a, ","); split(c, b, ","); split(nf, p, ",")
      for (i = 1; i <= n; i++) { d = a[i] - b[i]; if (d < 0) d = -d; if (d > gap) gap = d }
      printf "private    loss %.6f  weights", fl; for (i = 1; i <= n; i++) printf " %.4f", a[i]; print ""
      printf "noise-free          weights"; for (i = 1; i <= n; i++) printf " %.4f", p[i]; print ""
      printf "central    loss %.6f  weights", cl; for (i = 1; i <= n; i++) printf " %.4f", b[i]; print ""
      # zCDP: rho a round from (epsilon, 1e-6), rounds add up, back to epsilon.
      L = log(1e6); s = sqrt(L + e) - sqrt(L); rho = r * s * s
      printf "private gap to the central fit: weights %.4f, loss %+.2f%%; it cost each site epsilon %s a round, %.1f in all (delta 1e-6)\n", gap, 100 * (fl - cl) / cl, e, rho + 2 * sqrt(rho * L)
    }'

  say "check: no private shard appears in another node's workspace"
  local leaks=0 owner other hash row
  for owner in "${nodes[@]}"; do
    hash=$(sha256sum <"$data/$owner/workspace/private/shard/shard.csv" | cut -d' ' -f1)
    row=$(sed -n 2p "$data/$owner/workspace/private/shard/shard.csv")
    for other in "${nodes[@]}"; do
      [ "$other" = "$owner" ] && continue
      if find "$data/$other/workspace" -type f -exec sha256sum {} + | grep -q "^$hash" ||
        grep -rqF -- "$row" "$data/$other/workspace"; then
        echo "LEAK: $owner's shard is in $other's workspace"
        leaks=$((leaks + 1))
      fi
    done
  done
  [ "$leaks" -eq 0 ] && echo "none: ${#nodes[@]} shards checked, by hash and by content, against every other workspace"

  say "time per round"
  local bare=0
  # Above 10 nodes the baseline is skipped: 25 bare `docker run`s at once
  # beside 25 node containers wedged Docker 20.10's engine on this machine.
  [ ${#nodes[@]} -le 10 ] && bare=$(bare_round_ms "$weights" "$steps")
  printf '%s\n' "${times[@]}" | awk -v bare="$bare" '{ sum += $1; if (NR == 1 || $1 < lo) lo = $1; if ($1 > hi) hi = $1 } END {
    mean = sum / NR
    printf "mean %.2f s over %d rounds (fastest %.2f s, slowest %.2f s), containers included\n", mean / 1000, NR, lo / 1000, hi / 1000
    if (bare > 0) printf "baseline: the same containers by bare docker run, no Iris: %.2f s; Iris / bare = %.2f\n", bare / 1000, mean / bare
    else print "baseline: skipped above 10 nodes"
    print "target: under 1 s with 3 nodes; Flower 1.41 (3 SuperNodes) took 5.9 s"
  }'
  docker stats --no-stream --format '{{.Name}} {{.MemUsage}}' $(printf "$prefix-%s " "${nodes[@]}") |
    awk '{ v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[A-Za-z]+$/, "", v)
           f = (u == "GiB") ? 1024 : (u == "KiB") ? 1 / 1024 : 1; total += v * f }
         END { printf "memory of the %d node containers: %.0f MiB in all (Flower: about 1.5 GiB)\n", NR, total }'
  [[ "$verdict" == *"-> agree" ]] && [[ "$agree" == *"-> agree" ]] && [ "$leaks" -eq 0 ] ||
    die "the demo's checks failed"
}

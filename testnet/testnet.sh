#!/usr/bin/env bash
# An Iris network of node containers on a private Docker network, on this
# one machine. Each node is an `iris-node` container that drives the host's
# Docker engine through the mounted socket (Docker-out-of-Docker).
#
#   testnet/testnet.sh up [N]     build the images, start N nodes (default 3,
#                                 at most 26) with their own private data; the
#                                 first creates the network, the second joins
#                                 through it, every later one through the node
#                                 before it
#   testnet/testnet.sh status     the map as every node sees it
#   testnet/testnet.sh env        where the master's API is, for the Python
#                                 client: eval "$(testnet/testnet.sh env)"
#   testnet/testnet.sh ui         a one-time link to the master's dashboard
#   testnet/testnet.sh demo [R]   federated averaging of a linear model over
#                                 R rounds (default 10) on the dataset 'shard'
#                                 that every site declared, after a dry run on
#                                 its mock sample; checked against a central
#                                 fit; no private file may leak
#   testnet/testnet.sh train [R]  a real Python workload: logistic regression
#                                 on breast-cancer data split over the
#                                 sites, R rounds (default 20) of FedAvg from
#                                 the Python client's Training driver,
#                                 checked against a central fit; with
#                                 --chaos (5 nodes), a site is killed and
#                                 the master restarts during the training
#   testnet/testnet.sh bench [R]  the time of a training round, cold jobs,
#                                 warm workers and bare `docker run` of the
#                                 same containers, for the Rust worker and
#                                 the Python workload, R rounds each
#   testnet/testnet.sh chaos      kill -9 a member during a job, cut another
#                                 off the network and back, restart the
#                                 master; ends with a table of outcomes
#   testnet/testnet.sh exfil [--open]
#                                 the master tries every known way to take a
#                                 site's private data; a table of attempts
#                                 and outcomes, non-zero if any byte got out
#                                 (--open: under a wide-open site policy)
#   testnet/testnet.sh down       remove the containers, network and files
#                                 this script made, and nothing else
#
# Options for up (or the environment):
#   --key K      network key       (IRIS_TESTNET_KEY; default: random)
#   --image I    node image        (IRIS_TESTNET_IMAGE; default iris-node:latest)
#   --subnet S   Docker subnet     (IRIS_TESTNET_SUBNET; default: a free 10.213.x.0/24)
# IRIS_NO_BUILD=1 uses the images as they are instead of building them;
# IRIS_TESTNET_NAME (default iris-testnet) names the Docker network and
# prefixes the containers.
#
# Node directories live in testnet/.data/<node>/ (iris.toml, identity, state,
# workspace/{private,public,image}); what up made is listed in
# testnet/.data/testnet.state.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
# A second testnet (the test suite's smoke run) takes another name, so it
# never touches yours: its files go to testnet/.data/<name>/.
prefix=${IRIS_TESTNET_NAME:-iris-testnet}
[[ "$prefix" =~ ^[a-z][a-z0-9-]{0,30}$ ]] || { echo "testnet: bad IRIS_TESTNET_NAME '$prefix'" >&2; exit 2; }
data="$here/.data"
[ "$prefix" = iris-testnet ] || data="$here/.data/$prefix"
state="$data/testnet.state"
names=(alice bob carol dave erin frank grace heidi ivan judy kate liam mia
  noah olga pat quinn rosa sam tina uma vic wendy xena yuri zoe)
worker=iris-worker:latest

# ---------------------------------------------------------------- helpers

say() { printf '== %s\n' "$*"; }
die() { printf 'testnet: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }
secs() { awk -v ms="$1" 'BEGIN { printf "%.1f", ms / 1000 }'; }

# `iris` in a node's container; its API listens on the container's loopback.
on() { # node args...
  local node=$1; shift
  docker exec "$prefix-$node" iris "$@"
}

load_state() {
  [ -f "$state" ] || die "no testnet is up here: run testnet/testnet.sh up"
  # shellcheck disable=SC1090
  source "$state"
  read -r -a nodes <<<"$NODES"
  master=${nodes[0]}
}

# Each node's view of the map as "name state" lines.
view() { # node
  on "$1" nodes 2>/dev/null | awk 'NR > 1 { print $1, ($2 == "*" ? $4 : $3) }'
}

# How `observer` sees `subject`: alive, suspect, gone, left or unknown.
state_of() { # observer subject
  view "$1" | awk -v s="$2" '$1 == s { print $2; found = 1 } END { if (!found) print "unknown" }'
}

# Polls `check args...` every 200 ms until it succeeds or `seconds` pass;
# prints the milliseconds it took.
wait_until() { # seconds check args...
  local deadline=$(($(now_ms) + $1 * 1000)) start
  start=$(now_ms)
  shift
  until "$@"; do
    [ "$(now_ms)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
  echo $(($(now_ms) - start))
}

all_see() { # state subject nodes...: every node but the subject sees that
  local want=$1 subject=$2 node; shift 2
  for node in "$@"; do
    [ "$node" = "$subject" ] && continue
    [ "$(state_of "$node" "$subject")" = "$want" ] || return 1
  done
}

all_alive() { # nodes...: every node sees every node alive
  local node
  for node in "$@"; do
    [ "$(view "$node" | awk '$2 == "alive"' | wc -l)" -eq $# ] || return 1
  done
}

# As `on`, passing IRIS_NETWORK_KEY from our environment into the container.
with_key() { # node args...
  local node=$1; shift
  docker exec -e IRIS_NETWORK_KEY "$prefix-$node" iris "$@"
}

api_up() { on "$1" status >/dev/null 2>&1; }

# Stops a node's container and starts it again: the drills' hooks (natlab.sh
# has its own, for nodes that are processes).
stop_node() { docker stop "$prefix-$1" >/dev/null; }
start_node() { docker start "$prefix-$1" >/dev/null; }

# Every other node has heard from `node` since `since_ms`: a restarted node
# announces a fresh record, which reaches every member (a node watches only
# its few neighbours, so it need not hear from every member itself). Its
# restored map starts out alive, so only fresh news proves it is back.
all_heard_from_since() { # node since_ms
  local subject=$1 since=$2 other
  for other in "${nodes[@]}"; do
    [ "$other" = "$subject" ] && continue
    on "$other" nodes --json | awk -F'[:,]' -v want="\"$subject\"" -v since="$since" '
      /^    "name":/ { gsub(/ /, "", $2); name = $2 }
      /^    "last_seen":/ && name == want { fresh = ($2 + 0 >= since) }
      END { exit !fresh }' || return 1
  done
}

# "node state" per task of `iris job show --json`: each task names its node
# before its state.
task_states() { # < job json
  awk -F'"' '/"node":/ { node = $4 } /"state":/ && node != "" { print node, $4; node = "" }'
}

# "3.0090 -1.9987 0.9903" from "3.00903885891,-1.99871997809,0.99034984285".
brief() { awk -v w="$1" 'BEGIN { n = split(w, a, ","); for (i = 1; i <= n; i++) printf "%s%.4f", (i > 1 ? " " : ""), a[i] }'; }

# ---------------------------------------------------------------- up

# A TCP port free on this host's loopback now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A node's private shard (testnet/shard.awk).
make_shard() { # index rows
  awk -v i="$1" -v n="$2" -f "$here/shard.awk"
}

docker_socket() {
  local host=${DOCKER_HOST:-unix:///var/run/docker.sock}
  case "$host" in
    unix://*) echo "${host#unix://}" ;;
    *) die "DOCKER_HOST=$host: the nodes need a unix socket to mount" ;;
  esac
}

# The first 10.213.x.0/24 (x = 0..99) no other Docker network uses.
create_network() { # subnet-or-empty
  local subnet
  for subnet in ${1:-$(seq -f '10.213.%g.0/24' 0 99)}; do
    if docker network create --driver bridge --subnet "$subnet" \
      --label "iris.testnet=$data" "$prefix" >/dev/null 2>&1; then
      echo "$subnet"
      return 0
    fi
  done
  die "cannot create Docker network $prefix (subnet in use? set --subnet)"
}

up() {
  local n=3 key=${IRIS_TESTNET_KEY:-} image=${IRIS_TESTNET_IMAGE:-iris-node:latest}
  local subnet=${IRIS_TESTNET_SUBNET:-}
  while [ $# -gt 0 ]; do
    case "$1" in
      --key) key=${2:?--key needs a value}; shift 2 ;;
      --image) image=${2:?--image needs a value}; shift 2 ;;
      --subnet) subnet=${2:?--subnet needs a value}; shift 2 ;;
      [0-9]*) n=$1; shift ;;
      *) die "unknown option '$1' for up" ;;
    esac
  done
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le ${#names[@]} ] ||
    die "N must be a number from 1 to ${#names[@]}"
  [ -n "$key" ] || key=testnet-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
  docker info >/dev/null 2>&1 || die "no Docker engine answers here"
  [ -f "$state" ] && down
  if [ -z "${IRIS_NO_BUILD:-}" ]; then
    "$root/docker/build-images.sh" all
  fi
  docker image inspect "$image" >/dev/null 2>&1 || die "no image $image: run docker/build-images.sh all"
  docker image inspect "$worker" >/dev/null 2>&1 || die "no image $worker: run docker/build-images.sh all"
  local sock user
  sock=$(docker_socket)
  # The nodes run as you, so the files they make are yours; the socket's
  # group lets them use the engine.
  user=(--user "$(id -u):$(id -g)" --group-add "$(stat -c %g "$sock")")

  mkdir -p "$data"
  subnet=$(create_network "$subnet")
  local base=${subnet%.0/24}
  nodes=("${names[@]:0:n}")
  # Written first, so that down can clean up after a failed up.
  printf 'NODES="%s"\nSUBNET=%s\nBASE=%s\n' "${nodes[*]}" "$subnet" "$base" >"$state"
  say "network $prefix on $subnet; $n nodes"

  for i in "${!nodes[@]}"; do
    local node=${nodes[$i]} dir="$data/${nodes[$i]}"
    mkdir -p "$dir/workspace/private/shard" "$dir/workspace/public" "$dir/workspace/image"
    make_shard "$i" $((200 * (i + 2))) >"$dir/workspace/private/shard/shard.csv"
    # The master loads the worker image from its library. (The nodes share
    # this host's engine, so all of them list it in the map; between
    # machines, a job ships the tar to nodes that lack the image.)
    [ "$i" -eq 0 ] && cp "$root/docker/.build/iris-worker.tar" "$dir/workspace/image/"
    # The master's API is published on this host's loopback, for the Python
    # client (`testnet.sh env` says where), on a port free now and kept
    # across restarts of the container (a port Docker picks changes), so
    # that a client outlives a restart of the master.
    local api=(--api-bind 127.0.0.1) publish=()
    [ "$i" -eq 0 ] && api=(--api-bind 0.0.0.0) publish=(-p "127.0.0.1:$(free_port):8000")
    docker run --rm "${user[@]}" --label "iris.testnet=$data" -v "$dir:/iris" "$image" \
      init --name "$node" --workspace-host-path "$dir/workspace" "${api[@]}" >/dev/null
    docker run -d --name "$prefix-$node" --hostname "$node" "${user[@]}" "${publish[@]}" \
      --network "$prefix" --ip "$base.$((10 + i))" --label "iris.testnet=$data" \
      -v "$dir:/iris" -v "$sock:/var/run/docker.sock" "$image" run >/dev/null
  done
  for node in "${nodes[@]}"; do
    wait_until 30 api_up "$node" >/dev/null || {
      docker logs --tail 20 "$prefix-$node" >&2
      die "node $node did not start"
    }
    # down removes the job containers each node made, by its peer id.
    echo "PEER_$node=$(on "$node" status | sed -n 's/^peer id: *//p')" >>"$state"
  done

  local master=${nodes[0]}
  say "$master creates network 'testnet'"
  # The key goes through the environment, never on a command line that
  # `ps` would show.
  export IRIS_NETWORK_KEY=$key
  local created id
  created=$(with_key "$master" network create --name testnet)
  echo "$created"
  # Nodes join with a ticket: the network's id pins it and its master,
  # whichever member they join through.
  id=$(grep -o '^iris:[0-9a-f]\{64\}' <<<"$created" | head -1)
  [ -n "$id" ] || die "network create printed no join ticket"
  for i in $(seq 1 $((n - 1))); do
    # bob joins through the genesis, every later node through the one before.
    local via=${nodes[$((i - 1))]} peer
    peer=$(on "$via" status | sed -n 's/^peer id: *//p')
    say "${nodes[$i]} joins through $via"
    with_key "${nodes[$i]}" network join "$id@/ip4/$base.$((10 + i - 1))/tcp/7000/p2p/$peer"
  done
  wait_until 30 all_alive "${nodes[@]}" >/dev/null || die "the nodes did not all see each other alive"
  # A site runs another node's job only with an image and a command its
  # owner approved: here each owner approves, ahead of time and pinned to
  # the worker's digest, the three commands the demo and the drills run
  # (with any arguments). Everything else stays as the default policy has it.
  say "each site's owner approves what $worker may run on their own node"
  for node in "${nodes[@]:1}"; do
    for command in gradient stats sleep; do
      echo "   [$node's owner] iris policy allow-image $worker --prefix -- /iris-worker $command"
      on "$node" policy allow-image "$worker" --prefix -- /iris-worker "$command" >/dev/null
    done
  done
  # A site takes part in a secure sum only with enough sites its owner
  # recognises (min_aggregate, the master's own node never counted): here
  # each site's owner recognises every other site, pinned to its identity.
  local sites=("${nodes[@]:1}")
  say "each site's owner recognises the other sites as co-participants of secure sums"
  for node in "${sites[@]}"; do
    local others=()
    for other in "${sites[@]}"; do [ "$other" = "$node" ] || others+=("$other"); done
    [ ${#others[@]} -gt 0 ] || continue
    echo "   [$node's owner] iris policy recognise ${others[*]}"
    on "$node" policy recognise "${others[@]}" >/dev/null
    if [ ${#sites[@]} -eq 2 ]; then
      # With two sites besides the master's own node, a sum over them all
      # tells the master the sum of the two sites' updates: each owner
      # accepts that here, knowingly.
      echo "   [$node's owner] iris policy set min_aggregate ${#sites[@]}"
      on "$node" policy set min_aggregate "${#sites[@]}" >/dev/null
    fi
    # The demo compares training without noise to training with it, so
    # each owner lets noise-free sums in too (denied by default: over
    # chosen subsets, or repeated, they tell a master a site's update).
    echo "   [$node's owner] iris policy set noise_free_sums allow"
    on "$node" policy set noise_free_sums allow >/dev/null
  done
  # Each owner declares the shard as a dataset: its card (schema, rounded
  # row count, a synthetic mock sample) goes on the map; the rows stay.
  say "each owner declares their shard as the dataset 'shard'"
  for node in "${nodes[@]}"; do
    on "$node" datasets add shard private/shard --tag testnet --tag regression \
      --description "y = 3 x1 - 2 x2 + 1 + noise, this site's share" --rows-bucket 100 --mock-rows 20 |
      sed -n "1s/^/   [$node's owner] /p"
  done
  wait_until 30 all_datasets_listed >/dev/null || die "the datasets did not reach every map"
  # The demo's training with differential privacy spends each site's
  # budget for its shard (1 by default): here the owners give it room for
  # a few demos, knowingly (docs/data-owners.md).
  for node in "${sites[@]}"; do
    echo "   [$node's owner] iris policy budget shard 1000"
    on "$node" policy budget shard 1000 >/dev/null
  done
  say "the map as ${nodes[$((n - 1))]} sees it"
  on "${nodes[$((n - 1))]}" nodes
  echo
  echo "Next: testnet/testnet.sh demo | status | chaos | exfil | down"
}

# Whether the last node lists every node's shard.
all_datasets_listed() {
  [ "$(on "${nodes[$((${#nodes[@]} - 1))]}" datasets --tag testnet | awk 'NR > 1' | wc -l)" -eq "${#nodes[@]}" ]
}

# Where the master's API is, for the Python client (python/README.md):
# eval "$(testnet/testnet.sh env)".
env_vars() {
  load_state
  local port
  port=$(docker port "$prefix-$master" 8000/tcp | head -1 | sed 's/.*://')
  [ -n "$port" ] || die "the master's API is not published (a testnet made by an older testnet.sh: down, then up)"
  echo "export IRIS_URL=http://127.0.0.1:$port IRIS_TOKEN_FILE=$data/$master/api.token"
}

# A one-time link to the master's dashboard, on its published port.
ui_link() {
  load_state
  local port link
  port=$(docker port "$prefix-$master" 8000/tcp | head -1 | sed 's/.*://')
  [ -n "$port" ] || die "the master's API is not published (a testnet made by an older testnet.sh: down, then up)"
  link=$(on "$master" ui --no-open 2>/dev/null) || die "the master gave no login link"
  echo "${link/127.0.0.1:8000/127.0.0.1:$port}"
}

status() {
  load_state
  local node
  for node in "${nodes[@]}"; do
    say "$node ($(docker inspect -f '{{.State.Status}}' "$prefix-$node" 2>/dev/null || echo missing))"
    on "$node" nodes 2>&1 || true
  done
}

# ---------------------------------------------------------------- chaos

job_states() { on "$master" job show "$1" --json | task_states; }
task_is() { [ "$(job_states "$1" | awk -v n="$2" '$1 == n { print $2 }')" = "$3" ]; }
job_ended() { ! job_states "$1" | grep -qE ' (queued|running)$'; }
no_containers() { [ -z "$(docker ps -aq --filter "label=iris.node=$1" --filter "label=iris.job=$2")" ]; }

chaos() {
  load_state
  local n=${#nodes[@]}
  [ "$n" -ge 3 ] || die "chaos needs 3 nodes or more (testnet.sh up 3)"
  local killed=${nodes[$((n - 1))]} cut=${nodes[1]} ms job id states ok peer t0

  say "1. kill -9 $killed while a job runs on every node"
  job=$(on "$master" job submit --json --image "$worker" --on all --memory 32m --timeout 60s -- \
    /iris-worker sleep 8)
  id=$(json_field id <<<"$job")
  wait_until 60 task_is "$id" "$killed" running >/dev/null || die "$id never ran on $killed"
  docker kill --signal KILL "$prefix-$killed" >/dev/null
  ms=$(wait_until 90 job_ended "$id") || ms=timeout
  states=$(job_states "$id" | tr '\n' ' ')
  ok=$(job_states "$id" | awk -v k="$killed" '($1 == k) != ($2 == "lost") || ($1 != k && $2 != "succeeded") { bad = 1 }
    END { print bad ? 0 : 1 }')
  outcome "kill -9 $killed mid-job" "$killed's task lost, others succeed" \
    "$(sed 's/ \([a-z]*\) \([a-z]\)/ \1, \2/g' <<<"${states% }"); job over $(secs "${ms/timeout/90000}") s after the kill" "$ok"

  say "   restart $killed"
  peer=PEER_$killed
  # Its job container outlived it: the engine is the host's, not the node's.
  local stray
  stray=$(docker ps -aq --filter "label=iris.node=${!peer}" --filter "label=iris.job=$id" | wc -l)
  t0=$(now_ms)
  docker start "$prefix-$killed" >/dev/null
  ok=0
  if wait_until 60 api_up "$killed" >/dev/null && wait_until 60 all_heard_from_since "$killed" "$t0" >/dev/null &&
    wait_until 60 all_alive "${nodes[@]}" >/dev/null &&
    wait_until 30 no_containers "${!peer}" "$id" >/dev/null; then
    ok=1 ms=$(($(now_ms) - t0))
  fi
  outcome "restart $killed" "rejoins; removes its stray job container" \
    "all in touch $(secs "${ms:-60000}") s after the start; its containers of the job: $stray before, $(docker ps -aq --filter "label=iris.job=$id" | wc -l) after" "$ok"

  say "2. cut $cut off the Docker network, then reconnect it"
  local ip suspect gone alive
  ip=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$prefix\").IPAddress}}" "$prefix-$cut")
  t0=$(now_ms)
  docker network disconnect "$prefix" "$prefix-$cut"
  suspect=$(wait_until 30 all_see suspect "$cut" "${nodes[@]}") && suspect=$(($(now_ms) - t0))
  gone=$(wait_until 60 all_see gone "$cut" "${nodes[@]}") && gone=$(($(now_ms) - t0))
  # The cut-off node has lost the others just the same.
  local its_view
  its_view=$(state_of "$cut" "$master")
  ok=0; [ -n "$suspect" ] && [ -n "$gone" ] && [ "$its_view" != alive ] && ok=1
  outcome "cut $cut off the network" "suspect, then gone, on every node" \
    "suspect after $(secs "${suspect:-0}") s, gone after $(secs "${gone:-0}") s; $cut sees $master $its_view" "$ok"
  t0=$(now_ms)
  docker network connect --ip "$ip" "$prefix" "$prefix-$cut"
  ok=0
  alive=$(wait_until 60 all_alive "${nodes[@]}") && ok=1
  outcome "reconnect $cut" "alive again on every node" \
    "all alive after $(secs "${alive:-60000}") s" "$ok"

  say "3. restart the master, $master"
  local jobs_before jobs_after='' role='' same=0 new_job=failed
  jobs_before=$(on "$master" job list | awk 'NR > 1 { print $1, $2 }' | sort)
  t0=$(now_ms)
  docker restart "$prefix-$master" >/dev/null
  ok=0 ms=''
  if wait_until 60 api_up "$master" >/dev/null && wait_until 60 all_heard_from_since "$master" "$t0" >/dev/null &&
    wait_until 60 all_alive "${nodes[@]}" >/dev/null; then
    ms=$(($(now_ms) - t0))
    jobs_after=$(on "$master" job list | awk 'NR > 1 { print $1, $2 }' | sort)
    same=$(comm -12 <(echo "$jobs_before") <(echo "$jobs_after") | wc -l)
    role=$(on "$master" status | sed -n 's/^role: *//p')
    on "$master" job run --image "$worker" --on all --memory 32m --timeout 60s -- \
      /iris-worker stats /workspace/private/shard/shard.csv >/dev/null 2>&1 && new_job=succeeded
    [ "$jobs_after" = "$jobs_before" ] && [ "$role" = master ] && [ "$new_job" = succeeded ] && ok=1
  fi
  outcome "restart $master (master)" "jobs and map restored, still master" \
    "$same of $(wc -l <<<"$jobs_before") jobs as before; heard from all $(secs "${ms:-60000}") s after the restart; role ${role:-?}; a new job $new_job" "$ok"

  say "faults injected and outcomes"
  print_outcomes "FAULT|EXPECTED|OBSERVED|RESULT"
  local failed
  failed=$(failed_outcomes)
  [ "$failed" -eq 0 ] || die "$failed of ${#outcomes[@]} outcomes were not as expected"
}

# ---------------------------------------------------------------- down

down() {
  local ours="label=iris.testnet=$data" var node
  [ -f "$state" ] && source "$state"
  # The nodes, and the job containers each of them made on the engine.
  docker ps -aq --filter "$ours" | xargs -r docker rm -f >/dev/null
  # Images a drill built (exfil's relabelled worker).
  docker images -q --filter "$ours" | xargs -r docker rmi -f >/dev/null 2>&1 || true
  for var in $(compgen -v PEER_ || true); do
    docker ps -aq --filter "label=iris.node=${!var}" | xargs -r docker rm -f >/dev/null
  done
  if [ "$(docker network inspect -f '{{index .Labels "iris.testnet"}}' "$prefix" 2>/dev/null)" = "$data" ]; then
    docker network rm "$prefix" >/dev/null
  fi
  for node in ${NODES:-}; do rm -rf "${data:?}/$node"; done
  rm -rf "${data:?}/cancer" "${data:?}/bench"
  rm -f "$state"
  [ "$prefix" = iris-testnet ] || rmdir "$data" 2>/dev/null || true
  unset NODES
  echo "testnet down"
}

# shellcheck source=testnet/outcomes.sh
source "$here/outcomes.sh"
# shellcheck source=testnet/demo.sh
source "$here/demo.sh"
# shellcheck source=testnet/exfil.sh
source "$here/exfil.sh"
# shellcheck source=testnet/train.sh
source "$here/train.sh"
# shellcheck source=testnet/bench.sh
source "$here/bench.sh"

case "${1:-}" in
  up) shift; up "$@" ;;
  exfil) shift; exfil "$@" ;;
  status) status ;;
  env) env_vars ;;
  ui) ui_link ;;
  demo) demo "${2:-10}" ;;
  train) train "${2:-20}" "${3:-}" ;;
  bench) bench "${2:-10}" ;;
  chaos) chaos ;;
  down) down ;;
  *) sed -n '2,49p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac

#!/usr/bin/env bash
# A NAT lab on one machine (issue 28): real iris nodes in network
# namespaces, a public master and sites each behind a NAT router of its
# own that lets nothing new in, as a hospital's firewall would. It shows
# that sites which can only dial out take full part: through the master's
# relay, and directly where hole punching opens a way.
#
# Usage: testnet/natlab.sh up [SITES] [--strict] [--proxy]
#                                namespaces, nodes, a network (3 sites by
#                                default); --strict: a site may only dial out
#                                to the master's port 443; --proxy: a site
#                                may only go out through an HTTP proxy (the
#                                last site; with both, the one before is the
#                                strict one)
#        testnet/natlab.sh check joining, the map, the addresses advertised,
#                                image shipping, a job on all, a secure sum
#                                over every site, transfers from one site to
#                                another, sessions on the outbound-only
#                                sites; exits non-zero if any of them failed
#        testnet/natlab.sh demo [ROUNDS]
#                                the Python FedAvg example (2 rounds by
#                                default) over shards the sites declare:
#                                each round a secure sum across the NATs
#        testnet/natlab.sh chaos  restarts the master (the relay) and kills a
#                                site with -9 and starts it again; after each,
#                                a secure sum and a transfer across the NATs
#        testnet/natlab.sh exfil [--open]
#                                testnet.sh's exfiltration drill (exfil.sh),
#                                the master against the first site, across
#                                its NAT
#        testnet/natlab.sh bench [MiB]
#                                a transfer master -> site, site -> site after
#                                hole punching, and through the relay (with
#                                --strict); the hole punches the sites made
#        testnet/natlab.sh down  stops the nodes, removes the namespaces
#
# Topology (addresses only inside namespaces this script makes: the
# "internet" is a bridge in a namespace of its own, on 198.51.100.0/24, a
# documentation range):
#
#   irisnat-wan: bridge, the internet
#     irisnat-alice    198.51.100.10   the master, reachable by anyone on
#                                      port 443 (its p2p port)
#     irisnat-r-bob    198.51.100.20   bob's NAT router: MASQUERADE out,
#       irisnat-bob    10.0.1.2        nothing new in
#     irisnat-r-carol  198.51.100.30   carol's, the same
#       irisnat-carol  10.0.2.2
#
# A --strict site's router lets out only TCP to 198.51.100.10 port 443, as
# a hospital that allows nothing but HTTPS out would. A --proxy site's
# router forwards nothing: an HTTP CONNECT proxy on the router
# (testnet/connect_proxy.py, tunnels to port 443 only, with a password) is
# the way out.
#
# With 2 sites or more, the last site runs a Docker engine of its own
# (dockerd, with its data under the lab's directory), empty, as a site on
# another machine would: every image it runs is shipped to it by the master
# across its NAT, and its owner approves it when it arrives. The other
# nodes share this machine's engine and the images docker/build-images.sh
# made.
#
# Needs root, iproute2, iptables and dockerd. The binary is target/x86_64-
# unknown-linux-gnu/debug/iris (IRIS_BIN to choose another). Everything it
# makes is named irisnat-* (namespaces) or lives under $IRIS_NATLAB_DIR
# (nodes, the site's engine and its containers).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${IRIS_BIN:-$root/target/x86_64-unknown-linux-gnu/debug/iris}
lab=${IRIS_NATLAB_DIR:-/tmp/irisnat}
prefix=irisnat
names=(alice bob carol dave erin)
key=natlab-network-key-0123456789
# What the --proxy site's proxy asks for (Basic authentication).
proxy_user=site:natlab-proxy-password

say() { echo "== $*"; }
die() { echo "natlab: $*" >&2; exit 1; }
in_ns() { # node command...: runs in the node's namespace
  local ns=$prefix-$1; shift
  ip netns exec "$ns" "$@"
}
iris() { # node args...: the node's own CLI, in its namespace
  local node=$1; shift
  IRIS_NETWORK_KEY=$key IRIS_DIR=$lab/$node in_ns "$node" "$bin" "$@"
}
sites() { cat "$lab/sites"; }
engine_site() { cat "$lab/engine" 2>/dev/null || true; }
strict_site() { cat "$lab/strict" 2>/dev/null || true; }
proxied_site() { cat "$lab/proxied" 2>/dev/null || true; }

# A veth pair from namespace $1 (named $2 there) to the wan bridge.
wire_to_wan() { # ns ifname address
  local ns=$1 if=$2 addr=$3 peer="w-${1#"$prefix"-}"
  ip link add "$if" netns "$ns" type veth peer name "$peer" netns $prefix-wan
  ip -n $prefix-wan link set "$peer" master br0 up
  ip -n "$ns" addr add "$addr/24" dev "$if"
  ip -n "$ns" link set "$if" up
}

master=/ip4/198.51.100.10/tcp/443

up() {
  local count=3 strict="" proxy=""
  while [ $# -gt 0 ]; do
    case $1 in
      --strict) strict=yes ;;
      --proxy) proxy=yes ;;
      [0-9]*) count=$1 ;;
      *) die "unknown option $1" ;;
    esac
    shift
  done
  [ "$count" -ge 1 ] && [ "$count" -le 4 ] || die "1 to 4 sites, not $count"
  [ -x "$bin" ] || die "no iris binary at $bin: build it first (cargo build)"
  ip netns list | grep -q "^$prefix-" && die "a lab is up already: testnet/natlab.sh down first"
  mkdir -p "$lab"
  printf '%s\n' "${names[@]:1:$count}" >"$lab/sites"
  rm -f "$lab/strict" "$lab/proxied" "$lab/engine"
  [ "$count" -lt 2 ] || sites | tail -1 >"$lab/engine"
  [ -z "$proxy" ] || sites | tail -1 >"$lab/proxied"
  [ -z "$strict" ] || sites | grep -vxF "$(proxied_site)" | tail -1 >"$lab/strict"

  say "the internet: a bridge in $prefix-wan"
  ip netns add $prefix-wan
  ip -n $prefix-wan link add br0 type bridge
  ip -n $prefix-wan link set br0 up
  ip -n $prefix-wan link set lo up

  say "alice, the master, on a public address (198.51.100.10)"
  ip netns add $prefix-alice
  ip -n $prefix-alice link set lo up
  wire_to_wan $prefix-alice wan 198.51.100.10

  local i=1 site
  for site in $(sites); do
    local public=198.51.100.$((10 + 10 * i)) lan=10.0.$i
    say "$site behind a NAT of its own ($lan.2 inside, $public outside, nothing new in)"
    ip netns add "$prefix-r-$site"
    ip -n "$prefix-r-$site" link set lo up
    wire_to_wan "$prefix-r-$site" wan "$public"
    ip netns add "$prefix-$site"
    ip -n "$prefix-$site" link set lo up
    ip link add lan netns "$prefix-r-$site" type veth peer name eth0 netns "$prefix-$site"
    ip -n "$prefix-r-$site" addr add "$lan.1/24" dev lan
    ip -n "$prefix-r-$site" link set lan up
    ip -n "$prefix-$site" addr add "$lan.2/24" dev eth0
    ip -n "$prefix-$site" link set eth0 up
    ip -n "$prefix-$site" route add default via "$lan.1"
    in_ns "r-$site" sysctl -qw net.ipv4.ip_forward=1
    in_ns "r-$site" iptables -t nat -A POSTROUTING -o wan -j MASQUERADE
    in_ns "r-$site" iptables -A FORWARD -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
    in_ns "r-$site" iptables -A FORWARD -i wan -j DROP
    # Like a real router, it drops (does not refuse) what comes in for
    # itself unasked: a hole punch's early packet then waits for a retry.
    in_ns "r-$site" iptables -A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
    in_ns "r-$site" iptables -A INPUT -i wan -j DROP
    if [ "$site" = "$(strict_site)" ]; then
      say "$site may only dial out to the master's port 443"
      in_ns "r-$site" iptables -A FORWARD -i lan -p tcp -d 198.51.100.10 --dport 443 -j ACCEPT
      in_ns "r-$site" iptables -A FORWARD -i lan -j DROP
    fi
    if [ "$site" = "$(proxied_site)" ]; then
      say "$site may only go out through an HTTP proxy at $lan.1:3128"
      in_ns "r-$site" iptables -A FORWARD -i lan -j DROP
      ip netns exec "$prefix-r-$site" python3 "$root/testnet/connect_proxy.py" "$lan.1" 3128 "$proxy_user" \
        >"$lab/proxy-$site.log" 2>&1 &
      echo $! >"$lab/proxy-$site.pid"
    fi
    i=$((i + 1))
  done

  [ -z "$(engine_site)" ] || start_engine "$(engine_site)"
  for node in alice $(sites); do
    say "$node: iris init and run"
    rm -rf "${lab:?}/$node"
    local port=7000
    [ "$node" != alice ] || port=443
    "$bin" init --dir "$lab/$node" --name "$node" --p2p-port $port --api-port 0 >/dev/null
    if [ "$node" = "$(proxied_site)" ]; then
      local n
      n=$(grep -nx "$node" "$lab/sites" | cut -d: -f1)
      sed -i "s|^# proxy = .*|proxy = \"http://$proxy_user@10.0.$n.1:3128\"|" "$lab/$node/iris.toml"
      grep -q '^proxy = ' "$lab/$node/iris.toml" || die "could not set $node's proxy"
    fi
    start "$node"
  done
  for node in alice $(sites); do
    wait_for 30 "$node's API" iris "$node" status || die "$node did not start: $lab/$node.log"
  done

  say "alice creates the network; the sites join through her public address"
  local created id peer
  created=$(iris alice network create --name natlab)
  id=$(grep -o '^iris:[0-9a-f]\{64\}' <<<"$created" | head -1)
  [ -n "$id" ] || die "network create printed no join ticket"
  peer=$(iris alice status | sed -n 's/^peer id: *//p')
  for site in $(sites); do
    iris "$site" network join "$id@$master/p2p/$peer" >/dev/null
  done

  # The master loads the images from their tars, which it ships to the
  # site with an engine of its own (check and demo do). The other sites
  # share this machine's engine: they have the images already.
  say "alice loads the probe and worker images from docker/.build"
  local image
  for image in iris-probe iris-worker; do
    iris alice images load "$root/docker/.build/$image.tar" >/dev/null ||
      die "alice cannot load $image.tar: docker/build-images.sh all first"
  done
  say "each site's owner approves the probe image (when it has it) and recognises the other sites"
  for site in $(sites); do
    [ "$site" = "$(engine_site)" ] ||
      iris "$site" policy allow-image iris-probe:latest --whole-image >/dev/null
    iris "$site" policy set noise_free_sums allow >/dev/null
    iris "$site" policy set min_aggregate 2 >/dev/null
    local others
    others=$(sites | grep -vx "$site" || true)
    # shellcheck disable=SC2086 # one name per word
    [ -z "$others" ] || iris "$site" policy recognise $others >/dev/null
  done
  say "up: alice and $(sites | paste -sd' ')"
}

# Starts a node in its namespace, directly (not through a shell function in
# the background, which would leave the node behind when killed). The site
# with an engine of its own is pointed at it.
start() { # node
  [ -s "$lab/$1.pid" ] || : >"$lab/$1.log" # a fresh lab, a fresh log
  local engine=()
  [ "$1" != "$(engine_site)" ] || engine=(env "DOCKER_HOST=$(engine_host "$1")")
  ip netns exec "$prefix-$1" "${engine[@]}" "$bin" run --dir "$lab/$1" >>"$lab/$1.log" 2>&1 &
  echo $! >"$lab/$1.pid"
}

# shellcheck source=testnet/site_engine.sh
source "$root/testnet/site_engine.sh"

# Asks a process to stop, waits up to `seconds` for it to end, then kills
# it, as `docker stop` does.
stop_pid() { # pid seconds
  local deadline=$((SECONDS + $2))
  kill "$1" 2>/dev/null || true
  while kill -0 "$1" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  kill -9 "$1" 2>/dev/null || true
}

wait_for() { # seconds what command...
  local limit=$1 deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "natlab: $what: not within $limit s" >&2
      return 1
    fi
    sleep 0.5
  done
}

# Every node is alive in alice's map.
all_alive() {
  local map
  map=$(iris alice nodes) || return 1
  for node in alice $(sites); do
    grep -Eq "^$node( \*)? +[a-z+]+ +alive" <<<"$map" || return 1
  done
}

check() {
  [ -f "$lab/sites" ] || die "no lab is up: testnet/natlab.sh up first"
  local failed=() n
  n=$(sites | wc -l)
  step() { # name command...
    local name=$1; shift
    echo "-- $name"
    if "$@"; then echo "   works"; else echo "   FAILS"; failed+=("$name"); fi
  }
  step "every node alive in the master's map" wait_for 30 "the map" all_alive
  step "no site advertises a private address" wait_for 30 "the addresses" advertised
  local engine_site
  engine_site=$(engine_site)
  if [ -n "$engine_site" ]; then
    step "the master ships iris-probe to $engine_site (an engine of its own) across its NAT" \
      ship iris-probe:latest /iris-worker exit 0
    iris "$engine_site" policy allow-image iris-probe:latest --whole-image >/dev/null || true
  fi
  step "a job on all" iris alice job run --image iris-probe:latest --on all -- /iris-worker exit 0
  step "a secure sum over the $n sites" iris alice job run --image iris-probe:latest --on "$(sites | paste -sd,)" \
    --secure-sum update.json --sum-length 4 -- /iris-worker update 4 1
  local first second
  first=$(sites | sed -n 1p)
  second=$(sites | sed -n 2p)
  if [ -n "$second" ]; then
    head -c 1048576 /dev/urandom >"$lab/$first/workspace/public/across.bin"
    step "a transfer from $first to $second, asked by the master" \
      iris alice files get --from "$first" across.bin --to "$second"
  fi
  local site how
  for site in "$(strict_site)" "$(proxied_site)"; do
    [ -n "$site" ] && [ "$site" != "$first" ] || continue
    how="out to port 443 only"
    [ "$site" != "$(proxied_site)" ] || how="out through a proxy only"
    head -c 1048576 /dev/urandom >"$lab/$site/workspace/public/out.bin"
    step "a transfer from $site ($how) to $first" \
      iris alice files get --from "$site" out.bin --to "$first"
    step "a transfer from $first to $site ($how)" \
      iris alice files get --from "$first" across.bin --to "$site"
  done
  # Sessions on the sites that may only dial out (or the first site), whose
  # owners allow them for this step alone.
  local outbound
  outbound=$({ strict_site; proxied_site; } | paste -sd, -)
  [ -n "$outbound" ] || outbound=$first
  for site in ${outbound//,/ }; do iris "$site" policy set sessions allow >/dev/null; done
  step "a session on $outbound: create, exec, remove" session "$outbound"
  for site in ${outbound//,/ }; do iris "$site" policy set sessions deny >/dev/null; done
  echo
  if [ ${#failed[@]} -gt 0 ]; then
    printf 'natlab: fails: %s\n' "${failed[@]}"
    return 1
  fi
  echo "natlab: everything works across the NATs"
}

# A long-lived container from the master on `targets`, a command in it, and
# its removal: all must work.
session() { # targets
  local status=0
  iris alice container create --on "$1" --image iris-probe:latest --name natlab || return 1
  iris alice container exec --on "$1" --name natlab -- /iris-worker exit 0 || status=1
  iris alice container rm --on "$1" --name natlab || status=1
  return $status
}

# The map's addresses: a site behind NAT that advertises its private
# address (10.x) sends everyone to an address no one else can reach.
advertised() {
  ! iris alice nodes --json | grep -o '"/ip4/[^"]*"' | grep -q '/ip4/10\.'
}

# Faults where NAT makes them hard: the relay (the master) restarts, so
# every site must come back to it and reserve again before sites can reach
# each other; a site dies without a goodbye and comes back. After each, a
# secure sum over every site and a transfer between two sites must work.
chaos() {
  [ -f "$lab/sites" ] || die "no lab is up: testnet/natlab.sh up first"
  local first second failed=() sum
  first=$(sites | sed -n 1p)
  second=$(sites | sed -n 2p)
  [ -n "$second" ] || die "chaos needs 2 sites or more"
  head -c 1048576 /dev/urandom >"$lab/$first/workspace/public/chaos.bin"
  both() { # a sum over every site and a transfer
    sum=$(iris alice job run --image iris-probe:latest --on "$(sites | paste -sd,)" --timeout 60s \
      --secure-sum update.json --sum-length 4 -- /iris-worker update 4 1 2>&1) &&
      iris alice files get --from "$first" chaos.bin --to "$second" >/dev/null 2>&1
  }
  across() { # what: both must work, at the first try or 5 s later (said)
    local name=$1
    if both; then
      echo "   works: a secure sum and a transfer $first -> $second after $name"
    elif echo "   first try after $name: $sum" && sleep 5 && both; then
      echo "   works at the second try: a secure sum and a transfer after $name"
    else
      echo "   FAILS after $name: $sum"
      failed+=("$name")
    fi
  }
  say "restart the master, alice, the relay every site reserves a place at"
  stop_pid "$(cat "$lab/alice.pid")" 20
  start alice
  wait_for 30 "alice's API" iris alice status || die "alice did not start again"
  wait_for 60 "every node alive again" all_alive && wait_for 60 "places at the relay again" all_relayed &&
    across "the master's restart" || failed+=("the master's restart")
  say "kill -9 $second, then start it again"
  kill -9 "$(cat "$lab/$second.pid")"
  start "$second"
  wait_for 30 "$second's API" iris "$second" status || die "$second did not start again"
  wait_for 60 "every node alive again" all_alive && wait_for 60 "places at the relay again" all_relayed &&
    across "$second's crash" || failed+=("$second's crash")
  [ ${#failed[@]} -eq 0 ] || { printf 'natlab: chaos fails: %s\n' "${failed[@]}"; return 1; }
  echo "natlab: the sites came back across the NATs after every fault"
}
# Every site is listed with a place at the relay in alice's map.
all_relayed() {
  [ "$(iris alice nodes --json | grep -c '/p2p-circuit/')" -ge "$(sites | wc -l)" ]
}

# python/examples/fedavg.py against the master, as testnet.sh demo's Python
# twin runs on the Docker testnet: each site holds a shard (testnet/shard.awk)
# and declares it, its owner approves the worker's gradient command, and
# each round's secure sum sends shares between sites behind NAT. The Python
# is scripts/test.sh's venv (IRIS_PYTHON to choose another), run inside the
# master's namespace, where its API is.
demo() {
  [ -f "$lab/sites" ] || die "no lab is up: testnet/natlab.sh up first"
  local rounds=${1:-2} py=${IRIS_PYTHON:-$root/target/python-venv/bin/python} site
  [ -x "$py" ] || die "no Python at $py: run scripts/test.sh once, or set IRIS_PYTHON"
  # The nodes on this machine's engine have the image (docker/build-images.sh
  # made it); the master ships it to the site with an engine of its own.
  docker image inspect iris-worker:latest >/dev/null 2>&1 || die "no iris-worker image: docker/build-images.sh all"
  if [ -n "$(engine_site)" ]; then
    say "alice ships iris-worker to $(engine_site) across its NAT; its owner approves it"
    ship iris-worker:latest /iris-worker sleep 0 || die "iris-worker did not reach $(engine_site)"
  fi
  make_shards
  for site in $(sites); do
    iris "$site" policy allow-image iris-worker:latest --prefix -- /iris-worker gradient >/dev/null
    iris "$site" datasets add shard private/shard --rows-bucket 100 --mock-rows 20 >/dev/null
  done
  wait_for 30 "the datasets on alice's map" all_listed || return 1
  say "FedAvg over $(sites | paste -sd' '), $rounds rounds, from the master's namespace"
  ip netns exec $prefix-alice "$py" "$root/python/examples/fedavg.py" --dir "$lab/alice" \
    --rounds "$rounds"
}
# Each site's private shard (testnet/shard.awk), as testnet.sh gives its nodes.
make_shards() {
  local i=0 site
  for site in $(sites); do
    mkdir -p "$lab/$site/workspace/private/shard"
    [ -s "$lab/$site/workspace/private/shard/shard.csv" ] ||
      awk -v i=$i -v n=$((200 * (i + 2))) -f "$root/testnet/shard.awk" \
        >"$lab/$site/workspace/private/shard/shard.csv"
    i=$((i + 1))
  done
}
all_listed() {
  [ "$(iris alice datasets | awk 'NR > 1' | wc -l)" -eq "$(sites | wc -l)" ]
}

# The time (seconds since the epoch) of the first line of a node's log that
# contains $2.
log_time() { # node text
  local line
  line=$(sed 's/\x1b\[[0-9;]*m//g' "$lab/$1.log" | grep -m1 -F -- "$2") || return 1
  date -d "${line%%Z*}Z" +%s.%N
}
peer_of() { iris "$1" status | sed -n 's/^peer id: *//p'; }
# How $1 reaches $2 now: direct, relayed or not connected.
reached() { # node other
  iris "$1" nodes | awk -v n="$2" '$1 == n { for (i = 1; i <= NF; i++) if ($i == "direct" || $i == "relayed") { print $i; exit } }'
}

# Transfers of $1 MiB (256 by default), each timed by the node that fetched
# it: master -> site over the connection the site opened (direct), site ->
# site once hole punching made them a direct connection, and site -> the
# --strict site, which only the relay reaches. Then the hole punches: how
# many pairs of sites ended direct, and how long after a site joined.
bench() {
  [ -f "$lab/sites" ] || die "no lab is up: testnet/natlab.sh up first"
  local mib=${1:-256} first second strict
  first=$(sites | sed -n 1p)
  second=$(sites | sed -n 2p)
  strict=$(strict_site)
  [ -n "$second" ] || die "bench needs 2 sites or more"
  head -c $((mib << 20)) /dev/urandom >"$lab/alice/workspace/public/bench.bin"
  cp "$lab/alice/workspace/public/bench.bin" "$lab/$first/workspace/public/bench.bin"
  local direct_rate=""
  transfer() { # label from to
    local out rate ratio=""
    out=$(iris alice files get --from "$2" bench.bin --to "$3") || { echo "   $1: FAILED"; return 1; }
    rate=$(grep -o '[0-9.]* MiB/s' <<<"$out" | cut -d' ' -f1)
    [ -n "$direct_rate" ] || direct_rate=$rate
    ratio=$(awk -v r="$rate" -v d="$direct_rate" 'BEGIN { printf "%.2f", r / d }')
    printf '   %-40s %8s MiB/s  x%s of direct\n' "$1" "$rate" "$ratio"
  }
  say "$mib MiB transfers (the receiving node's rate)"
  transfer "alice -> $first (direct)" alice "$first"
  [ "$(reached "$second" "$first")" = direct ] || echo "   ($second reaches $first $(reached "$second" "$first"))"
  transfer "$first -> $second (hole punched)" "$first" "$second"
  if [ -n "$strict" ] && [ "$strict" != "$second" ]; then
    transfer "$first -> $strict (relayed)" "$first" "$strict"
  fi
  local proxied
  proxied=$(proxied_site)
  if [ -n "$proxied" ] && [ "$proxied" != "$second" ]; then
    transfer "$first -> $proxied (relayed, its side proxied)" "$first" "$proxied"
  fi
  say "hole punching between sites (each pair made to talk first)"
  local a b pairs=0 direct=0 t0 t1 id
  for a in $(sites); do head -c 1024 /dev/urandom >"$lab/$a/workspace/public/hello.bin"; done
  for a in $(sites); do
    for b in $(sites); do
      [[ "$a" < "$b" ]] || continue
      pairs=$((pairs + 1))
      local how
      iris alice files get --from "$a" hello.bin --to "$b" >/dev/null 2>&1 || true
      sleep 1
      how=$(reached "$b" "$a")
      [ "$how" != direct ] || direct=$((direct + 1))
      # From the later joiner's join to its first direct connection to
      # the other (its log says when hole punching made one).
      id=$(peer_of "$a")
      t0=$(log_time "$b" "joined network") || t0=""
      t1=$(sed 's/\x1b\[[0-9;]*m//g' "$lab/$b.log" | grep -F "hole punched" | grep -m1 -F "$id" |
        sed 's/Z.*//' | xargs -r -I{} date -d "{}Z" +%s.%N) || t1=""
      if [ -n "$t0" ] && [ -n "$t1" ]; then
        printf '   %-14s %-8s %.2f s from %s joining\n' "$a - $b" "$how" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$b"
      else
        printf '   %-14s %s\n' "$a - $b" "${how:-not connected}"
      fi
    done
  done
  echo "   $direct of $pairs pairs of sites direct"
}

# exfil.sh, testnet.sh's drill, against the first site across its NAT,
# with the hooks it asks of a lab.
load_state() {
  [ -f "$lab/sites" ] || die "no lab is up: testnet/natlab.sh up first"
  read -r -a nodes <<<"alice $(sites | paste -sd' ')"
  master=alice
}
data=$lab
here=$root/testnet
on() { iris "$@"; }
api_up() { iris "$1" status >/dev/null 2>&1; }
wait_until() { # seconds check...
  local limit=$1; shift
  wait_for "$limit" "$*" "$@"
}
stop_node() { stop_pid "$(cat "$lab/$1.pid")" 10; }
start_node() { start "$1"; }
# The drill starts from the policy it expects (testnet.sh's nodes start
# from it): the probe image approved for no command. The lab's sites
# approve it as a whole for check and chaos, which would let any of its
# commands run, the copy of attempt 2 included. As up left them after.
drill() {
  load_state
  make_shards
  local site status=0
  for site in $(sites); do
    iris "$site" policy revoke-image iris-probe:latest >/dev/null 2>&1 || true
  done
  # In a subshell: the drill ends with `die` when an attempt got through.
  (exfil "$@") || status=$?
  for site in $(sites); do
    iris "$site" policy allow-image iris-probe:latest --whole-image >/dev/null
  done
  return $status
}
# shellcheck source=testnet/outcomes.sh
source "$root/testnet/outcomes.sh"
# shellcheck source=testnet/exfil.sh
source "$root/testnet/exfil.sh"

down() {
  local node
  for pid in "$lab"/*.pid; do
    [ -f "$pid" ] || continue
    kill "$(cat "$pid")" 2>/dev/null || true
  done
  # Every node was asked above, so they stop together; each gets 20 s.
  for pid in "$lab"/*.pid; do
    [ -f "$pid" ] || continue
    stop_pid "$(cat "$pid")" 20
    rm -f "$pid"
  done
  # After the nodes, which remove their containers on the way out.
  stop_engines
  for ns in $(ip netns list | awk '{print $1}' | grep "^$prefix-" || true); do
    ip netns delete "$ns"
  done
  # Containers the lab's nodes made are labelled with their peer ids; the
  # nodes removed theirs on the way out, and anything left goes with them.
  for node in "${names[@]}"; do
    [ -d "$lab/$node" ] || continue
    rm -rf "${lab:?}/$node"
  done
  rm -f "$lab/sites" "$lab/strict" "$lab/proxied" "$lab/engine" "$lab"/proxy-*.log "$lab/ship.out"
  say "down"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  check) check ;;
  bench) shift; bench "$@" ;;
  demo) shift; demo "$@" ;;
  chaos) chaos ;;
  exfil) shift; drill "$@" ;;
  down) down ;;
  *) sed -n '2,/^# Topology/p' "$0" | sed '$d' >&2; exit 2 ;;
esac

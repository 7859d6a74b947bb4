# A Docker engine of a site's own in the NAT lab, sourced by natlab.sh (it
# uses natlab.sh's $lab, $prefix, say, die, wait_for, stop_pid, iris and
# engine_site).
# The engine is empty, as a site on another machine has, so the images the
# site runs must cross its NAT from the master: issue 28's image shipping.
#
# A dockerd of its own: data and sockets under $lab/engine-SITE, its own
# (empty) configuration, not this machine's /etc/docker/daemon.json. It
# runs in the site's network namespace, entered alone (nsenter --net: `ip
# netns exec` would mount a fresh /sys and hide the cgroups), and touches no
# network of this machine: a dockerd with no bridge deletes any interface
# named docker0 where it runs, and in this machine's namespace that is the
# machine's engine's bridge (seen: every container of the machine's engine
# failed to start after the lab). No iptables rules either (a job's
# container has no network anyway). Its storage driver is vfs, which works
# on any file system and mounts nothing for an image's layers. It listens
# only on a unix socket, which the node reaches from inside its namespace
# (a socket file is not behind the NAT).
engine_host() { echo "unix://$lab/engine-$1/docker.sock"; }
engine() { # site docker-args...: the docker CLI against the site's engine
  local site=$1; shift
  DOCKER_HOST=$(engine_host "$site") docker "$@"
}
start_engine() { # site
  local dir=$lab/engine-$1
  say "$1 runs a Docker engine of its own, empty: every image it runs is shipped to it"
  command -v dockerd >/dev/null || die "no dockerd here: the lab's engine site needs one"
  mkdir -p "$dir"
  echo '{}' >"$dir/daemon.json"
  local bridge_before
  bridge_before=$(ip -o link show docker0 2>/dev/null | cut -d: -f1)
  nsenter --net="/run/netns/$prefix-$1" dockerd --config-file "$dir/daemon.json" \
    --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" --host "$(engine_host "$1")" --bridge=none --iptables=false \
    --ip-masq=false --storage-driver vfs --cgroup-parent "$prefix-$1" >"$dir/dockerd.log" 2>&1 &
  wait_for 60 "$1's engine" engine "$1" info || die "$1's engine did not start: $dir/dockerd.log"
  [ "$(ip -o link show docker0 2>/dev/null | cut -d: -f1)" = "$bridge_before" ] ||
    die "$1's engine changed this machine's docker0: restart this machine's dockerd"
}
# Stops every site's engine (its containers with it) and removes its data.
stop_engines() {
  local dir
  for dir in "$lab"/engine-*; do
    [ -d "$dir" ] || continue
    [ ! -s "$dir/dockerd.pid" ] || stop_pid "$(cat "$dir/dockerd.pid")" 30
    # Whatever the engine left mounted under its directory, deepest first.
    awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | xargs -r -n1 umount -l
    rm -rf "$dir"
    # The cgroups its containers ran in (cgroup v1: one tree a controller).
    find /sys/fs/cgroup/*/"$prefix-${dir##*/engine-}" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

# The master runs `argv` from `image` on the engine site, which lacks it:
# the master ships the image's tar across the site's NAT, the task waits
# for the site's owner, who approves it once it has arrived. Works if the
# job succeeds and the site's own engine then has the image.
ship() { # image argv...
  local image=$1 site job id
  shift
  site=$(engine_site)
  ! engine "$site" image inspect "$image" >/dev/null 2>&1 || { echo "   ($site has $image already)"; return 0; }
  iris alice job run --image "$image" --on "$site" -- "$@" >"$lab/ship.out" 2>&1 &
  job=$!
  wait_for 120 "$site's owner to be asked about $image" awaits_approval "$site" || { kill $job; return 1; }
  id=$(iris "$site" approvals --json | grep -o '"id": *"[^"]*"' | head -1 | cut -d'"' -f4)
  echo "   [$site's owner] iris approvals approve $id"
  iris "$site" approvals approve "$id" >/dev/null
  wait "$job" || { cat "$lab/ship.out"; return 1; }
  engine "$site" image inspect "$image" >/dev/null && [ -f "$lab/$site/workspace/image/${image%:*}.tar" ]
}
awaits_approval() { iris "$1" approvals --json | grep -q '"id"'; }

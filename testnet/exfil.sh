# The exfiltration drill, sourced by testnet.sh: the master tries every
# known way to take a site's private data, as a rogue researcher would, and
# the drill checks whether any byte of that site's private shard reached the
# master (its node directory, or anything a command printed to it).
#
#   testnet/testnet.sh exfil          under the site's policy as it is (the
#                                     default, with the worker image approved)
#   testnet/testnet.sh exfil --open   first opens the site's policy wide
#                                     (images any, logs share, sessions and
#                                     network allow): the attacks succeed, as
#                                     they did before the owner's policy
#                                     existed; the policy is restored after
#
# Exits non-zero if any private byte reached the master.
#
# natlab.sh sources it too (`natlab.sh exfil`), to run the same attempts
# across NATs. What a lab gives it: load_state (sets nodes, master first),
# $data (a node's directory is $data/NODE), $here, on NODE ARGS... (the
# node's CLI), stop_node and start_node, api_up, wait_until SECONDS CHECK...,
# say and die, and outcomes.sh.

# Runs an owner's command on a site, and says so.
as_owner() { # node args...
  local node=$1; shift
  echo "   [$node's owner] iris $*"
  on "$node" "$@" >/dev/null
}

exfil() {
  load_state
  local open=0
  [ "${1:-}" = --open ] && open=1
  [ ${#nodes[@]} -ge 2 ] || die "exfil needs 2 nodes or more (testnet.sh up 3)"
  local site=${nodes[1]} shard hash row out tmp id
  # The master's image of choice: the worker with the probes that read,
  # copy and print private data (docker/build-images.sh builds it).
  local probe=iris-probe:latest
  docker image inspect "$probe" >/dev/null 2>&1 || die "no $probe image: run docker/build-images.sh"
  shard="$data/$site/workspace/private/shard/shard.csv"
  hash=$(sha256sum <"$shard" | cut -d' ' -f1)
  row=$(sed -n 3p "$shard")
  tmp=$(mktemp -d)
  outcomes=()

  # Whether the site's private bytes are in a file; how many of the files
  # the master keeps hold them (by content, or whole by hash).
  holds_private() { grep -qF -- "$row" "$1" || [ "$(sha256sum <"$1" | cut -d' ' -f1)" = "$hash" ]; }
  # The master's node writes its files as it runs (a temporary file, then
  # a rename), so a file can vanish between find and sha256sum: that is not
  # a failure of the drill, and grep finding nothing is not either.
  private_at_master() {
    { grep -rlF -- "$row" "$data/$master" 2>/dev/null || true
      { find "$data/$master" -type f -exec sha256sum {} + 2>/dev/null || true; } |
        awk -v h="$hash" '$1 == h { print $2 }'
    } | sort -u | wc -l
  }
  # One attempt's row: what the master saw, and whether the shard reached
  # it in this attempt (in what it printed, or in a new file of its own).
  local at_master
  at_master=$(private_at_master)
  attempt() { # name captured-output observed
    local reached=no ok=1 now
    now=$(private_at_master)
    if holds_private "$2" || [ "$now" -gt "$at_master" ]; then reached=YES ok=0; fi
    at_master=$now
    outcome "$1" "$reached" "$3" "$ok"
  }
  first_line() { grep -m1 -iE "$1" "$2" | cut -c1-110 || echo "(nothing said)"; }

  if [ "$open" -eq 1 ]; then
    say "$site's owner opens the policy wide (what every site had before the policy existed)"
    as_owner "$site" policy set images any
    as_owner "$site" policy set logs share
    as_owner "$site" policy set sessions allow
    as_owner "$site" policy set network allow
  fi
  say "$site's policy"
  on "$site" policy

  say "1. an image $site's owner never approved copies the private shard to its outputs"
  # A different digest from the approved worker: the same program, relabelled.
  printf 'FROM %s\nLABEL iris.drill=exfil\n' "$probe" >"$tmp/Dockerfile"
  out=$(docker build -q --label "iris.testnet=$data" -t iris-exfil:latest "$tmp" 2>&1) ||
    die "cannot build the drill's image: $out"
  on "$master" job run --image iris-exfil:latest --on "$site" --gather --memory 32m --timeout 8s -- \
    /iris-worker copy /workspace/private/shard/shard.csv leak.csv >"$tmp/1.out" 2>&1 || true
  attempt "unapproved image copies private/ to its outputs" "$tmp/1.out" \
    "$(first_line "^gathered |not approved|denied" "$tmp/1.out")"

  say "2. an image $site's owner approved for stats runs another of its commands: it copies the shard out"
  # The owner read a stats request and approved the image's stats command;
  # the same image also holds a copy command.
  [ "$open" -eq 1 ] || as_owner "$site" policy allow-image "$probe" --prefix -- /iris-worker stats
  on "$master" job run --json --image "$probe" --on "$site" --gather --memory 32m --timeout 8s -- \
    /iris-worker copy /workspace/private/shard/shard.csv leak.csv >"$tmp/2.out" 2>&1 || true
  id=$(json_field id <"$tmp/2.out" || true)
  # Asked for by name, too.
  [ -z "$id" ] || on "$master" files get --from "$site" "outputs/$id/leak.csv" >>"$tmp/2.out" 2>&1 || true
  attempt "approved image, unapproved command copies private/" "$tmp/2.out" \
    "$(first_line 'gathered/[^"]*leak|not approved|forbidden' "$tmp/2.out" | tr -s ' "')"

  say "3. the approved image prints the private shard to its logs"
  out=$(on "$master" job run --json --image "$probe" --on "$site" --memory 32m --timeout 8s -- \
    /iris-worker cat /workspace/private/shard/shard.csv 2>&1) || true
  id=$(json_field id <<<"$out" || true)
  { echo "$out"; [ -z "$id" ] || on "$master" job logs "$id"; } >"$tmp/3.out" 2>&1 || true
  attempt "logs carry private rows" "$tmp/3.out" \
    "$(first_line "not approved|withheld|x1" "$tmp/3.out")"

  say "4. a session on $site, and a command in it that prints the shard"
  on "$master" container create --on "$site" --image "$probe" --name exfil >"$tmp/4.out" 2>&1 || true
  on "$master" container exec --on "$site" --name exfil -- \
    /iris-worker cat /workspace/private/shard/shard.csv >>"$tmp/4.out" 2>&1 || true
  on "$master" container rm --on "$site" --name exfil >/dev/null 2>&1 || true
  attempt "exec in a session" "$tmp/4.out" "$(first_line "policy|x1" "$tmp/4.out")"

  say "5. a job that asks for a network, to send the shard anywhere"
  # It only lists its network interfaces: given a network, it could send.
  on "$master" job run --image "$probe" --on "$site" --network bridge --memory 32m --timeout 30s -- \
    /iris-worker netifs >"$tmp/5.out" 2>&1 || true
  local refused=0
  grep -q "network = deny" "$tmp/5.out" && refused=1
  outcome "job asks for a network" "$([ "$refused" -eq 1 ] && echo "no (refused)" || echo "a channel out")" \
    "$(first_line "policy|succeeded" "$tmp/5.out")" "$refused"

  say "6. code the owners cannot judge (release = aggregate) writes the shard as its update, for a refusal to quote"
  # Every site lets the approved code run and its update out only masked in
  # a sum; the code puts the shard's text where the numbers should be.
  local node
  for node in "${nodes[@]:1}"; do
    [ "$open" -eq 1 ] || as_owner "$node" policy set release aggregate
    [ "$open" -eq 1 ] || as_owner "$node" policy allow-image "$probe" --prefix -- /iris-worker smuggle
  done
  on "$master" job run --image "$probe" --on all --secure-sum update.json --sum-length 3 \
    --memory 32m --timeout 30s -- /iris-worker smuggle /workspace/private/shard/shard.csv update.json \
    >"$tmp/6.out" 2>&1 || true
  for node in "${nodes[@]:1}"; do
    [ "$open" -eq 1 ] || as_owner "$node" policy set release auto
    [ "$node" = "$site" ] || [ "$open" -eq 1 ] || as_owner "$node" policy revoke-image "$probe"
  done
  attempt "a secure sum's refusal quotes the update" "$tmp/6.out" \
    "$(first_line "not an update|secure sum|error" "$tmp/6.out")"

  say "7. under release = review, a task's exit code carries a byte of what it read"
  # The code picks its exit code; 77 stands for a byte of the shard.
  [ "$open" -eq 1 ] || as_owner "$site" policy set release review
  [ "$open" -eq 1 ] || as_owner "$site" policy allow-image "$probe" --prefix -- /iris-worker exit
  out=$(on "$master" job run --json --image "$probe" --on "$site" --memory 32m --timeout 30s -- \
    /iris-worker exit 77 2>&1) || true
  id=$(json_field id <<<"$out" || true)
  { echo "$out"; [ -z "$id" ] || on "$master" job show "$id" --json; } >"$tmp/7.out" 2>&1 || true
  [ "$open" -eq 1 ] || as_owner "$site" policy set release auto
  local told=0
  grep -qE '"exit_code": ?77|exit 77' "$tmp/7.out" && told=1
  outcome "a held task's exit code" "$([ "$told" -eq 1 ] && echo "a byte a task" || echo "no (failed, no code)")" \
    "$({ grep -m1 -oE '"exit_code": ?[0-9]+' "$tmp/7.out" || grep -m1 -oE '"state": ?"[a-z]+"' "$tmp/7.out" ||
      echo "(nothing said)"; } | tr -d '"')" \
    "$((1 - told))"

  say "8. someone with the run of $site's disk rewrites its audit log to hide what ran, one line longer"
  local witness=${nodes[2]:-$master}
  on "$witness" events --json >"$tmp/8.events" 2>&1 &
  local follower=$!
  stop_node "$site"
  python3 "$here/reseal_audit.py" "$data/$site/audit.log" >"$tmp/8.out" 2>&1 || true
  start_node "$site"
  wait_until 60 api_up "$site" >/dev/null || die "$site did not come back after the rewrite"
  local verified=no alarm=no
  on "$site" audit verify >>"$tmp/8.out" 2>&1 && verified=yes
  wait_until 60 grep -q "\"audit_rewritten\".*\"$site\"" "$tmp/8.events" >/dev/null && alarm=yes
  kill "$follower" 2>/dev/null || true
  outcome "audit log rewritten and re-sealed" \
    "$([ "$verified$alarm" = noyes ] && echo "no (caught)" || echo "UNSEEN")" \
    "verify: $([ "$verified" = yes ] && echo passes || echo fails); $witness: $([ "$alarm" = yes ] && echo audit_rewritten || echo silent)" \
    "$([ "$verified$alarm" = noyes ] && echo 1 || echo 0)"

  if [ "$open" -eq 1 ]; then
    say "$site's owner restores the default policy"
    as_owner "$site" policy set images approve
    as_owner "$site" policy set logs withhold
    as_owner "$site" policy set sessions deny
    as_owner "$site" policy set network deny
  fi
  [ "$open" -eq 1 ] || as_owner "$site" policy revoke-image "$probe"
  docker rmi iris-exfil:latest >/dev/null 2>&1 || true
  rm -rf "$tmp"

  say "exfiltration attempts by the master against $site, and outcomes"
  print_outcomes "ATTEMPT|PRIVATE BYTES AT $master|WHAT $master GOT|RESULT"
  local failed
  failed=$(failed_outcomes)
  [ "$failed" -eq 0 ] || die "$failed of ${#outcomes[@]} attempts got through: private data of $site reached $master"
  echo "every attempt stopped: no byte of $site's private shard reached $master"
}

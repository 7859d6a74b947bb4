#!/usr/bin/env bash
# Builds the images Iris needs from our own static binaries, FROM scratch
# (no registry is involved), and saves them as docker-save tars:
#
#   docker/.build/iris-worker.tar    image iris-worker:latest (jobs' programs:
#                                    what the README asks owners to approve)
#   docker/.build/iris-probe.tar     image iris-probe:latest (the worker with
#                                    its probes, for tests only)
#   docker/.build/iris-node.tar      image iris-node:latest (a node, for testnet/)
#
# Usage: docker/build-images.sh [worker|node|all]   (default: worker, which
# builds iris-worker and iris-probe)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/docker/.build"
target=x86_64-unknown-linux-gnu
mkdir -p "$out"

static_build() { # cargo build args...
  # The explicit --target keeps RUSTFLAGS away from proc-macro crates.
  (cd "$root" && RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_STRIP=true \
    CARGO_PROFILE_RELEASE_DEBUG=0 cargo build --release --target "$target" "$@")
}

# The worker twice: as owners approve it, and with its probes for tests.
# Each image copies the binary right after its own build.
worker_images() {
  static_build -p iris-worker
  image iris-worker iris-worker "$root/docker/worker/Dockerfile"
  static_build -p iris-worker --features iris-worker/probes
  image iris-probe iris-worker "$root/docker/probe/Dockerfile"
}

image() { # name binary dockerfile
  local context="$out/$1"
  rm -rf "$context" && mkdir -p "$context"
  cp "$root/target/$target/release/$2" "$context/"
  cp "$3" "$context/Dockerfile"
  # The legacy builder warns about BuildKit on every build; show its output
  # only when the build fails.
  local log old
  old=$(docker image inspect --format '{{.Id}}' "$1:latest" 2>/dev/null || true)
  if ! log=$(docker build --quiet -t "$1:latest" "$context" 2>&1); then
    echo "$log" >&2
    exit 1
  fi
  # Our previous build of this image, now untagged, goes; nothing else.
  if [ -n "$old" ] && [ "$old" != "$(docker image inspect --format '{{.Id}}' "$1:latest")" ]; then
    docker rmi "$old" >/dev/null 2>&1 || true
  fi
  docker save "$1:latest" -o "$out/$1.tar"
  echo "built $1:latest -> $out/$1.tar ($(du -h "$out/$1.tar" | cut -f1))"
}

what=${1:-worker}
case "$what" in
  worker)
    worker_images
    ;;
  node)
    static_build -p iris
    image iris-node iris "$root/docker/node/Dockerfile"
    ;;
  all)
    static_build -p iris
    image iris-node iris "$root/docker/node/Dockerfile"
    worker_images
    ;;
  *) echo "usage: $0 [worker|node|all]" >&2; exit 2 ;;
esac

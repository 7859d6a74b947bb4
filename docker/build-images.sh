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
#
# IRIS_IMAGE_PROFILE=dev builds the binaries in cargo's dev profile instead
# of release, stripped as they are copied: scripts/test.sh builds the tests
# as the same static binaries, so one build serves the tests and the
# images, and CI does not compile every crate twice.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/docker/.build"
target=x86_64-unknown-linux-gnu
profile=${IRIS_IMAGE_PROFILE:-release}
case "$profile" in
  release) built="$root/target/$target/release" ;;
  dev) built="$root/target/$target/debug" ;;
  *) echo "IRIS_IMAGE_PROFILE must be release or dev, not '$profile'" >&2; exit 2 ;;
esac
mkdir -p "$out"

static_build() { # cargo build args...
  # The explicit --target keeps RUSTFLAGS away from proc-macro crates.
  (cd "$root" && RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_STRIP=true \
    CARGO_PROFILE_RELEASE_DEBUG=0 cargo build --profile "$profile" --target "$target" "$@")
}

# A package's binary, as the profile builds it. A dev build is the tests'
# build: built as a whole workspace with every target, because building
# one package alone unifies its dependencies' features otherwise, and
# compiles them all again (minutes, for the node).
package_build() { # package
  if [ "$profile" = dev ]; then
    static_build --workspace --all-targets
  else
    static_build -p "$1"
  fi
}

# The worker twice: as owners approve it, and with its probes for tests.
# Each image copies the binary right after its own build.
worker_images() {
  package_build iris-worker
  image iris-worker iris-worker "$root/docker/worker/Dockerfile"
  static_build -p iris-worker --features iris-worker/probes
  image iris-probe iris-worker "$root/docker/probe/Dockerfile"
}

image() { # name binary dockerfile
  local context="$out/$1"
  rm -rf "$context" && mkdir -p "$context"
  cp "$built/$2" "$context/"
  # A dev build keeps its debug info; an image has no use for it.
  [ "$profile" = release ] || strip "$context/$2"
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
    package_build iris
    image iris-node iris "$root/docker/node/Dockerfile"
    ;;
  all)
    package_build iris
    image iris-node iris "$root/docker/node/Dockerfile"
    worker_images
    ;;
  *) echo "usage: $0 [worker|node|all]" >&2; exit 2 ;;
esac

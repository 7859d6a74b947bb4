#!/usr/bin/env bash
# Builds iris-python:latest, a job image for Python workloads, without a
# registry: a Debian root file system from Debian's own packages (python3
# with numpy and scikit-learn) made by mmdebstrap and `docker import`ed as
# iris-python-base:bookworm, then our training scripts (docker/python/jobs)
# on top. It runs as Iris runs every job: read-only root, no network, uid
# 65534. The testnet's nodes share this host's engine; for nodes on other
# machines, `docker save iris-python:latest` gives the tar to push.
#
# Usage: docker/python/build.sh   (installs mmdebstrap with apt if missing;
# the base is built once, about 100 s and 1 GB, and kept; IRIS_PYTHON_REBUILD=1
# builds it again)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/docker/.build"
base=iris-python-base:bookworm
label=org.iris.built-by=docker/python/build.sh
mkdir -p "$out"

if [ -n "${IRIS_PYTHON_REBUILD:-}" ] || ! docker image inspect "$base" >/dev/null 2>&1; then
  if ! command -v mmdebstrap >/dev/null; then
    echo "== installing mmdebstrap (apt)"
    if [ "$(id -u)" = 0 ]; then apt-get install -y -q mmdebstrap >/dev/null
    else sudo apt-get install -y -q mmdebstrap >/dev/null; fi
  fi
  echo "== building $base from Debian's packages (mmdebstrap, about 100 s)"
  rootfs="$out/python-rootfs.tar"
  trap 'rm -f "$rootfs"' EXIT
  mmdebstrap --quiet --variant=apt \
    --include=python3-minimal,python3-numpy,python3-sklearn \
    --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
    bookworm "$rootfs"
  docker import --change "LABEL $label" --change 'ENV LANG=C.UTF-8' "$rootfs" "$base" >/dev/null
  rm -f "$rootfs"
fi

echo "== building iris-python:latest"
if ! log=$(docker build --quiet --label "$label" -t iris-python:latest -f "$here/Dockerfile" "$here" 2>&1); then
  echo "$log" >&2
  exit 1
fi

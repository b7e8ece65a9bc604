#!/usr/bin/env bash
# GitHub's Ubuntu runners start with about 18 GB free; a CUDA base with torch, or the
# real-path tests (about 7 GB of uv cache and two images of about 8 GB), need more.
# Remove preinstalled toolchains no build or test here uses (never
# /opt/hostedtoolcache as a whole: setup-python lives there), then fail early, saying
# so, when there is still too little room (BAKERY_MIN_FREE_GB, default 25).
set -euo pipefail
MIN_FREE_GB=${BAKERY_MIN_FREE_GB:-25}
df -h /
sudo rm -rf /usr/share/dotnet /usr/local/lib/android /opt/ghc /usr/local/.ghcup \
  /opt/hostedtoolcache/CodeQL /usr/share/swift
sudo docker image prune --all --force >/dev/null
df -h /
free_gb=$(df --output=avail -BG / | tail -n 1 | tr -dc '0-9')
if ((free_gb < MIN_FREE_GB)); then
  echo "free-disk: only ${free_gb} GB free on /, the build needs ${MIN_FREE_GB} GB" >&2
  exit 1
fi

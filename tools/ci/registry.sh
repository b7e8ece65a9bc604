#!/usr/bin/env bash
# Install and start a real container registry (the distribution registry, Debian's
# `docker-registry` package) on 127.0.0.1, so the release flow's pushes and the pulls
# into an empty engine run here as they do against ghcr.io (docs/registry.md).
# CI only, like docker-engine.sh; idempotent: when the registry already answers it
# only prints where it is.
set -euo pipefail
# shellcheck source=tools/ci/daemon.sh
source "$(dirname "$0")/daemon.sh"

PORT=${BAKERY_REGISTRY_PORT:-5787}
WORK=${BAKERY_REGISTRY_WORK:-/var/lib/bakery-registry}
LOG=${BAKERY_REGISTRY_LOG:-/var/log/bakery-registry.log}
WAIT_S=${BAKERY_REGISTRY_WAIT_S:-30}
URL="http://127.0.0.1:$PORT/v2/"

answers() { curl -fs -o /dev/null --max-time 2 "$URL"; }

# The package's own service (port 5000, htpasswd) is not used: no init system starts
# it here, and this script runs its own copy with its own config. skopeo is what
# release.yml's layers step copies candidates with (zstd layers; GitHub's runners
# have it).
missing=()
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v skopeo >/dev/null || missing+=(skopeo)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get -q update
  DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends "${missing[@]}"
fi

if answers; then
  echo "registry: 127.0.0.1:$PORT answers"
  exit 0
fi

mkdir -p "$WORK/data" "$(dirname "$LOG")"
# Loopback only, no auth (nothing else can reach it); deletes allowed so tests can
# remove what they pushed and garbage collection can free it.
cat >"$WORK/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $WORK/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
EOF
# Blobs of manifests deleted by earlier runs are freed only while nothing is served.
docker-registry garbage-collect --delete-untagged "$WORK/config.yml" >>"$LOG" 2>&1 || true
# Detached from this shell so the registry outlives the script.
nohup docker-registry serve "$WORK/config.yml" >>"$LOG" 2>&1 &
wait_until_answers registry $! "$LOG" "$WAIT_S" answers
echo "registry: 127.0.0.1:$PORT answers (storage $WORK/data)"

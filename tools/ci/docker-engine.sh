#!/usr/bin/env bash
# Install and start a Docker engine whose BuildKit understands bake's named
# contexts, plus buildx, from Debian's package registry alone (facts:
# docs/docker-engine.md). CI only: a user's laptop brings its own Docker.
# Idempotent: when the engine already answers and buildx is present it only
# prints versions.
set -euo pipefail
# shellcheck source=tools/ci/daemon.sh
source "$(dirname "$0")/daemon.sh"

PLUGINS=/usr/local/lib/docker/cli-plugins
WORK=${BAKERY_ENGINE_WORK:-/var/cache/bakery-engine}
LOG=${BAKERY_DOCKERD_LOG:-/var/log/bakery-dockerd.log}
WAIT_S=${BAKERY_DOCKERD_WAIT_S:-60}
# Mirror of the host's own Debian sources (deb.debian.org), trixie suite only.
TRIXIE_MIRROR=${BAKERY_TRIXIE_MIRROR:-http://deb.debian.org/debian}

# trixie packages are fetched with a private sources list and lists folder, so
# the machine itself stays on bookworm.
trixie_apt() {
  apt-get -q -o Dir::State::Lists="$WORK/lists" \
    -o Dir::Etc::SourceList="$WORK/trixie.list" \
    -o Dir::Etc::SourceParts=/dev/null "$@"
}

# Copy programs out of a trixie .deb into DEST_DIR:
#   trixie_programs PACKAGE DEST_DIR PATH_IN_DEB...
trixie_programs() {
  local pkg=$1 dest=$2 path
  shift 2
  rm -rf "$WORK/debs" "$WORK/x-$pkg"
  mkdir -p "$WORK/debs"
  # _apt cannot write into root's cache folder, so download as root.
  (cd "$WORK/debs" && trixie_apt -o APT::Sandbox::User=root download "$pkg")
  dpkg -x "$WORK/debs/${pkg}"_*.deb "$WORK/x-$pkg"
  for path in "$@"; do
    install -D -m 0755 "$WORK/x-$pkg/$path" "$dest/$(basename "$path")"
  done
  rm -rf "$WORK/x-$pkg" "$WORK/debs"
}

need_trixie() {
  [[ -x $PLUGINS/docker-buildx ]] || return 0
  [[ -x /usr/local/sbin/dockerd && -x /usr/local/sbin/docker-proxy ]] || return 0
  return 1
}

need_bookworm() {
  local tool
  for tool in containerd runc iptables tini debootstrap; do
    command -v "$tool" >/dev/null || return 0
  done
  return 1
}

if ! command -v docker >/dev/null; then
  # The machine image brings the client; this script adds only the engine.
  echo "docker-engine: no docker client on PATH; install one (Debian: docker.io)" >&2
  exit 1
fi

if need_bookworm; then
  apt-get -q update
  DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends \
    containerd runc iptables tini debootstrap
fi

if need_trixie; then
  mkdir -p "$WORK/lists/partial" "$WORK/debs"
  echo "deb $TRIXIE_MIRROR trixie main" >"$WORK/trixie.list"
  trixie_apt update
  trixie_programs docker-buildx "$PLUGINS" usr/libexec/docker/cli-plugins/docker-buildx
  # dockerd refuses to start without its userland proxy next to it.
  trixie_programs docker.io /usr/local/sbin usr/sbin/dockerd usr/sbin/docker-proxy
fi

if ! docker info >/dev/null 2>&1; then
  mkdir -p "$(dirname "$LOG")"
  # Detached from this shell so the engine outlives the script.
  nohup /usr/local/sbin/dockerd --host unix:///var/run/docker.sock >>"$LOG" 2>&1 &
  wait_until_answers docker-engine $! "$LOG" "$WAIT_S" docker info
fi

docker version --format 'engine {{.Server.Version}} (API {{.Server.APIVersion}}), client {{.Client.Version}}'
docker buildx version

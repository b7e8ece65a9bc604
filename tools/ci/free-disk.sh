#!/usr/bin/env bash
# GitHub's Ubuntu runners start with roughly 20 GB free; a CUDA base with torch
# needs more than that to build and export. Remove preinstalled toolchains no
# image build uses (never /opt/hostedtoolcache as a whole: setup-python lives there).
set -euo pipefail
df -h /
sudo rm -rf /usr/share/dotnet /usr/local/lib/android /opt/ghc /usr/local/.ghcup \
  /opt/hostedtoolcache/CodeQL /usr/share/swift
sudo docker image prune --all --force >/dev/null
df -h /

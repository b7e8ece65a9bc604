#!/usr/bin/env bash
# The container's entry point (the image's CMD). The sequence itself — fetch the
# models, start ComfyUI, wait for it, run the worker — is handler/start.py, where
# it is tested. Arguments are passed on to the worker (`python -m handler`).
set -euo pipefail
exec python -m handler.start "$@"

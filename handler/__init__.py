"""The run time: what runs inside every image.

start.sh, start.py   the container's start: models ready → ComfyUI → the worker
comfy_process.py     ComfyUI as the start's child: its command line, output, readiness
fitness.py, gpu.py   fitness checks before the first job; reading the GPU (NVML, torch)
models/              getting models ready: volume, fetch, one download
__main__.py          `python -m handler`: the RunPod worker
jobs/                running jobs: input, ComfyUI client, outputs, storage, cleanup
manifest.py          the model manifest, the one contract with build time (tools/bakery)
settings.py, log.py, http.py   shared: environment settings, the logger, HTTP sessions
"""

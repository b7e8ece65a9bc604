"""The run time: what runs inside every image.

start.sh, start.py   the container's start: models ready → ComfyUI → the worker
comfy_process.py     ComfyUI as the start's child: its command line, output, readiness
fitness.py, gpu.py   fitness checks before the first job; reading the GPU (NVML, torch)
models/              getting models ready: volume, fetch, one download
__main__.py          `python -m handler`: the RunPod worker
jobs/                running jobs: input, ComfyUI client, outputs, storage, cleanup
manifest.py          a contract with build time (tools/bakery): the model manifest
fitness_facts.py     a contract with build time: what the image needs from a GPU
huggingface.py       Hugging Face URLs: the file one names, the repository to cache
settings.py, log.py, http.py   shared: environment settings, the logger, HTTP sessions
"""

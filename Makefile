# comfy-bakery — the two commands a user needs are `make build` and `make test`.
VENV_PY := .venv/bin/python
PY ?= $(VENV_PY)
BAKERY = $(PY) -m bakery
# The venv is made on first use, so a fresh clone needs no setup step; a caller
# with its own Python (CI on GitHub: `make test PY=python`) skips it.
NEEDS_PY := $(if $(filter $(VENV_PY),$(PY)),$(VENV_PY))

.PHONY: build render check validate matrix sources add check-workflow try test lint smoke bench bench-install bench-pull venv lock lock-handler

## build: validate variants.yaml, render, and `docker buildx bake` every variant, or one:
## `make build VARIANT=sdxl-cu128` (a target or group of docker-bake.hcl)
build: $(NEEDS_PY)
	$(BAKERY) build $(VARIANT)

render: $(NEEDS_PY)
	$(BAKERY) render

check: $(NEEDS_PY)
	$(BAKERY) check

validate: $(NEEDS_PY)
	$(BAKERY) validate

matrix: $(NEEDS_PY)
	$(BAKERY) matrix

## sources: fetch ComfyUI and every node pack at its pin (what `make lock` reads)
sources: $(NEEDS_PY)
	$(BAKERY) sources

## add: a workflow file into variants.yaml as a model set (+ node set) and a variant:
## `make add WORKFLOW=my-workflow.json`
add: $(NEEDS_PY)
	$(BAKERY) add $(WORKFLOW)

## check-workflow: `make check-workflow WORKFLOW=workflows/x/workflow.json VARIANT=x-cu128`
check-workflow: $(NEEDS_PY)
	$(BAKERY) check-workflow $(WORKFLOW) --variant $(VARIANT)

## try: ComfyUI on the CPU with the worker's local API on 127.0.0.1:8000, to send examples/:
## `make try COMFYUI=~/ComfyUI` (a checkout) or `make try IMAGE=sdxl-cu128` (a built image)
try: $(NEEDS_PY)
	$(BAKERY) try $(if $(COMFYUI),--comfyui $(COMFYUI)) $(if $(IMAGE),--image $(IMAGE))

## test: the whole test suite (docker tests skip, with the reason, when no engine answers)
test: $(NEEDS_PY)
	$(PY) -m pytest

lint: $(NEEDS_PY)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

## smoke: build every variant against the stand-ins and send one job through each image
smoke: $(NEEDS_PY)
	$(PY) -m pytest -m docker tests/docker -k smoke

## bench: every benchmark; each figure is a ratio against a baseline measured in the same run
bench: $(NEEDS_PY)
	$(PY) -m bench

## bench-install: uv vs pip on the real path (real ComfyUI, torch: ~3 GB twice; BAKERY_SOURCES)
bench-install: $(NEEDS_PY)
	$(PY) -m bench.realpath_install

## bench-pull: pull time, today's layout vs the torch layers (gzip, and zstd), through the local registry
## (real path: two ~4.5 GB pushes and pulls; BAKERY_SOURCES, tools/ci/registry.sh, root)
bench-pull: $(NEEDS_PY)
	$(PY) -m bench.realpath_pull

## venv: (re)make the local virtual environment with the pinned dev dependencies
venv:
	rm -rf .venv
	$(MAKE) $(VENV_PY)

$(VENV_PY):
	python3 -m venv .venv
	.venv/bin/pip install -q -e '.[dev]' -c handler/constraints.txt

## lock: re-pin what its inputs changed in each CUDA line's lock (lock/<cuda>.txt): bakery
## fetches ComfyUI and every custom node at its pin (offline: BAKERY_SOURCES=DIR)
lock: $(NEEDS_PY)
	$(BAKERY) lock
	$(BAKERY) render

## lock-handler: re-pin every package the handler's dependencies pull in
## (handler/constraints.txt); only on request, then `make lock`
lock-handler:
	rm -rf .cache/lock && python3 -m venv .cache/lock
	.cache/lock/bin/pip install -q -r handler/requirements.txt
	{ sed -n '/^#/p' handler/constraints.txt; \
	  .cache/lock/bin/pip freeze --all --exclude pip --exclude setuptools --exclude wheel; \
	} > handler/constraints.txt.new
	mv handler/constraints.txt.new handler/constraints.txt

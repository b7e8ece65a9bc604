# comfy-bakery — the two commands a user needs are `make build` and `make test`.
PY ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
BAKERY = $(PY) -m bakery

.PHONY: build render check validate test lint smoke bench venv lock

## build: validate variants.yaml, render, and `docker buildx bake` the default group
build:
	$(BAKERY) build

render:
	$(BAKERY) render

check:
	$(BAKERY) check

validate:
	$(BAKERY) validate

## test: the whole test suite (docker tests skip, with the reason, when no engine answers)
test:
	$(PY) -m pytest

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

## smoke: build every variant against the stand-ins and send one job through each image
smoke:
	$(PY) -m pytest -m docker tests/docker -k smoke

## bench: every benchmark; each figure is a ratio against a baseline measured in the same run
bench:
	$(PY) -m bench

## venv: a local virtual environment with the pinned dev dependencies
venv:
	python3 -m venv .venv
	.venv/bin/pip install -q -e '.[dev]' -c handler/constraints.txt

## lock: re-pin every package the handler's dependencies pull in (handler/constraints.txt)
lock:
	rm -rf .cache/lock && python3 -m venv .cache/lock
	.cache/lock/bin/pip install -q -r handler/requirements.txt
	{ sed -n '/^#/p' handler/constraints.txt; \
	  .cache/lock/bin/pip freeze --all --exclude pip --exclude setuptools --exclude wheel; \
	} > handler/constraints.txt.new
	mv handler/constraints.txt.new handler/constraints.txt

"""The test kit: everything tests and benchmarks start or build, in one place.

Import it by full name (`from tests.kit.model_server import ModelServer`) from
the repository root: pytest puts the root on the path (pyproject.toml), and
`python -m bench` runs from it.

| module | what |
|---|---|
| `servers` | `free_port`, `FileServer`, `StubComfy`, `S3Server` (moto), `Relay` |
| `model_server` | `ModelServer` (ranges, faults, counters); model bytes and manifest entries |
| `real_models` | real-architecture models, random weights: SD 1.5 checkpoint, LoRA, upscaler |
| `local_api` | `LocalWorker`: `python -m handler --rp_serve_api` (the SDK local API) |
| `double` | start and stop the ComfyUI test double (tests/comfy_double) as a subprocess |
| `git_repos` | real git repositories standing for GitHub's (`Mirror`, BAKERY_GIT_MIRROR's layout) |
| `engine` | whether a Docker engine and buildx answer here (the reason when not) |
| `standin` | stand-ins for what CI cannot reach: base image, bake, running a built image |
"""

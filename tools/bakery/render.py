"""Render a Config into every generated file: the renderers, side by side, in one pass.

Rendering is a pure function from a Config to {path relative to the project: text}.
Each renderer is a module with `files(config, done) -> {path: text}`; `done` holds
what the renderers before it made (the Hub listing flattens the rendered
Dockerfiles). A new kind of generated file is a new renderer added to RENDERERS.
Writing and comparing the result is bakery.output's.
"""

from __future__ import annotations

from collections.abc import Callable

from bakery import dockerfiles, flatten, hub, manifests, recipe_files, runpod, tables
from bakery.config import Config

Renderer = Callable[[Config, dict[str, str]], dict[str, str]]

RENDERERS: tuple[Renderer, ...] = (
    dockerfiles.files,  # build/base-*/, build/<variant>/Dockerfile, docker-bake.hcl
    flatten.files,  # build/<variant>/standalone.Dockerfile (after the Dockerfiles)
    manifests.files,  # build/<variant>/models.json
    runpod.files,  # build/<variant>/runpod.json, fitness.json
    recipe_files.files,  # build/<variant>/recipes.json, api.json, requests/; build/recipes.md
    tables.files,  # build/variants.md (and README.md's tables)
    hub.files,  # .runpod/ (after the Dockerfiles it flattens)
)


def render(config: Config, renderers: tuple[Renderer, ...] = RENDERERS) -> dict[str, str]:
    """Every generated file, as {path relative to the output folder: text}."""
    files: dict[str, str] = {}
    for renderer in renderers:
        files.update(renderer(config, files))
    return files

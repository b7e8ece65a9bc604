"""JSON Schemas of the RunPod Hub's `.runpod/hub.json` and `.runpod/tests.json`.

Written from RunPod's documented fields (RunPod docs, Hub → "Publishing to the Hub":
the hub.json and tests.json references, as of 2026-08-20; summarised in the project's
runpod-platform.md). Strict where the documentation is (types, enums, required keys), and
closed (`additionalProperties: false`) so a misspelt key fails here, not on the Hub.
"""

from __future__ import annotations

import jsonschema

_ENV_INPUT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "type"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "type": {"enum": ["string", "number", "boolean", "huggingface"]},
        "description": {"type": "string"},
        "default": {"type": ["string", "number", "boolean"]},
        "advanced": {"type": "boolean"},
        "options": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["label", "value"],
                "properties": {
                    "label": {"type": "string"},
                    "value": {"type": ["string", "number", "boolean"]},
                },
            },
        },
        "min": {"type": "number"},
        "max": {"type": "number"},
        "trueValue": {"type": "string"},
        "falseValue": {"type": "string"},
    },
}

_ENV_KEY = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}

_CUDA_VERSIONS = {
    "type": "array",
    "minItems": 1,
    "uniqueItems": True,
    "items": {"type": "string", "pattern": r"^[0-9]+\.[0-9]+$"},
}

HUB_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "RunPod Hub listing (.runpod/hub.json)",
    "type": "object",
    "additionalProperties": False,
    "required": ["title", "description", "type", "category", "config"],
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "description": {"type": "string", "minLength": 1},
        "type": {"const": "serverless"},
        "category": {"enum": ["image", "video", "audio", "language", "embedding"]},
        "iconUrl": {"type": "string", "pattern": "^https://"},
        "config": {
            "type": "object",
            "additionalProperties": False,
            "required": ["runsOn", "containerDiskInGb"],
            "properties": {
                "runsOn": {"enum": ["GPU", "CPU"]},
                "containerDiskInGb": {"type": "integer", "minimum": 1},
                "gpuCount": {"type": "integer", "minimum": 1},
                # Comma-separated pool ids; "-<GPU name>" excludes one GPU of a pool.
                "gpuIds": {"type": "string", "pattern": r"^-?[A-Za-z0-9_ ]+(,-?[A-Za-z0-9_ ]+)*$"},
                "allowedCudaVersions": _CUDA_VERSIONS,
                "env": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["key"],
                        "properties": {
                            "key": _ENV_KEY,
                            "value": {"type": "string"},
                            "input": _ENV_INPUT,
                        },
                        "oneOf": [{"required": ["value"]}, {"required": ["input"]}],
                    },
                },
                "presets": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "defaults"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "defaults": {
                                "type": "object",
                                "propertyNames": _ENV_KEY,
                                "additionalProperties": {"type": ["string", "number", "boolean"]},
                            },
                        },
                    },
                },
            },
        },
    },
}

TESTS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "RunPod Hub tests (.runpod/tests.json)",
    "type": "object",
    "additionalProperties": False,
    "required": ["tests", "config"],
    "properties": {
        "tests": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "input", "timeout"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "input": {"type": "object"},
                    "timeout": {"type": "integer", "minimum": 1},  # milliseconds
                },
            },
        },
        "config": {
            "type": "object",
            "additionalProperties": False,
            "required": ["gpuTypeId", "gpuCount"],
            "properties": {
                "gpuTypeId": {"type": "string", "minLength": 1},
                "gpuCount": {"type": "integer", "minimum": 1},
                "env": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["key", "value"],
                        "properties": {"key": _ENV_KEY, "value": {"type": "string"}},
                    },
                },
                "allowedCudaVersions": _CUDA_VERSIONS,
            },
        },
    },
}


def problems(data: dict, schema: dict) -> list[str]:
    """Every schema violation as `path: message`, sorted (empty when valid)."""
    validator = jsonschema.Draft202012Validator(schema)
    out = []
    for err in validator.iter_errors(data):
        where = ".".join(str(p) for p in err.absolute_path) or "(top)"
        out.append(f"{where}: {err.message}")
    return sorted(out)

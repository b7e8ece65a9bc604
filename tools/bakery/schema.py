r"""The shape of variants.yaml, as data (JSON Schema, checked with jsonschema).

The wording a user sees lives next to each rule: `x-what` says what is wrong
(with `{value}` for the offending value, shown safely), `x-fix` how to fix it,
`x-example` what a correct entry looks like. jsonschema ignores `x-` keys, and
handler.schema_errors turns what it refuses into messages with them. A model
entry is the manifest's own schema with this file's wording laid over it.
Checks a schema cannot express (names that refer to each other, two models on
one path, secrets) live in bakery.checks and bakery.secret_scan.

Where a value ends up is written next to its rule, in `x-lands`: each Dockerfile,
HCL, shell or Markdown context it reaches and whether it is *refused* there (the
pattern admits nothing that context would read as syntax) or *escaped* (by a
filter of bakery.templating). Patterns use \A…\Z: jsonschema applies them with
re.search, where `$` also matches before a final line break. Names (CUDA lines,
sets, nodes) are checked in bakery.checks.TAG_SAFE, and every key is capped there.
"""

from __future__ import annotations

from bakery.recipes import RECIPES
from handler.fitness_facts import FITNESS_SCHEMA
from handler.manifest import AUTH_KINDS, MODEL_FOLDERS, MODEL_SCHEMA, NO_CONTROL
from handler.schema_errors import with_wording

URL_FIX = (
    "use an https:// link "
    "(on Hugging Face: https://huggingface.co/<repo>/resolve/<revision>/<file>)"
)

# Every URL in the file follows the manifest's rule for a model's URL.
HTTP_URL = with_wording(MODEL_SCHEMA["properties"]["url"], {"x-fix": URL_FIX})

# One line of text without control characters (a line break would end a Dockerfile
# instruction or a Markdown table row).
ONE_LINE = {
    "type": "string",
    "pattern": rf"\A[^{NO_CONTROL}]+\Z",
    "maxLength": 200,
    "x-what": {"pattern": "{value} is empty or holds a line break or control character"},
    "x-fix": {
        "pattern": "write it on one line, without control characters",
        "maxLength": "shorten it",
    },
}
# A package pinned to one version (extras allowed), and a bare package name: whole values.
PINNED = r"\A[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?(\[[A-Za-z0-9._,-]+\])?==[A-Za-z0-9.+!_-]+\Z"
PACKAGE_NAME = r"\A[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?\Z"

# A model entry is the manifest's (handler.manifest owns its rules and says what is
# wrong); variants.yaml adds how to fix it, and lets sha256, size and auth be left out.
MODEL = with_wording(
    MODEL_SCHEMA,
    {
        "required": ["url", "dir", "file"],
        "properties": {
            "url": {
                "x-lands": "models.json (JSON-escaped); never a Dockerfile",
                "x-fix": URL_FIX,
                "x-example": "url: https://huggingface.co/<repo>/resolve/main/<file>",
            },
            "dir": {
                "x-fix": "use one of ComfyUI's folders: " + ", ".join(MODEL_FOLDERS),
                "x-example": "dir: checkpoints",
            },
            "file": {
                "x-lands": "Dockerfile LABEL bakery.models (escaped: templating.dq; line breaks "
                "refused), README table (escaped: templating.md), models.json (JSON-escaped)",
                "x-fix": "write only the file name (no folders); `dir` says where it goes",
                "x-example": "file: model.safetensors",
            },
            "sha256": {
                "x-fix": "copy the SHA256 from the file's page (Hugging Face shows it), "
                "or write null",
            },
            "size": {"x-fix": "write the file's size in bytes, or null"},
            "auth": {
                "x-fix": "use one of: "
                + ", ".join(AUTH_KINDS)
                + " (the token itself never goes here)",
            },
        },
    },
)

MODEL_SET = {
    "type": "object",
    "additionalProperties": False,
    "required": ["vram_gb", "models"],
    "properties": {
        "description": {"type": "string", "x-lands": "nowhere generated"},
        "vram_gb": {
            "type": ["integer", "null"],
            "minimum": 1,
            "x-what": "{value} is not a VRAM size",
            "x-fix": "write the GPU memory this model set needs, in whole GB (null if it depends)",
            "x-example": "vram_gb: 12",
        },
        "models": {"type": "array", "items": MODEL, "x-example": "models: []"},
        "recipes": RECIPES,
        "delivery": {
            "enum": ["download", "image"],
            "x-what": "{value} is not a way for models to arrive",
            "x-fix": "write download (fetched when a worker starts, the default) or image "
            "(downloaded at build time, baked into the image)",
            "x-example": "delivery: image",
        },
    },
}

NODE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["source", "commit"],
    "properties": {
        "source": {
            **HTTP_URL,
            "x-lands": "bake file context (escaped: templating.hcl)",
            "x-example": "source: https://github.com/<owner>/<repo>.git",
        },
        "commit": {
            "type": "string",
            "pattern": r"\A[0-9a-f]{40}\Z",
            "x-lands": "bake file context (refused: hexadecimal only)",
            "x-what": "{value} is not a full commit",
            "x-fix": "pin the node to its full 40-character commit hash (`git rev-parse HEAD`)",
            "x-example": "commit: <40-character commit hash>",
        },
        "pip": {
            "type": "array",
            "items": {
                "type": "string",
                "pattern": PINNED,
                "x-what": "{value} is not pinned to one version",
                "x-fix": "write name==version (e.g. imageio-ffmpeg==0.6.0): "
                "`bakery lock` pins the rest, and an image never installs a moving version",
                "x-lands": "Dockerfile RUN uv pip install (refused: this pattern; also "
                "shlex.quote)",
            },
            "x-example": "pip: [some-package==1.2.3]",
        },
        "without": {
            "type": "array",
            "items": {
                "type": "string",
                "pattern": PACKAGE_NAME,
                "x-lands": "Dockerfile RUN uv pip install --excludes (refused: this pattern)",
                "x-what": "{value} is not a package name",
                "x-fix": "write the name alone, as the node's requirements.txt spells it "
                "(e.g. opencv-python)",
            },
            "x-example": "without: [opencv-python]",
        },
        "version": {
            **ONE_LINE,
            "maxLength": 64,
            "x-lands": "nowhere generated (bakery lock checks a plain source tree by it)",
            "x-example": "version: 1.7.9",
        },
    },
}

NODE_SET = {
    "type": "object",
    "additionalProperties": False,
    "required": ["nodes"],
    "properties": {
        "description": {"type": "string", "x-lands": "nowhere generated"},
        "nodes": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": NODE,
            "x-what": "this node set has no nodes",
            "x-fix": "add a node (name: {source, commit}) or remove the node set",
            "x-example": "nodes: {my-node: {source: https://github.com/o/r.git, commit: ...}}",
        },
    },
}

CUDA_LINE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["base_image", "torch", "torch_index", "gpu_archs", "gpus"],
    "properties": {
        "base_image": {
            "type": "string",
            # ARG BASE_IMAGE=<value> is written raw: no quote, space, $, \\ or line break.
            "pattern": r"\A[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}\Z",
            "x-lands": "Dockerfile ARG BASE_IMAGE (refused), bake file (escaped: templating.hcl)",
            "x-what": "{value} is not an image reference",
            "x-fix": "write registry/name:tag (letters, digits and . _ / : @ - only)",
            "x-example": "base_image: nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04",
        },
        "torch": {
            "type": "array",
            "items": {
                "type": "string",
                # Joined with spaces into ARG TORCH_PACKAGES="…", split by the shell in RUN.
                "pattern": r"\A[A-Za-z0-9][A-Za-z0-9._+=<>!~,\[\]-]{0,99}\Z",
                "x-lands": "Dockerfile ARG TORCH_PACKAGES and RUN (refused), bake file "
                "(escaped: templating.hcl)",
                "x-what": "{value} is not a pinned package",
                "x-fix": "write one requirement such as torch==2.8.0 (no spaces or quotes)",
            },
            "x-example": "torch: [torch==2.8.0, torchvision==0.23.0]",
        },
        "torch_index": {
            **HTTP_URL,
            # ARG TORCH_INDEX_URL=<value> is written raw: no quote, space, $, \\ or line break.
            "pattern": r"\Ahttps?://[A-Za-z0-9._~:/?#@!&()*+,;=%\[\]-]+\Z",
            "x-lands": "Dockerfile ARG TORCH_INDEX_URL (refused), bake file (escaped)",
            "x-example": "torch_index: https://download.pytorch.org/whl/cu128",
        },
        # The fitness facts' rule (handler.fitness_facts: the worker checks the same list).
        "gpu_archs": with_wording(
            FITNESS_SCHEMA["properties"]["gpu_archs"],
            {
                "items": {
                    "x-lands": "Dockerfile LABEL (refused and escaped: templating.dq)",
                    "x-fix": "write a CUDA compute capability such as sm_89 or sm_120",
                },
                "x-fix": "list the compute capabilities this line serves, e.g. [sm_80, sm_89]",
                "x-example": "gpu_archs: [sm_80, sm_86, sm_89, sm_90]",
            },
        ),
        "gpus": {
            "type": "array",
            "items": {**ONE_LINE, "x-lands": "README table cell (escaped: templating.md)"},
            "x-example": "gpus: [RTX 4090, L40S, H100]",
        },
    },
}

NAMES = {"type": "array", "minItems": 1, "items": {"type": "string"}}

VARIANT_ENTRY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["model_sets", "cuda"],
    "properties": {
        "model_sets": {
            **NAMES,
            "x-what": "no model sets listed",
            "x-fix": "name at least one model set from model_sets",
            "x-example": "model_sets: [sdxl]",
        },
        "cuda": {
            **NAMES,
            "x-what": "no CUDA lines listed",
            "x-fix": "name at least one CUDA line from cuda",
            "x-example": "cuda: [cu128]",
        },
        "node_sets": {
            **NAMES,
            "x-what": "no node sets listed",
            "x-fix": "name a node set from node_sets, or leave `node_sets` out for none",
            "x-example": "node_sets: [video]",
        },
        "exclude": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "minProperties": 1,
                "properties": {
                    "model_set": {"type": "string"},
                    "cuda": {"type": "string"},
                    "node_set": {"type": "string"},
                },
                "x-what": "this exclude names nothing",
                "x-fix": "give a model_set, cuda and/or node_set to leave out",
            },
            "x-example": "exclude: [{model_set: flux-dev, cuda: cu126}]",
        },
    },
}

VARIANTS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "comfy-bakery variants.yaml",
    "type": "object",
    "additionalProperties": False,
    "required": ["image", "comfyui", "cuda", "model_sets", "variants"],
    "properties": {
        "image": {
            "type": "string",
            "pattern": r"\A[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+\Z",
            "maxLength": 255,
            "x-lands": "bake file (escaped: templating.hcl), README (refused: this pattern)",
            "x-what": "{value} is not an image repository",
            "x-fix": "write registry/owner/name in lowercase, without a tag "
            "(e.g. ghcr.io/your-org/comfy-bakery)",
            "x-example": "image: ghcr.io/your-org/comfy-bakery",
        },
        "comfyui": {
            "type": "object",
            "additionalProperties": False,
            "required": ["version"],
            "properties": {
                "version": {
                    "type": "string",
                    "x-lands": "Dockerfile comment and LABEL, bake file (refused: "
                    "bakery.checks accepts only a release tag or a full commit)",
                    "x-example": "version: v0.3.64",
                },
                "source": {
                    **HTTP_URL,
                    "x-lands": "Dockerfile comment (refused: HTTP_URL has no line break), "
                    "bake file (escaped: templating.hcl)",
                    "x-example": "source: https://github.com/comfyanonymous/ComfyUI.git",
                },
            },
            "x-example": "comfyui: {version: v0.3.64}",
        },
        "cuda": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": CUDA_LINE,
            "x-what": "no CUDA lines",
            "x-fix": "add at least one CUDA line (see the default variants.yaml)",
            "x-example": "cuda: {cu128: {base_image: ..., torch: [...], ...}}",
        },
        "node_sets": {"type": "object", "additionalProperties": NODE_SET},
        "model_sets": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": MODEL_SET,
            "x-what": "no model sets",
            "x-fix": "add at least one model set (one with `models: []` builds ComfyUI alone)",
            "x-example": "model_sets: {bare: {vram_gb: null, models: []}}",
        },
        "variants": {
            "type": "array",
            "minItems": 1,
            "items": VARIANT_ENTRY,
            "x-what": "the variant list is empty, so nothing would be built",
            "x-fix": "add an entry such as `- {model_sets: [bare], cuda: [cu128]}`",
            "x-example": "variants: [{model_sets: [bare], cuda: [cu128]}]",
        },
    },
}

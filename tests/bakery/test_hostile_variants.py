"""Hostile variants.yaml: no value injects into a Dockerfile, the bake file or the README,
no file crashes or hangs the loader, and no message repeats a secret or a wall of text (#11).

Rendered files are checked by their structure (the instructions a Dockerfile holds, what
`docker buildx bake --print` reads back), never by grepping for one marker.
"""

from __future__ import annotations

import re
import time

import pytest
from bakery.templating import hcl as _hcl

from tests.bakery.bakery_helpers import SMALL, bake_print, needs_buildx
from tests.bakery.test_variants_errors import edit, problems


def instructions(dockerfile: str) -> list[str]:
    """The instruction keyword of every logical line; fails on a line that is none of
    blank, comment, instruction or the continuation of the line before."""
    out, continued = [], False
    for line in dockerfile.split("\n"):
        stripped = line.strip()
        if continued:
            continued = stripped.endswith("\\")
            continue
        if not stripped or stripped.startswith("#"):
            continue
        keyword = stripped.split()[0]
        assert re.fullmatch(r"[A-Z]+", keyword), f"not an instruction: {line!r}"
        out.append(keyword)
        continued = stripped.endswith("\\")
    return out


def render_small(bakery, folder, text: str) -> dict[str, str]:
    folder.mkdir(exist_ok=True)
    (folder / "variants.yaml").write_text(text)
    (folder / "README.md").write_text("# x\n<!-- variants:start -->\n<!-- variants:end -->\n")
    result = bakery("render", "--out", folder)
    assert result.code == 0, result.err
    return {
        p.relative_to(folder).as_posix(): p.read_text()
        for p in folder.rglob("*")
        if p.is_file() and p.name != "variants.yaml"
    }


# --- values that would inject are refused, at their line, with a fix ----------------------

INJECTIONS = {
    "a torch list item (raw in ARG TORCH_PACKAGES)": (
        "torch: [torch==2.8.0]",
        'torch: ["torch==2.8.0\\nRUN echo pwned"]',
        "7:13: cuda.cu128.torch.0: 'torch==2.8.0\\nRUN echo pwned' is not a pinned package "
        "— write one requirement such as torch==2.8.0 (no spaces or quotes)",
    ),
    "base_image with a line break (raw ARG BASE_IMAGE)": (
        "base_image: nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04",
        'base_image: "nvidia/cuda:12.8\\nRUN x"',
        "6:17: cuda.cu128.base_image: 'nvidia/cuda:12.8\\nRUN x' is not an image reference "
        "— write registry/name:tag (letters, digits and . _ / : @ - only)",
    ),
    "base_image ending in a backslash (continues the line)": (
        "base_image: nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04",
        "base_image: nvidia/cuda:12.8\\",
        "6:17: cuda.cu128.base_image: 'nvidia/cuda:12.8\\' is not an image reference "
        "— write registry/name:tag (letters, digits and . _ / : @ - only)",
    ),
    "torch_index ending in a backslash": (
        "torch_index: https://download.pytorch.org/whl/cu128",
        "torch_index: https://download.pytorch.org/whl/cu128\\",
        "8:18: cuda.cu128.torch_index: 'https://download.pytorch.org/whl/cu128\\' is not an "
        "http(s) URL — use an https:// link "
        "(on Hugging Face: https://huggingface.co/<repo>/resolve/<revision>/<file>)",
    ),
    "a model file (LABEL bakery.models)": (
        "file: sd_xl_base_1.0.safetensors",
        'file: "sd.safetensors\\nRUN x"',
        "23:15: model_sets.sdxl.models.0.file: 'sd.safetensors\\nRUN x' is not a plain file "
        "name — write only the file name (no folders); `dir` says where it goes",
    ),
    "a node set's pip extra (shlex.quote keeps the line break)": (
        "commit: 0123456789abcdef0123456789abcdef01234567",
        'commit: 0123456789abcdef0123456789abcdef01234567\n        pip: ["x==1\\nRUN y"]',
        "17:15: node_sets.video.nodes.vhs.pip.0: 'x==1\\nRUN y' is not pinned to one version "
        "— write name==version (e.g. imageio-ffmpeg==0.6.0): `bakery lock` pins the rest, and "
        "an image never installs a moving version",
    ),
    "a node set's pip extra with shell in it": (
        "commit: 0123456789abcdef0123456789abcdef01234567",
        'commit: 0123456789abcdef0123456789abcdef01234567\n        pip: ["pkg==1; touch x"]',
        "17:15: node_sets.video.nodes.vhs.pip.0: 'pkg==1; touch x' is not pinned to one "
        "version — write name==version (e.g. imageio-ffmpeg==0.6.0): `bakery lock` pins the "
        "rest, and an image never installs a moving version",
    ),
    "a GPU name with a carriage return (README row, HCL)": (
        "gpus: [RTX 5090]",
        'gpus: ["RTX\\r5090"]',
        "10:12: cuda.cu128.gpus.0: 'RTX\\r5090' is empty or holds a line break or control "
        "character — write it on one line, without control characters",
    ),
}


@pytest.mark.parametrize("old,new,expected", INJECTIONS.values(), ids=list(INJECTIONS))
def test_a_value_that_would_inject_into_a_generated_file_is_refused(
    bakery, small, old, new, expected
):
    edit(small, old, new)
    assert problems(bakery, small) == [f"{small}:{expected}"]


# `$` also matches before a final line break; every whole-value pattern is anchored (\A…\Z).
TRAILING_NEWLINE = {
    "image": (
        "image: ghcr.io/acme/bakery",
        'image: "ghcr.io/acme/bakery\\n"',
        "1:8: image: 'ghcr.io/acme/bakery\\n' is not an image repository — write "
        "registry/owner/name in lowercase, without a tag (e.g. ghcr.io/your-org/comfy-bakery)",
    ),
    "gpu_archs": (
        "gpu_archs: [sm_120]",
        'gpu_archs: ["sm_120\\n"]',
        "9:17: cuda.cu128.gpu_archs.0: 'sm_120\\n' is not a GPU architecture — write a CUDA "
        "compute capability such as sm_89 or sm_120",
    ),
    "release tag": (
        "version: v0.3.64",
        'version: "v0.3.64\\n"',
        "3:12: comfyui.version: 'v0.3.64\\n' is neither a release tag nor a full commit — "
        "pin a release tag (e.g. v0.3.64) or a full 40-character commit",
    ),
    "commit": (
        "commit: 0123456789abcdef0123456789abcdef01234567",
        'commit: "0123456789abcdef0123456789abcdef01234567\\n"',
        "16:17: node_sets.video.nodes.vhs.commit: '0123456789abcdef0123456789abcdef01234567\\n'"
        " is not a full commit — pin the node to its full 40-character commit hash "
        "(`git rev-parse HEAD`)",
    ),
    "sha256": (
        "sha256: 31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b",
        'sha256: "31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b\\n"',
        "24:17: model_sets.sdxl.models.0.sha256: "
        "'31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b\\n' is not a sha256 "
        "(64 lowercase hexadecimal characters) — copy the SHA256 from the file's page "
        "(Hugging Face shows it), or write null",
    ),
}


@pytest.mark.parametrize("old,new,expected", TRAILING_NEWLINE.values(), ids=list(TRAILING_NEWLINE))
def test_a_trailing_line_break_does_not_pass_a_whole_value_pattern(
    bakery, small, old, new, expected
):
    edit(small, old, new)
    assert problems(bakery, small) == [f"{small}:{expected}"]


def test_a_name_with_a_trailing_line_break_is_not_tag_safe(bakery, small):
    edit(small, "  cu128:\n", '  "cu128\\n":\n')
    edit(small, "cuda: [cu128]", 'cuda: ["cu128\\n"]')
    assert problems(bakery, small) == [
        f"{small}:5:3: cuda.cu128\\n: 'cu128\\n' is not tag-safe (it becomes part of image "
        "tags and targets) — use lowercase letters, digits, '-' and '_' (e.g. 'cu128')"
    ]


# --- values that are allowed but special in a context are escaped for it -------------------

ODD = "we\"ird $HOME 'q' | <!-- variants:end --> & `x`.safetensors"
ODD_GPU = "RTX | <!-- variants:end --> 5090"


def odd_small() -> str:
    text = SMALL.replace(
        "file: sd_xl_base_1.0.safetensors", f"file: '{ODD.replace(chr(39), 2 * chr(39))}'"
    )
    text = text.replace("gpus: [RTX 5090]", f"gpus: ['{ODD_GPU}']")
    # A pip extra is a pinned name==version (refused otherwise: the cases above).
    text = text.replace(
        "commit: 0123456789abcdef0123456789abcdef01234567",
        "commit: 0123456789abcdef0123456789abcdef01234567\n        pip: [plain==1.0]",
    )
    return text.replace("    cuda: [cu128]\n", "    cuda: [cu128]\n    node_sets: [video]\n")


def test_odd_characters_are_escaped_so_every_file_keeps_its_structure(bakery, tmp_path):
    plain = render_small(
        bakery,
        tmp_path / "plain",
        SMALL.replace("    cuda: [cu128]\n", "    cuda: [cu128]\n    node_sets: [video]\n").replace(
            "commit: 0123456789abcdef0123456789abcdef01234567",
            "commit: 0123456789abcdef0123456789abcdef01234567\n        pip: [plain==1.0]",
        ),
    )
    odd = render_small(bakery, tmp_path / "odd", odd_small())
    assert sorted(odd) == sorted(plain)
    for rel in odd:
        if rel.endswith("Dockerfile"):
            assert instructions(odd[rel]) == instructions(plain[rel]), rel
    # The README table: still one row under the header, still between the markers.
    readme = odd["README.md"]
    assert readme.count("<!-- variants:end -->") == 1
    # One row in each table (the variants, their RunPod settings), every cell intact.
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    assert len(rows) == 2
    assert [len(re.split(r"(?<!\\)\|", row)[1:-1]) for row in rows] == [6, 7]
    # Every rendered file reads back as written (no lock here: only that is reported).
    checked = bakery("check", "--out", tmp_path / "odd")
    problems = checked.err.splitlines()[:-1]
    assert problems and all(p.startswith("lock/") for p in problems), checked.err


@needs_buildx
def test_odd_characters_reach_the_bake_file_as_written(bakery, tmp_path):
    odd = tmp_path / "odd"
    render_small(
        bakery,
        odd,
        odd_small().replace(
            "https://github.com/Kosinkadink/ComfyUI-VideoHelperSuite.git",
            "https://example.com/${HOME}/%{x}/repo.git",
        ),
    )
    targets = bake_print(odd)["target"]
    assert targets["sdxl-cu128-video"]["contexts"]["node-vhs"] == (
        "https://example.com/${HOME}/%{x}/repo.git#0123456789abcdef0123456789abcdef01234567"
    )


@needs_buildx
def test_an_hcl_string_reads_back_exactly_whatever_it_holds(tmp_path):
    value = 'a\rb\nc\t"q" \\ ${HOME} %{ if x } \x01 end'
    (tmp_path / "docker-bake.hcl").write_text(
        f'variable "V" {{\n  default = {_hcl(value)}\n}}\n'
        'target "t" {\n  args = { V = V }\n}\n',
        newline="",
    )
    assert bake_print(tmp_path, "t")["target"]["t"]["args"]["V"] == value


# --- bad files end in a problem, quickly, never in a traceback ------------------------------


def billion_laughs() -> str:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "text,expected",
    [
        pytest.param(
            billion_laughs(),
            "1:11: (top level): the file stands for more than 100,000 values once its aliases "
            "(*name) are expanded — use fewer aliases; variants.yaml needs only a few hundred "
            "values",
            id="billion laughs",
        ),
        pytest.param(
            "a: " + "[" * 5000 + "]" * 5000 + "\n",
            "1:1: (syntax): the file nests more than 50 levels deep — variants.yaml needs only "
            "a few levels; write the value out flat",
            id="deep nesting past Python's recursion limit",
        ),
        pytest.param(
            "a: " + "[" * 60 + "]" * 60 + "\n",
            "1:54: (top level): the file nests more than 50 levels deep — variants.yaml needs "
            "only a few levels; write the value out flat",
            id="deep nesting",
        ),
        pytest.param(
            SMALL.replace("image:", "im\x00age:"),
            "1:3: (syntax): YAML syntax error: the control character U+0000 is not allowed — "
            "remove it (only tabs and line breaks may appear, and tabs only inside text)",
            id="raw NUL",
        ),
        pytest.param(
            SMALL.replace("version: v0.3.64", "version: v0.3.64\x07"),
            "3:19: (syntax): YAML syntax error: the control character U+0007 is not allowed — "
            "remove it (only tabs and line breaks may appear, and tabs only inside text)",
            id="raw BEL",
        ),
    ],
)
def test_a_hostile_file_is_one_problem_within_bounded_time(bakery, tmp_path, text, expected):
    path = tmp_path / "variants.yaml"
    path.write_text(text)
    started = time.monotonic()
    assert problems(bakery, path) == [f"{path}:{expected}"]
    # Bounded, not fast: expanding these files would take hours or all memory; a minute
    # leaves room for a loaded machine (the speed of validate is bench_render's).
    assert time.monotonic() - started < 60


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(bakery, tmp_path):
    path = tmp_path / "variants.yaml"
    path.write_text(SMALL + "#" * 1_000_000 + "\n")
    result = bakery("validate", "--file", path)
    assert (result.code, result.out) == (1, "")
    assert result.err == (
        f"{path}: larger than 1,000,000 bytes — variants.yaml describes variants in a few KB; "
        "check that --file names the right file\n"
    )


def test_an_integer_cuda_line_name_is_read_as_the_name_it_looks_like(bakery, small):
    edit(small, "  cu128:\n", "  128:\n")
    edit(small, "cuda: [cu128]", "cuda: ['128']")
    result = bakery("validate", "--file", small)
    assert (result.code, result.err) == (0, "")


def test_an_integer_where_a_name_is_expected_is_a_type_problem(bakery, small):
    edit(small, "  cu128:\n", "  128:\n")
    edit(small, "cuda: [cu128]", "cuda: [128]")
    assert problems(bakery, small) == [
        f"{small}:28:12: variants.0.cuda.0: expected text, got a whole number — write text here"
    ]


def test_mixed_integer_and_text_keys_are_the_same_name_written_twice(bakery, small):
    edit(small, "  sdxl:\n    vram_gb: 12\n", "  1: {}\n  '1': {}\n  sdxl:\n    vram_gb: 12\n")
    assert (
        f"{small}:19:3: model_sets.1: '1' is written twice in this mapping (first on line 18)"
        " — keep one of them; a second entry would silently replace the first"
        in problems(bakery, small)
    )


def test_a_merge_key_with_overrides_is_valid_yaml(bakery, small):
    edit(small, "  sdxl:\n    vram_gb: 12\n", "  sdxl: &base\n    vram_gb: 12\n")
    edit(small, "variants:\n", "  big:\n    <<: *base\n    vram_gb: 24\nvariants:\n")
    result = bakery("validate", "--file", small)
    assert (result.code, result.err) == (0, "")


def test_a_key_written_twice_next_to_a_merge_key_is_still_reported(bakery, small):
    edit(small, "  sdxl:\n    vram_gb: 12\n", "  sdxl: &base\n    vram_gb: 12\n")
    edit(
        small, "variants:\n", "  big:\n    <<: *base\n    vram_gb: 24\n    vram_gb: 25\nvariants:\n"
    )
    assert problems(bakery, small) == [
        f"{small}:29:5: model_sets.big.vram_gb: 'vram_gb' is written twice in this mapping "
        "(first on line 28) — keep one of them; a second entry would silently replace the first"
    ]


# --- secrets and walls of text never come back in a message ---------------------------------

HF = "hf_" + "abcdefghijklmnopqrstuvwxyz0123"


def test_a_token_used_as_a_name_is_not_echoed_in_any_message(bakery, small):
    edit(small, "  sdxl:\n", f"  {HF}:\n")
    lines = problems(bakery, small)
    assert lines == [
        f"{small}:18:3: model_sets.(secret, not shown): this looks like a Hugging Face token "
        "(hf_…) — remove it (and revoke it if it was ever committed); set `auth: huggingface` "
        "on the model and give the container HF_TOKEN",
        f"{small}:27:18: variants.0.model_sets.0: unknown model set 'sdxl' — use one of: "
        "(secret, not shown)",
    ]


@pytest.mark.parametrize(
    "query,what",
    [
        pytest.param(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAABCDEFGHIJKLMNOP%2F2025"
            "&X-Amz-Security-Token=IQoJb3JpZ2lu&X-Amz-Signature=deadbeef",
            "an AWS access key",
            id="presigned S3 URL",
        ),
        pytest.param(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=deadbeef",
            "a presigned URL (X-Amz-Signature=…), which is a credential until it expires",
            id="presigned URL without a key id",
        ),
        pytest.param(
            "private=glpat-abcdefghijklmnopqrst12", "a GitLab token (glpat-…)", id="glpat"
        ),
    ],
)
def test_signed_urls_and_more_token_kinds_are_found(bakery, small, tmp_path, query, what):
    edit(small, "sd_xl_base_1.0.safetensors\n        dir", f"x?{query}\n        dir")
    assert problems(bakery, small) == [
        f"{small}:21:14: model_sets.sdxl.models.0.url: this looks like {what} — remove it (and "
        "revoke it if it was ever committed); tokens reach a build only as bake secrets and a "
        "container only as environment"
    ]
    assert bakery("render", "--file", small, "--out", tmp_path / "out").code == 3
    assert not (tmp_path / "out" / "build").exists()


def test_a_huge_key_gives_a_short_message(bakery, small):
    edit(
        small,
        "image: ghcr.io/acme/bakery\n",
        "image: ghcr.io/acme/bakery\n? " + "k" * 100_000 + "\n: 1\n",
    )
    shown = "k" * 77 + "..."
    assert problems(bakery, small) == [
        f"{small}:2:3: {shown}: unknown key '{shown}' — remove it; keys allowed here: comfyui, "
        "cuda, image, model_sets, node_sets, variants"
    ]


def test_dockerfile_structure_check_catches_an_injected_line():
    """The structural check itself: a line the template did not make fails it."""
    assert instructions("FROM x\nRUN a \\\n    b\n# c\n") == ["FROM", "RUN"]
    with pytest.raises(AssertionError):
        instructions('FROM x\nARG T="a\nrm -rf /"\n')


# --- bakery acts on the project it is run in --------------------------------------------


def test_bakery_acts_on_the_nearest_variants_file_above_the_current_folder(
    bakery, project, monkeypatch
):
    inside = project / "docs" / "deep"
    inside.mkdir(parents=True)
    monkeypatch.chdir(inside)
    result = bakery("render")
    assert result.code == 0, result.err
    used = project / "variants.yaml"  # named in full: it is outside the current folder
    assert re.fullmatch(
        rf"rendered \d+ variants from {used}: \d+ files changed", result.out.splitlines()[0]
    )
    assert (project / "docker-bake.hcl").is_file() and (project / "build").is_dir()
    assert bakery("check").out == f"generated files match {used}\n"


def test_bakery_outside_any_project_says_so(bakery, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = bakery("validate")
    assert (result.code, result.out) == (1, "")
    assert result.err == (
        f"no variants.yaml in {tmp_path} or any folder above it — run bakery inside a project, "
        "or pass --file PATH (and --out DIR)\n"
    )


def test_render_keeps_a_readmes_own_line_endings_and_check_reads_them_exactly(bakery, project):
    """Files are compared as written: a CR is a CR, not a line break (universal newlines)."""
    readme = project / "README.md"
    readme.write_bytes(readme.read_bytes().replace(b"\n", b"\r\n"))
    assert bakery("render", "--out", project).code == 0
    text = readme.read_bytes()
    start, end = text.index(b"<!-- variants:start -->"), text.index(b"<!-- variants:end -->")
    outside = text[:start] + text[end:]
    assert outside.count(b"\n") == outside.count(b"\r\n")  # the user's CRLF kept
    assert bakery("check", "--out", project).code == 0
    readme.write_bytes(text.replace(b"\r\n", b"\n", 1))  # one line ending changed by hand
    assert bakery("check", "--out", project).code == 0  # outside the table: not ours
    build_readme = project / "build" / "README.md"
    build_readme.write_bytes(build_readme.read_bytes().replace(b"\n", b"\r\n", 1))
    result = bakery("check", "--out", project)
    assert (result.code, result.err.splitlines()[0]) == (4, "build/README.md: out of date")

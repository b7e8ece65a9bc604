"""Every mistake in variants.yaml is reported as FILE:LINE:COL: key.path: what — fix.

Each test makes one edit to a small valid file (tests/bakery/bakery_helpers.py SMALL, whose
line numbers the expected messages use) and asserts the whole message.
"""

from __future__ import annotations

import pytest

from tests.bakery.bakery_helpers import REPO, SMALL, edit, problems


def test_the_small_file_is_valid(bakery, small):
    result = bakery("validate", "--file", small)
    assert (result.code, result.err) == (0, "")
    assert result.out == f"{small}: ok — 1 variant on 1 CUDA line\n"


def test_yaml_syntax_error_names_the_line_and_the_bracket_left_open(bakery, small):
    edit(small, "  version: v0.3.64", "  version: [v0.3.64")
    assert problems(bakery, small) == [
        f"{small}:4:5: (syntax): YAML syntax error: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence started on line 3) — close the bracket opened on line 3"
    ]


def test_a_tab_in_the_indentation_is_a_syntax_error_with_its_own_fix(bakery, small):
    edit(small, "  version: v0.3.64", "\tversion: v0.3.64")
    assert problems(bakery, small) == [
        f"{small}:3:1: (syntax): YAML syntax error: a tab character where YAML expects spaces "
        "— indent with spaces; YAML does not allow tabs"
    ]


def test_unknown_key_suggests_the_key_meant(bakery, small):
    edit(small, "        size: 6938078334", "        sizes: 6938078334")
    assert problems(bakery, small) == [
        f"{small}:25:9: model_sets.sdxl.models.0.sizes: unknown key 'sizes' — did you mean 'size'?"
    ]


def test_unknown_key_with_no_near_match_lists_the_allowed_keys(bakery, small):
    edit(small, "image: ghcr.io/acme/bakery\n", "image: ghcr.io/acme/bakery\nflavour: vanilla\n")
    assert problems(bakery, small) == [
        f"{small}:2:1: flavour: unknown key 'flavour' — remove it; keys allowed here: "
        "comfyui, cuda, image, model_sets, node_sets, variants"
    ]


def test_missing_required_key_shows_an_example(bakery, small):
    edit(small, "    vram_gb: 12\n", "")
    assert problems(bakery, small) == [
        f"{small}:19:5: model_sets.sdxl.vram_gb: missing required key 'vram_gb' — "
        "add it, e.g. `vram_gb: 12`"
    ]


def test_wrong_type_says_what_was_expected_and_what_was_found(bakery, small):
    edit(small, "    cuda: [cu128]", "    cuda: cu128")
    assert problems(bakery, small) == [
        f"{small}:28:11: variants.0.cuda: expected a list, got text — write it like `cuda: [cu128]`"
    ]


def test_variant_naming_an_unknown_model_set(bakery, small):
    edit(small, "model_sets: [sdxl]", "model_sets: [sdxl, flux]")
    assert problems(bakery, small) == [
        f"{small}:27:24: variants.0.model_sets.1: unknown model set 'flux' — use one of: sdxl"
    ]


def test_variant_naming_an_unknown_cuda_line_gets_a_did_you_mean(bakery, small):
    edit(small, "cuda: [cu128]", "cuda: [cu129]")
    assert problems(bakery, small) == [
        f"{small}:28:12: variants.0.cuda.0: unknown CUDA line 'cu129' — did you mean 'cu128'?"
    ]


def test_variant_naming_an_unknown_node_set(bakery, small):
    edit(small, "    cuda: [cu128]\n", "    cuda: [cu128]\n    node_sets: [vidoe]\n")
    assert problems(bakery, small) == [
        f"{small}:29:17: variants.0.node_sets.0: unknown node set 'vidoe' — did you mean 'video'?"
    ]


def test_exclude_naming_an_unknown_model_set(bakery, small):
    edit(small, "    cuda: [cu128]\n", "    cuda: [cu128]\n    exclude: [{model_set: sdlx}]\n")
    assert problems(bakery, small) == [
        f"{small}:29:27: variants.0.exclude.0.model_set: unknown model set 'sdlx' — "
        "did you mean 'sdxl'?"
    ]


def test_a_model_set_defined_twice(bakery, small):
    edit(small, "variants:\n", "  sdxl:\n    vram_gb: 8\n    models: []\nvariants:\n")
    assert problems(bakery, small) == [
        f"{small}:26:3: model_sets.sdxl: 'sdxl' is written twice in this mapping (first on "
        "line 18) — keep one of them; a second entry would silently replace the first"
    ]


def test_a_variant_listed_twice(bakery, small):
    edit(
        small, "    cuda: [cu128]\n", "    cuda: [cu128]\n  - {model_sets: [sdxl], cuda: [cu128]}\n"
    )
    assert problems(bakery, small) == [
        f"{small}:29:5: variants.1: variant 'sdxl-cu128' is also made by variants.0 — "
        "list each variant once: remove it here or exclude it"
    ]


def test_a_name_that_is_not_tag_safe(bakery, small):
    text = small.read_text().replace("  sdxl:", "  SDXL Base:").replace("[sdxl]", "['SDXL Base']")
    small.write_text(text)
    assert problems(bakery, small) == [
        f"{small}:18:3: model_sets.SDXL Base: 'SDXL Base' is not tag-safe (it becomes part of "
        "image tags and targets) — use lowercase letters, digits, '-' and '_' (e.g. 'sdxl-base')"
    ]


def test_a_model_set_named_base_would_clash_with_the_shared_base_target(bakery, small):
    small.write_text(small.read_text().replace("  sdxl:", "  base:").replace("[sdxl]", "[base]"))
    assert problems(bakery, small) == [
        f"{small}:18:3: model_sets.base: variant 'base-cu128' would have the name of the shared "
        "base target for CUDA line 'cu128' — rename the model set (e.g. 'bare' for one without "
        "models)"
    ]


def test_a_model_set_and_a_cuda_line_may_not_share_a_name(bakery, small):
    small.write_text(small.read_text().replace("  sdxl:", "  cu128:").replace("[sdxl]", "[cu128]"))
    assert problems(bakery, small) == [
        f"{small}:18:3: model_sets.cu128: 'cu128' is also a CUDA line, and each of them names a "
        "bake group — choose another name"
    ]


def test_a_model_set_named_default_would_clash_with_the_default_group(bakery, small):
    small.write_text(
        small.read_text().replace("  sdxl:", "  default:").replace("[sdxl]", "[default]")
    )
    assert problems(bakery, small) == [
        f"{small}:18:3: model_sets.default: 'default' is the bake group that builds every "
        "variant — choose another name"
    ]


def test_a_variant_may_not_take_the_name_of_a_group(bakery, small):
    extra = "  sdxl-cu128:\n    vram_gb: 8\n    models: []\nvariants:\n"
    small.write_text(small.read_text().replace("variants:\n", extra))
    assert problems(bakery, small) == [
        f"{small}:30:5: variants.0: variant 'sdxl-cu128' would have the name of the bake group "
        "of model set 'sdxl-cu128' — rename that model set or CUDA line"
    ]


def test_unknown_model_folder(bakery, small):
    edit(small, "dir: checkpoints", "dir: checkpoint")
    assert problems(bakery, small) == [
        f"{small}:22:14: model_sets.sdxl.models.0.dir: 'checkpoint' is not a ComfyUI model "
        "folder — did you mean 'checkpoints'?"
    ]


def test_unknown_model_folder_with_no_near_match_lists_the_folders(bakery, small):
    from handler.manifest import MODEL_FOLDERS

    edit(small, "dir: checkpoints", "dir: weights")
    assert problems(bakery, small) == [
        f"{small}:22:14: model_sets.sdxl.models.0.dir: 'weights' is not a ComfyUI model "
        "folder — use one of ComfyUI's folders: " + ", ".join(MODEL_FOLDERS)
    ]


def test_two_models_landing_on_the_same_path(bakery, small):
    second = (
        "      - url: https://example.com/other.safetensors\n"
        "        dir: checkpoints\n"
        "        file: sd_xl_base_1.0.safetensors\n"
    )
    edit(small, "variants:\n", second + "variants:\n")
    assert problems(bakery, small) == [
        f"{small}:28:15: model_sets.sdxl.models.1.file: checkpoints/sd_xl_base_1.0.safetensors "
        "is also where model_sets.sdxl.models.0 goes, so one download would overwrite the "
        "other — give one of them another file name, or remove the duplicate"
    ]


def test_malformed_sha256(bakery, small):
    edit(small, "sha256: 31e35c80", "sha256: 31e35c8")
    assert problems(bakery, small) == [
        f"{small}:24:17: model_sets.sdxl.models.0.sha256: "
        "'31e35c8fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b' is not a sha256 "
        "(64 lowercase hexadecimal characters) — copy the SHA256 from the file's page "
        "(Hugging Face shows it), or write null"
    ]


def test_non_http_url(bakery, small):
    edit(small, "url: https://huggingface.co", "url: s3://huggingface.co")
    assert problems(bakery, small) == [
        f"{small}:21:14: model_sets.sdxl.models.0.url: "
        "'s3://huggingface.co/stabilityai/sdxl/resolve/main/sd_xl_base_1.0.safetensors' is not "
        "an http(s) URL "
        "— use an https:// link (on Hugging Face: "
        "https://huggingface.co/<repo>/resolve/<revision>/<file>)"
    ]


def test_custom_node_not_pinned_to_a_full_commit(bakery, small):
    edit(small, "commit: 0123456789abcdef0123456789abcdef01234567", "commit: main")
    assert problems(bakery, small) == [
        f"{small}:16:17: node_sets.video.nodes.vhs.commit: 'main' is not a full commit — "
        "pin the node to its full 40-character commit hash (`git rev-parse HEAD`)"
    ]


def test_empty_variant_list(bakery, small):
    text = small.read_text()
    small.write_text(text[: text.index("variants:")] + "variants: []\n")
    assert problems(bakery, small) == [
        f"{small}:26:11: variants: the variant list is empty, so nothing would be built — "
        "add an entry such as `- {model_sets: [bare], cuda: [cu128]}`"
    ]


@pytest.mark.parametrize("branch", ["master", "main"])
def test_comfyui_pinned_to_a_branch(bakery, small, branch):
    edit(small, "version: v0.3.64", f"version: {branch}")
    assert problems(bakery, small) == [
        f"{small}:3:12: comfyui.version: '{branch}' is a branch, which moves under you — "
        "pin a release tag (e.g. v0.3.64) or a full 40-character commit"
    ]


def test_comfyui_pinned_to_a_short_commit(bakery, small):
    edit(small, "version: v0.3.64", "version: 1a2b3c4d")
    assert problems(bakery, small) == [
        f"{small}:3:12: comfyui.version: '1a2b3c4d' is a short commit, which can become "
        "ambiguous — pin a release tag (e.g. v0.3.64) or a full 40-character commit"
    ]


def test_a_hugging_face_token_is_reported_without_being_shown(bakery, small):
    token = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
    edit(
        small,
        "sd_xl_base_1.0.safetensors\n        dir",
        f"x.safetensors?token={token}\n        dir",
    )
    lines = problems(bakery, small)
    assert lines == [
        f"{small}:21:14: model_sets.sdxl.models.0.url: this looks like a Hugging Face token "
        "(hf_…) — remove it (and revoke it if it was ever committed); set `auth: huggingface` "
        "on the model and give the container HF_TOKEN"
    ]
    assert token not in "\n".join(lines)


def test_a_token_in_a_url_query_is_reported(bakery, small):
    edit(small, "sd_xl_base_1.0.safetensors\n        dir", "x?download=1&token=s3cr3t\n        dir")
    assert problems(bakery, small) == [
        f"{small}:21:14: model_sets.sdxl.models.0.url: this looks like a credential in the URL "
        "query (?token=…) — remove it (and revoke it if it was ever committed); tokens reach a "
        "build only as bake secrets and a container only as environment"
    ]


def test_a_civitai_key_anywhere_is_reported(bakery, small):
    key = "0123456789abcdef" * 2
    edit(small, "    vram_gb: 12\n", f"    vram_gb: 12\n    description: key {key}\n")
    lines = problems(bakery, small)
    assert lines == [
        f"{small}:20:18: model_sets.sdxl.description: this looks like a Civitai API key — "
        "remove it (and revoke it if it was ever committed); set `auth: civitai` on the model "
        "and give the container CIVITAI_TOKEN"
    ]
    assert key not in "\n".join(lines)


def test_every_problem_is_reported_at_once_in_file_order(bakery, small):
    edit(small, "version: v0.3.64", "version: master")
    edit(small, "dir: checkpoints", "dir: checkpoint")
    edit(small, "cuda: [cu128]", "cuda: [cu129]")
    lines = problems(bakery, small)
    assert [line.split(": ")[0] for line in lines] == [
        f"{small}:3:12",
        f"{small}:22:14",
        f"{small}:28:12",
    ]


def test_a_missing_file_is_a_message_not_a_traceback(bakery, tmp_path):
    missing = tmp_path / "nope.yaml"
    result = bakery("validate", "--file", missing)
    assert (result.code, result.out) == (1, "")
    assert result.err == (
        f"{missing}: no such file — run bakery from the repository root or pass --file PATH\n"
    )


def test_the_default_variants_yaml_is_valid_and_has_what_a_user_needs(bakery):
    from bakery.variants import load

    config = load(REPO / "variants.yaml")
    assert {"bare", "sdxl"} <= set(config.model_sets)
    assert any(name.startswith("flux") for name in config.model_sets)
    blackwell = [c for c in config.cuda.values() if "sm_120" in c.gpu_archs]
    ampere_to_hopper = [
        c for c in config.cuda.values() if {"sm_80", "sm_89", "sm_90"} <= set(c.gpu_archs)
    ]
    assert blackwell and ampere_to_hopper
    assert all("cu128" in c.torch_index for c in blackwell)
    assert config.comfyui_version.startswith("v")


def mutations():
    """Every line of SMALL deleted, and every value replaced by each wrong kind of value."""
    lines = SMALL.splitlines(keepends=True)
    for i, line in enumerate(lines):
        yield f"line {i + 1} deleted", "".join(lines[:i] + lines[i + 1 :])
        key, sep, _ = line.partition(": ")
        if sep:
            for wrong in ("[]", "{}", "null", "7", "[1, {a: b}]", "''"):
                yield (
                    f"line {i + 1} = {wrong}",
                    "".join([*lines[:i], f"{key}: {wrong}\n", *lines[i + 1 :]]),
                )


def test_no_malformed_file_gets_a_traceback(tmp_path):
    """Whatever the shape of the mistake, the answer is VariantsError with located problems."""
    from bakery.errors import VariantsError
    from bakery.variants import parse

    path = tmp_path / "variants.yaml"
    checked = 0
    for label, text in mutations():
        try:
            parse(text, path)
        except VariantsError as exc:
            assert exc.problems, label
            for line in str(exc).splitlines():
                assert line.startswith(f"{path}:") and " — " in line, (label, line)
        checked += 1
    assert checked > 100

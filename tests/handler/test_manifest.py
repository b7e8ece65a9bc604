"""The model manifest: typed both ways, and every problem named as WHERE: what — fix."""

from __future__ import annotations

import copy

import pytest

from handler.manifest import Manifest, ManifestError, Model

SOURCE = "build/sdxl-cu128/models.json"
RERENDER = "re-render it with `bakery render`; do not edit it by hand"
GOOD = {
    "schema_version": 1,
    "variant": "sdxl-cu128",
    "model_set": "sdxl",
    "cuda": "cu128",
    "models": [
        {
            "url": "https://example.com/a.safetensors",
            "dir": "checkpoints",
            "file": "a.safetensors",
            "sha256": None,
            "size": 3,
            "auth": "none",
        }
    ],
}


def refused(edit) -> list[str]:
    data = copy.deepcopy(GOOD)
    edit(data)
    with pytest.raises(ManifestError) as caught:
        Manifest.from_json(data, SOURCE)
    return str(caught.value).splitlines()


def test_a_manifest_reads_back_as_what_was_written():
    manifest = Manifest.from_json(GOOD)
    assert manifest.models == (
        Model("https://example.com/a.safetensors", "checkpoints", "a.safetensors", None, 3),
    )
    assert manifest.to_json() == GOOD
    assert Manifest.from_json(manifest.to_json()) == manifest


def test_a_value_that_breaks_a_rule_says_what_is_wrong():
    assert refused(lambda d: d["models"][0].update(sha256="abc")) == [
        f"{SOURCE}: models.0.sha256: 'abc' is not a sha256 (64 lowercase hexadecimal "
        f"characters) — {RERENDER}"
    ]


def test_a_newer_schema_version_is_named():
    assert refused(lambda d: d.update(schema_version=2)) == [
        f"{SOURCE}: schema_version: 2 is not schema version 1, the one this handler reads "
        f"— {RERENDER}"
    ]


def test_every_problem_is_listed_and_each_says_to_render_again():
    def edit(data):
        del data["models"][0]["auth"]
        data["models"][0]["size"] = "big"
        data["models"][0]["extra"] = 1

    assert refused(edit) == [
        f"{SOURCE}: models.0.extra: unknown key 'extra' — {RERENDER}",
        f"{SOURCE}: models.0.auth: missing required key 'auth' — {RERENDER}",
        f"{SOURCE}: models.0.size: expected an integer or null, got a string — {RERENDER}",
    ]


def test_two_models_on_one_path_are_refused():
    assert refused(lambda d: d["models"].append(dict(d["models"][0]))) == [
        f"{SOURCE}: models.1.file: checkpoints/a.safetensors is also where models.0 goes, so "
        f"one download would overwrite the other — {RERENDER}"
    ]


@pytest.mark.parametrize("file", ["..", ".", "a/b.safetensors", "a\\b.safetensors"])
def test_a_file_name_that_leaves_its_folder_is_refused(file):
    assert refused(lambda d: d["models"][0].update(file=file)) == [
        f"{SOURCE}: models.0.file: '{file}' is not a plain file name — {RERENDER}"
    ]

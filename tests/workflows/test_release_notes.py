"""Release notes: the README's variant table plus the tags a release pushed,
so a user reading the GitHub release can pick an image in the RunPod console."""

from __future__ import annotations

import pytest

TABLE = (
    "| tag | CUDA line | GPUs | models | download | VRAM |\n"
    "|---|---|---|---|---|---|\n"
    "| `sdxl-cu128` | cu128 | RTX 5090, H100 | sd_xl_base_1.0.safetensors | 6.9 GB | 12 GB |"
)


def readme_with(table: str) -> str:
    return f"# comfy-bakery\n\n<!-- variants:start -->\n{table}\n<!-- variants:end -->\n"


def test_the_notes_carry_the_rendered_table_and_every_pushed_tag(release_notes):
    variants = [
        {"target": "sdxl-cu128", "tags": ["ghcr.io/a/b:1.2.0-sdxl-cu128", "ghcr.io/a/b:sdxl-cu128"]}
    ]
    table = release_notes.variant_table(readme_with(TABLE))
    assert release_notes.notes("1.2.0", table, variants) == (
        "## Images in 1.2.0\n\n"
        f"{TABLE}\n\n"
        "### Tags pushed\n\n"
        "- **sdxl-cu128**: `ghcr.io/a/b:1.2.0-sdxl-cu128`, `ghcr.io/a/b:sdxl-cu128`\n\n"
        + release_notes.HUB
    )


def test_a_readme_without_the_table_asks_for_a_render(release_notes):
    with pytest.raises(release_notes.NotesError) as caught:
        release_notes.variant_table("# comfy-bakery\n")
    assert str(caught.value) == (
        "README.md has no <!-- variants:start --> … <!-- variants:end --> block: "
        "run `bakery render` and commit README.md"
    )


def test_an_empty_table_asks_for_a_render(release_notes):
    with pytest.raises(release_notes.NotesError) as caught:
        release_notes.variant_table(readme_with(""))
    assert str(caught.value) == "README.md's variant table is empty: run `bakery render`"


def test_the_script_prints_the_notes_for_the_workflow(release_notes, tmp_path, monkeypatch, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(readme_with(TABLE))
    monkeypatch.setenv("VARIANTS", '[{"target": "sdxl-cu128", "tags": ["x/y:1.0.0-sdxl-cu128"]}]')
    assert release_notes.main(["--version", "1.0.0", "--readme", str(readme)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## Images in 1.0.0\n")
    assert "- **sdxl-cu128**: `x/y:1.0.0-sdxl-cu128`" in out

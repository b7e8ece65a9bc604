"""ComfyUI's official workflow templates (comfyui-workflow-templates, pinned in
requirements-dev.txt: the version ComfyUI 0.3.64 asks for) through `bakery add` and
`bakery check-workflow`: workflows nobody here wrote."""

from __future__ import annotations

import yaml
from bakery import node_defs, workflow_check
from bakery.add import needed_models, slug
from bakery.variants import load
from bakery.workflow import CORE_PACK
from bakery.workflow import load as load_workflow

from tests.bakery.byow_helpers import all_templates, make_project

# Templates that do not fit ComfyUI 0.3.64 with the video node set, and why (each is a
# finding, not a false alarm: the check must keep saying so).
DO_NOT_FIT = {
    # Saved with an older Rodin3D_Gen2 (no TAPose input): its widget values shift by one.
    "api_rodin_gen2": "node 67 (Rodin3D_Gen2) input Seed: 'PBR' is not a number",
    # Needs three custom packs (controlnet_aux, segment-anything-2, KJNodes).
    "video_wan2_2_14B_animate": "(PixelPerfectResolution): no such node class",
}


def _core_with_models():
    for path in all_templates():
        wf = load_workflow(path)
        if wf.models and all(n.pack in (None, CORE_PACK) for n in wf.nodes):
            yield path, wf


def test_every_template_is_read_and_checked_against_the_pinned_node_definitions(tmp_path):
    project = make_project(tmp_path / "project")
    config = load(project / "variants.yaml")
    variant = next(v for v in config.variants if v.name == "wan22-ti2v-5b-cu126-video")
    defs = node_defs.for_variant(config, variant)
    assert defs.complete
    checked, misfits = 0, {}
    for path in all_templates():
        wf = load_workflow(path)
        problems, _ = workflow_check.check(wf, defs, variant, volume=True)
        checked += 1
        if problems:
            misfits[path.stem] = problems[0]
    assert checked >= 170
    assert set(misfits) == set(DO_NOT_FIT)
    for name, first in misfits.items():
        assert DO_NOT_FIT[name] in first


def test_every_template_with_embedded_models_names_exactly_those_models(tmp_path):
    """What `bakery add` reads from each core-only template with embedded models: the
    template's own URLs, folders and files, nothing missing, nothing to finish by hand."""
    config = load(make_project(tmp_path / "project") / "variants.yaml")
    defs = node_defs.for_variant(config, None).classes
    read = 0
    for path, wf in _core_with_models():
        models, problems = needed_models(wf, defs, {})
        assert problems == [], path.name
        assert {(m.url, m.dir, m.file) for m in models.values()} == {
            (m.url, m.directory, m.name) for m in wf.models
        }, path.name
        read += 1
    assert read >= 95


def test_templates_become_model_sets_that_render_and_pass_bakery_check(bakery, tmp_path):
    """A dozen of them, spread over the list, added (offline) to one project: each model
    set holds the template's URLs, folders and files (a URL already in another set is taken
    from it); the project renders and `bakery check`, which runs check-workflow on every
    stored workflow against its variants, is clean."""
    project = make_project(tmp_path / "project")
    chosen = [t for t in _core_with_models() if t[0].stem not in DO_NOT_FIT][::8]
    assert len(chosen) >= 12
    for path, _ in chosen:
        result = bakery("add", path, "--out", project, "--offline", "--cuda", "cu128")
        assert result.code == 0, (path.name, result.err)
    data = yaml.safe_load((project / "variants.yaml").read_text())
    for path, wf in chosen:
        got = {
            (m["url"], m["dir"], m["file"]) for m in data["model_sets"][slug(path.stem)]["models"]
        }
        assert got == {(m.url, m.directory, m.name) for m in wf.models}, path.name
    assert bakery("render", "--out", project).code == 0
    checked = bakery("check", "--out", project)
    assert checked.code == 0, checked.err

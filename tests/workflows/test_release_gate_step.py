"""release.yml's gate step, run as written, when bake pushed nothing for an image: the
record says so and the job fails, so the promote job never runs."""

from __future__ import annotations

import json

from tests.workflows.workflow_steps import run_step, workflow_step, workspace

GATE = workflow_step("release.yml", "variants", "Gate each candidate and record the tested digests")


def test_an_image_bake_did_not_push_is_recorded_as_failed(tmp_path):
    work = workspace(tmp_path / "variant-job")
    images = [{"target": "aa-cu1", "tags": ["ghcr.io/a/b:1.2.0-aa-cu1", "ghcr.io/a/b:aa-cu1"]}]
    values = {"IMAGES": json.dumps(images), "METADATA": "{}", "GROUP": "base-cu1-1"}
    done = run_step(GATE, work, values)
    assert done.code == 1
    assert "failed the gate (nothing of this release is published): aa-cu1" in done.out
    record = json.loads((work / "gate" / "gate-base-cu1-1.json").read_text())
    assert record == {
        "images": [
            {
                **images[0],
                "candidate": "",
                "passed": False,
                "what": "bake's metadata has no entry for aa-cu1: was it built and pushed?",
            }
        ]
    }

"""Pipelined jobs never share, leak or remove each other's files (#25), on the real ComfyUI
0.3.64 in the real image: bursts of jobs sent at once through the SDK's local API (the same
bursts as on the double, tests/kit/job_files.py), every job its own result, and then nothing
left in the image's ComfyUI input/, output/ and temp/; a few rounds in a row. The video
burst runs in the video image (tests/realpath/test_video_job.py)."""

from __future__ import annotations

import pytest

from tests.kit import job_files

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]


def test_bursts_of_uploads_get_each_job_its_own_result_and_leave_nothing(real_worker):
    job_files.rounds(
        (job_files.identical_uploads, job_files.different_uploads),
        3,
        job_files.posted_at_once(real_worker.job),
        job_files.settling(real_worker.comfy_files),
    )

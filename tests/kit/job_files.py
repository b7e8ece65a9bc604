"""Bursts of pipelined jobs whose files could meet in ComfyUI's folders (#25), for the double
and the real ComfyUI alike: each burst is the jobs' inputs and a check of their results.

- `identical_uploads`: N jobs send the same image under the same name (as clients do with a
  shared init image or logo); the first one fails fast (its workflow is refused) and its
  clean-up must not take the others' file.
- `different_uploads`: N jobs send different images under the same name; each must get the
  result of its own image.
- `videos_with_metadata`: N VideoHelperSuite jobs with `save_metadata` on (the prompt goes
  to ffmpeg through `temp/metadata.txt`, a fixed name every such job rewrites).

After each, nothing may be left in ComfyUI's input/, output/ and temp/ (`listing`);
`rounds` runs bursts round after round and says which one failed, and how.
"""

from __future__ import annotations

import base64
import concurrent.futures
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.comfy_double import media, workflows

N = 6
NAME = "in.png"  # every job's upload is called this
SIZE = (6, 4)


@dataclass
class Burst:
    name: str
    inputs: list[dict]  # each job's input, in the order the jobs arrive
    check: Callable[[list[dict]], None]  # the results (each job's output), in that order


def picture(color: int) -> media.Image:
    return media.Image.filled(*SIZE, color)


def upload(color: int) -> dict:
    return {"name": NAME, "image": base64.b64encode(media.png(picture(color))).decode()}


def refused(name: str) -> dict:
    """A workflow ComfyUI refuses at once (a node class it does not have), after the upload."""
    prompt = workflows.invert_upload(name)
    prompt["4"] = {"class_type": "NoSuchNodeAnywhere", "inputs": {"image": ["1", 0]}}
    return prompt


def images_of(output: dict) -> list[media.Image]:
    assert "error" not in output, output["error"]
    return [media.read_png(base64.b64decode(e["data"])) for e in output.get("images", [])]


def colors_of(output: dict) -> list[str]:
    """Each returned image as its size and the colours in it (for a failure message)."""
    seen = []
    for image, entry in zip(images_of(output), output.get("images", []), strict=True):
        colors = {tuple(row[i : i + 3]) for row in image.rows() for i in range(0, len(row), 3)}
        seen.append(f"{entry['filename']} {image.width}x{image.height} {sorted(colors)[:3]}")
    return seen


def alike(a: media.Image, b: media.Image) -> bool:
    """The same picture, each channel within 1: the real ComfyUI turns pixels into floats and
    back, truncating (75 inverted comes back as 179, not 180); jobs' colours differ far more."""
    return (a.width, a.height) == (b.width, b.height) and all(
        abs(x - y) <= 1 for x, y in zip(a.pixels, b.pixels, strict=True)
    )


def expect(output: dict, color: int, job: int) -> None:
    wanted = picture(color).inverted()
    got = images_of(output)
    assert len(got) == 1 and alike(got[0], wanted), (
        f"job {job}: wanted one {wanted.width}x{wanted.height} image of "
        f"#{0xFFFFFF - color:06x}, got {colors_of(output)}"
    )


def identical_uploads(n: int = N) -> Burst:
    first = {"workflow": refused(NAME), "images": [upload(0x204060)]}
    rest = [{"workflow": workflows.invert_upload(NAME), "images": [upload(0x204060)]}] * (n - 1)

    def check(outputs: list[dict]) -> None:
        assert "NoSuchNodeAnywhere" in outputs[0].get("error", ""), outputs[0]
        for i, output in enumerate(outputs[1:], start=1):
            expect(output, 0x204060, i)

    return Burst("identical uploads, the first job refused", [first, *rest], check)


def different_uploads(n: int = N) -> Burst:
    colors = [0x100000 * (i + 1) + 0x000F0F * i for i in range(n)]
    inputs = [{"workflow": workflows.invert_upload(NAME), "images": [upload(c)]} for c in colors]

    def check(outputs: list[dict]) -> None:
        for i, (output, color) in enumerate(zip(outputs, colors, strict=True)):
            expect(output, color, i)

    return Burst("different uploads under one name", inputs, check)


def video_workflow(color: int) -> dict:
    """Three frames → VHS_VideoCombine as an H.264 MP4 with the prompt saved in it (VHS's
    widgets as the real node takes them; the double takes the same)."""
    prompt = workflows.video(frames=3, prefix="clip")
    prompt["1"]["inputs"]["color"] = color
    prompt["2"]["inputs"].update(pix_fmt="yuv420p", crf=19, save_metadata=True, trim_to_audio=False)
    return prompt


def videos_with_metadata(n: int = N) -> Burst:
    inputs = [{"workflow": video_workflow(0x0F0F0F * (i + 1))} for i in range(n)]

    def check(outputs: list[dict]) -> None:
        for i, output in enumerate(outputs):
            assert "error" not in output, f"job {i}: {output['error']}"
            (video,) = output.get("videos", [])
            assert video["content_type"] == "video/mp4", video["content_type"]
            assert base64.b64decode(video["data"])[4:8] == b"ftyp", f"job {i}: not an MP4"

    return Burst("videos with their metadata", inputs, check)


BURSTS = (identical_uploads, different_uploads, videos_with_metadata)


def listing(comfyui: Path) -> list[str]:
    """Every file in ComfyUI's input/, output/ and temp/, relative to its folder."""
    return sorted(
        str(p.relative_to(comfyui))
        for kind in ("input", "output", "temp")
        for p in (comfyui / kind).rglob("*")
        if p.is_file()
    )


def rounds(
    bursts: Sequence[Callable[[], Burst]],
    count: int,
    at_once: Callable[[list[dict]], list[dict]],
    left: Callable[[], list[str]],
) -> None:
    """`count` rounds of every burst: `at_once` runs a burst's jobs at the same time and
    returns their outputs; `left` lists what is in ComfyUI's folders once they are done
    (it must stay as it was before the first round)."""
    before = left()
    for round_ in range(1, count + 1):
        for burst in bursts:
            case = burst()
            try:
                case.check(at_once(case.inputs))
                assert left() == before, f"left in ComfyUI's folders: {left()} (before: {before})"
            except AssertionError as err:
                raise AssertionError(f"round {round_}, {case.name}: {err}") from None


def posted_at_once(post: Callable[[dict], dict]) -> Callable[[list[dict]], list[dict]]:
    """`at_once` for a worker reached over HTTP: each job's input posted by `post` (to
    /runsync) at the same time; each answer's output (its `error` when it failed)."""

    def send(inputs: list[dict]) -> list[dict]:
        with concurrent.futures.ThreadPoolExecutor(len(inputs)) as pool:
            answers = list(pool.map(post, inputs))
        return [a.get("output") or {"error": a.get("error", a)} for a in answers]

    return send


def settling(files: Callable[[], list[str]], settle_s: float = 15.0) -> Callable[[], list[str]]:
    """`left` for a worker in another process, whose clean-up runs a moment after each result
    (off the job's path): after the first listing, each waits up to `settle_s` for the
    folders to be as the first one found them, and returns what is there."""
    first: list[list[str]] = []

    def settled() -> list[str]:
        now = files()
        if not first:
            first.append(now)
        deadline = time.monotonic() + settle_s
        while now != first[0] and time.monotonic() < deadline:
            time.sleep(0.2)
            now = files()
        return now

    return settled

"""The RunPod handler: one job from input to outputs, and nothing of it left behind.

`handler(job)` is what runpod.serverless.start calls. The flow:
validate the input and load input images (nothing reaches ComfyUI before both
pass) → wait for ComfyUI (bounded) → resource check → upload images (using
the names ComfyUI gives back) → open the WebSocket, POST /prompt, follow this
prompt's frames (progress, timeout, reconnects) → fetch outputs → clean up.
Every failure is returned as `{"error": message}`; when this worker cannot
serve another job the result also carries `refresh_worker: True`, which the
SDK turns into a request to replace the worker.
"""

from __future__ import annotations

import logging
import os
import time
import uuid

from handler import cleanup, inputs, log, outputs, resources, settings
from handler.comfy import Comfy, RunResult
from handler.errors import JobError, JobTimeout, node_error_lines
from handler.job import parse
from handler.telemetry import JobTelemetry

STOP_WAIT_S = 10.0  # after an interrupt, how long ComfyUI gets to stop the prompt
PROGRESS_EVERY_S = 0.5  # at most this often per node, so a 1000-step sampler stays quiet

_log = log.get("worker")
_client: Comfy | None = None


def comfy() -> Comfy:
    """One client (one HTTP session) per worker; rebuilt if its address or pid setting changes."""
    global _client
    host, pid = settings.COMFY_HOST.get(), Comfy.configured_pid()
    if _client is None or (_client.host, _client.pid) != (host, pid):
        _client = Comfy(host, pid)
    return _client


def report_progress(job: dict, update: dict) -> None:
    """Send a progress update through the SDK (only where RunPod listens for one)."""
    if os.environ.get("RUNPOD_WEBHOOK_POST_OUTPUT"):
        import runpod

        runpod.serverless.progress_update(job, update)


def handler(job: dict) -> dict:
    job_id = str(job.get("id") or "local")
    raw = job.get("input")
    key = raw.get("comfy_org_api_key") if isinstance(raw, dict) else None
    with log.job_context(job_id), log.hidden(key if isinstance(key, str) else ""):
        return _run(job, job_id)


def _run(job: dict, job_id: str) -> dict:
    client = comfy()
    tel = JobTelemetry(client.pid, stats=client.stats_or_none)
    files = cleanup.JobFiles(f"bakery-{uuid.uuid4().hex[:12]}")
    prompt_id = None
    try:
        spec = parse(job.get("input"))
        t = time.monotonic()
        images = inputs.load(spec.images)
        tel.add("input_fetch", time.monotonic() - t)
        stats = client.wait_ready()
        resources.check(stats, str(cleanup.folder("output")))
        tel.start_sampling(stats)

        t = time.monotonic()
        renames = {}
        for img in images:
            before = cleanup.existed({"filename": img.name, "type": "input"})
            stored = client.upload_image(img.name, img.data)
            entry = {**stored, "filename": stored.get("name", img.name)}
            if not (before and entry["filename"] == img.name):
                files.add(entry)
            renames[img.name] = _stored_name(entry)
        tel.add("input_upload", time.monotonic() - t)

        prompt = _prepare(spec.workflow, renames, files.job_folder)
        client_id = uuid.uuid4().hex
        ws = client.connect(client_id)
        extra = {"api_key_comfy_org": spec.api_key} if spec.api_key else {}
        run = RunResult()
        run.queued_at = time.monotonic()
        try:
            submitted = client.submit(prompt, client_id, extra)
        except BaseException:
            ws.close()
            raise
        prompt_id = submitted["prompt_id"]
        warnings = _partial_rejection(client, submitted)
        log.event(_log, "prompt queued", prompt_id=prompt_id, nodes=len(prompt))
        try:
            client.follow(
                ws,
                client_id,
                prompt_id,
                prompt,
                run.queued_at + spec.timeout_s,
                _progress_sender(job),
                run,
            )
        except JobTimeout:
            client.cancel(prompt_id)
            if client.wait_gone(prompt_id, run, timeout=STOP_WAIT_S):
                raise JobTimeout(
                    f"the workflow did not finish within {spec.timeout_s:g} s (timeout_s); it "
                    "was interrupted and removed from ComfyUI's queue"
                ) from None
            stuck = JobTimeout(
                f"the workflow did not finish within {spec.timeout_s:g} s (timeout_s) and "
                f"ComfyUI did not stop it within {STOP_WAIT_S:g} s of the interrupt; this "
                "worker asks to be replaced"
            )
            stuck.refresh_worker = True
            raise stuck from None
        finally:
            _note_run(tel, run, files)

        t = time.monotonic()
        found, texts, skipped = outputs.collect(run.outputs, spec.include_previews)
        if not found and not texts:
            raise outputs.nothing_produced(skipped)
        result = outputs.deliver(client, job_id, found, texts, files.job_folder, warnings)
        if not result:
            raise outputs.nothing_produced(skipped, warnings)
        tel.add("output_upload", time.monotonic() - t)
        if warnings:
            result["warnings"] = warnings
        result["telemetry"] = _finish(tel, ok=True)
        return result
    except (JobError, settings.SettingError) as err:  # a misconfigured setting is said as such
        message = log.redact(str(err))
        log.event(_log, "job failed", level=logging.WARNING, error=message, kind=type(err).__name__)
        _finish(tel, ok=False)
        out = {"error": message}
        if getattr(err, "refresh_worker", False):
            out["refresh_worker"] = True
        return out
    except Exception as err:  # a bug, not the user's mistake: say so, keep the worker
        _log.exception("unexpected error in the handler")
        _finish(tel, ok=False)
        return {
            "error": log.redact(f"the handler failed unexpectedly: {type(err).__name__}: {err}")
        }
    finally:
        removed = files.remove()
        if prompt_id:
            client.forget(prompt_id)
        log.event(_log, "job files removed", files=removed)


def _stored_name(entry: dict) -> str:
    sub = entry.get("subfolder") or ""
    return f"{sub}/{entry['filename']}" if sub else entry["filename"]


def _prepare(workflow: dict, renames: dict[str, str], job_folder: str) -> dict:
    """The prompt as sent: renamed uploads, and outputs saved in the job's own subfolder.

    Saving under `output/<job folder>/` keeps one job's files apart from the
    next and, because the save node's input changed, makes ComfyUI run it
    again instead of answering from its cache with files already deleted.
    """
    prompt = {}
    for node_id, node in workflow.items():
        node_inputs = dict(node.get("inputs") or {})
        for name, value in node_inputs.items():
            if isinstance(value, str) and value in renames:
                node_inputs[name] = renames[value]
        prefix = node_inputs.get("filename_prefix")
        if isinstance(prefix, str):
            node_inputs["filename_prefix"] = f"{job_folder}/{prefix.lstrip('/')}"
        prompt[str(node_id)] = {**node, "inputs": node_inputs}
    return prompt


def _partial_rejection(client: Comfy, submitted: dict) -> list[str]:
    """POST /prompt accepted the workflow but some output nodes failed validation (they
    do not run): say which, next to the outputs of the others."""
    lines = node_error_lines(submitted.get("node_errors") or {}, client.choices)
    return ["skipped (failed validation): " + line for line in lines]


def _progress_sender(job: dict):
    last = {"node": None, "at": 0.0}

    def send(update: dict) -> None:
        now = time.monotonic()
        if update["node_id"] == last["node"] and now - last["at"] < PROGRESS_EVERY_S:
            return
        last.update(node=update["node_id"], at=now)
        text = f"node {update['node']} of {update['nodes']} ({update['class_type']})"
        if "step" in update:
            text += f", step {update['step']}/{update['steps']}"
        update = {**update, "message": text}
        log.event(_log, "progress", level=10, **update)
        report_progress(job, update)

    return send


def _note_run(tel: JobTelemetry, run: RunResult, files: cleanup.JobFiles) -> None:
    end = run.finished_at or time.monotonic()
    if run.started_at is not None:
        tel.add("queue_wait", run.started_at - run.queued_at)
        tel.add("execution", end - run.started_at)
    elif run.queued_at:
        tel.add("execution", end - run.queued_at)  # start frame lost in a reconnect
    if run.reconnects:
        tel.counts["ws_reconnects"] = run.reconnects
    made = list(run.reported)
    for out in run.outputs.values():
        for items in (out or {}).values():
            if isinstance(items, list):
                made.extend(item for item in items if isinstance(item, dict))
    for item in made:
        # Only what the run wrote: a node may also list an input file it read (not ours).
        if item.get("filename") and item.get("type") in ("output", "temp"):
            files.add(item)


def _finish(tel: JobTelemetry, ok: bool) -> dict:
    figures = tel.finish()
    log.event(_log, "job finished" if ok else "job ended with an error", telemetry=figures)
    return figures

"""The worker's job function: one job from input to result, and nothing of it left behind.

`run_job(job)` is what runpod.serverless.start calls (see handler.__main__).
It reads as its five steps: parse the input → prepare the inputs (load input
images, wait for ComfyUI, check resources, upload, rewrite the prompt) → run
the prompt (ComfyClient.run_prompt) → deliver the outputs → clean up.
Every failure is returned as `{"error": message}`; when this worker cannot
serve another job the result also carries `refresh_worker: True`, which the
SDK turns into a request to replace the worker.
"""

from __future__ import annotations

import logging
import os
import time
import uuid

from handler import log, settings
from handler.jobs import cleanup, images, outputs, resources
from handler.jobs.comfyui import ComfyClient
from handler.jobs.errors import ExecutionFailed, JobError
from handler.jobs.input import JobInput, api_keys, parse
from handler.jobs.prompt import PromptRun
from handler.jobs.telemetry import JobTelemetry
from handler.models import readiness

PROGRESS_EVERY_S = 0.5  # at most this often per node, so a 1000-step sampler stays quiet

_log = log.get("worker")
_client: ComfyClient | None = None


def client() -> ComfyClient:
    """One client (one HTTP session) per worker; rebuilt if its address or pid setting changes."""
    global _client
    host, pid = settings.COMFY_HOST.get(), ComfyClient.configured_pid()
    if _client is None or (_client.host, _client.pid) != (host, pid):
        _client = ComfyClient(host, pid)
    return _client


def report_progress(job: dict, update: dict) -> None:
    """Send a progress update through the SDK (only where RunPod listens for one)."""
    if os.environ.get("RUNPOD_WEBHOOK_POST_OUTPUT"):
        import runpod

        runpod.serverless.progress_update(job, update)


def run_job(job: dict) -> dict:
    """Run one RunPod job; return its result (outputs, or `{"error": ...}`)."""
    job_id = str(job.get("id") or "local")
    with log.job_context(job_id), log.hidden(*api_keys(job.get("input"))):
        work = Job(job_id, client(), _progress_sender(job))
        try:
            job_input = parse(job.get("input"))  # 1. parse the input
            deadline = time.monotonic() + job_input.timeout_s  # its models ready (or not)
            readiness.wait_for_models(
                job_input.workflow, deadline, lambda update: report_progress(job, update)
            )
            prompt = work.prepare_inputs(job_input)  # 2. prepare the inputs
            run = work.run(prompt, job_input)  # 3. run the prompt
            return work.deliver_outputs(run, job_input)  # 4. deliver the outputs
        except (JobError, settings.SettingError) as err:  # a misconfigured setting is said as such
            return work.failed(err)
        except Exception as err:  # a bug, not the user's mistake: say so, keep the worker
            return work.crashed(err)
        finally:
            work.clean_up()  # 5. clean up


class Job:
    """One job's state between its steps: the ComfyUI client, its files, its telemetry."""

    def __init__(self, job_id: str, comfy: ComfyClient, on_progress):
        self.id = job_id
        self.comfy = comfy
        self.on_progress = on_progress
        self.telemetry = JobTelemetry(comfy.pid, stats=comfy.stats_or_none)
        self.files = cleanup.JobFiles(f"bakery-{uuid.uuid4().hex[:12]}")
        self.prompt_run = PromptRun()
        self.errors: list[str] = []  # what failed in a job that still produced something
        self.warnings: list[str] = []  # what the input had that was ignored
        self.deadline: float | None = None  # the run's and its uploads' (set in run())

    def prepare_inputs(self, job_input: JobInput) -> dict:
        """Load the input images (nothing reaches ComfyUI before they pass), wait for ComfyUI,
        check resources, upload the images; return the prompt to send."""
        self.warnings = job_input.warnings
        t = time.monotonic()
        # Every network step ends by the job's timeout_s: input downloads counted from here,
        # the run and its uploads from the prompt's start (where ComfyUI's clock starts).
        loaded = images.load(job_input.images, deadline=t + job_input.timeout_s)
        self.telemetry.add("input_fetch", time.monotonic() - t)
        stats = self.comfy.wait_ready()
        resources.check(stats, str(cleanup.folder("output")))
        self.telemetry.start_sampling(stats)

        t = time.monotonic()
        renames = {}
        for img in loaded:
            before = cleanup.existed({"filename": img.name, "type": "input"})
            stored = self.comfy.upload_image(img.name, img.data)
            entry = {**stored, "filename": stored.get("name", img.name)}
            if not (before and entry["filename"] == img.name):
                self.files.add(entry)
            renames[img.name] = _stored_name(entry)
        self.telemetry.add("input_upload", time.monotonic() - t)
        return _prompt(job_input.workflow, renames, self.files.job_folder)

    def run(self, prompt: dict, job_input: JobInput) -> PromptRun:
        extra = {"api_key_comfy_org": job_input.api_key} if job_input.api_key else {}
        run = self.prompt_run
        self.deadline = time.monotonic() + job_input.timeout_s
        try:
            return self.comfy.run_prompt(
                prompt, job_input.timeout_s, run, extra_data=extra, on_progress=self.on_progress
            )
        except ExecutionFailed as err:  # a node failed: the outputs saved before it still count
            if not outputs.keep_partial(run, err, self.errors):
                raise
            return run
        finally:
            if run.prompt_id:  # it reached ComfyUI: note its times and the files it wrote
                self._note(run)

    def deliver_outputs(self, run: PromptRun, job_input: JobInput) -> dict:
        t = time.monotonic()
        found, texts, skipped = outputs.collect(run.outputs, job_input.include_previews)
        warnings, errors = list(job_input.warnings), [*run.warnings, *self.errors]
        delivered = outputs.deliver(
            self.comfy,
            self.id,
            found,
            texts,
            self.files.job_folder,
            warnings,
            errors,
            self.deadline,
        )
        self.telemetry.add("output_upload", time.monotonic() - t)
        result = outputs.result(delivered, warnings, errors, skipped)
        result["telemetry"] = self._finish(ok=True)
        return result

    def failed(self, err: Exception) -> dict:
        message = log.redact(str(err))
        log.event(_log, "job failed", level=logging.WARNING, error=message, kind=type(err).__name__)
        self._finish(ok=False)
        return outputs.failure(message, getattr(err, "refresh_worker", False), self.warnings)

    def crashed(self, err: Exception) -> dict:
        _log.exception("unexpected error in the job function")
        self._finish(ok=False)
        return outputs.failure(
            log.redact(f"the handler failed unexpectedly: {type(err).__name__}: {err}")
        )

    def clean_up(self) -> None:
        """Remove the job's files and its history entry: nothing of it is left for the next."""
        removed = self.files.remove()
        if self.prompt_run.prompt_id:
            self.comfy.forget(self.prompt_run.prompt_id)
        log.event(_log, "job files removed", files=removed)

    def _note(self, run: PromptRun) -> None:
        tel = self.telemetry
        end = run.finished_at or time.monotonic()
        if run.started_at is not None:
            tel.add("queue_wait", run.started_at - run.queued_at)
            tel.add("execution", end - run.started_at)
        elif run.queued_at:
            tel.add("execution", end - run.queued_at)  # start frame lost in a reconnect
        if run.reconnects:
            tel.counts["ws_reconnects"] = run.reconnects
        for item in run.files():
            self.files.add(item)

    def _finish(self, ok: bool) -> dict:
        figures = self.telemetry.finish()
        log.event(_log, "job finished" if ok else "job ended with an error", telemetry=figures)
        return figures


def _stored_name(entry: dict) -> str:
    sub = entry.get("subfolder") or ""
    return f"{sub}/{entry['filename']}" if sub else entry["filename"]


def _prompt(workflow: dict, renames: dict[str, str], job_folder: str) -> dict:
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

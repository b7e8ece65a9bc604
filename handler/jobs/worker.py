"""The worker's job function: one job from input to result, and nothing of it left behind.

`handle(job)` is what runpod.serverless.start calls (see handler.__main__);
it is a coroutine, so the SDK's event loop stays free while a job runs: its
stop signal cancels the job at once, and the worker holds more than one job
(`concurrency`). It reads as its steps: parse the input and prepare the
inputs (load input images, know ComfyUI is there, check resources, upload,
rewrite the prompt) → queue the prompt, in the jobs' order, and follow it to
its end (handler.jobs.prompt) → deliver the outputs → clean up. The blocking
steps run on the worker's threads, as few hops between threads as the gates
allow (parse; prepare; queue, follow and deliver). The job's timeout_s is one budget for its
own work (handler.jobs.budget): the wait for its models, its input images,
the run and the delivery of its outputs.

Pipelined jobs: while one prompt runs in ComfyUI, the next job is parsed,
its images fetched and uploaded and its prompt queued behind it (at most
`PROMPTS_IN_COMFYUI` of this worker's prompts sit in ComfyUI; the gates and
how many jobs are held are handler.jobs.pipeline); the finished
job's outputs are read and encoded while the next prompt runs. ComfyUI still
runs one prompt at a time. Each job keeps its own timeout_s (counted from
when the prompt ahead of it has left ComfyUI), telemetry, errors and
clean-up. Memory stays bounded: at most BAKERY_MAX_JOBS jobs are held, one
job loads and uploads its input images at a time, one job reads and encodes
its outputs at a time.

Every failure is returned as `{"error": message}`; when this worker cannot
serve another job the result also carries `refresh_worker: True`, which the
SDK turns into a request to replace the worker. A cancelled job (RunPod's
stop signal) has its prompt interrupted or taken out of ComfyUI's queue and
its files and history removed; the SDK posts no result for it.

`run_job(job)` runs `handle` to its end for a caller without an event loop
(tests, the bench).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import threading
import time

from handler import log, settings
from handler.jobs import (
    budget,
    cleanup,
    images,
    models,
    outputs,
    pipeline,
    progress,
    readiness,
    resources,
)
from handler.jobs import prompt as prompts
from handler.jobs.comfyui import ComfyClient
from handler.jobs.errors import ExecutionFailed, JobError
from handler.jobs.input import JobInput, api_keys, parse
from handler.jobs.prompt import STOP_WAIT_S, PromptRun
from handler.jobs.telemetry import JobTelemetry

PROGRESS_EVERY_S = 0.5  # at most this often per node, so a 1000-step sampler stays quiet
THREADS = 16  # blocking steps of held jobs (a waiting prompt holds one)

_log = log.get("worker")
_client: ComfyClient | None = None
_pool = concurrent.futures.ThreadPoolExecutor(THREADS, thread_name_prefix="job")
cleanup.CLEANER.when_idle(prompts.forget_now)  # the history entries held back, in one request
cleanup.CLEANER.defer_while_busy(pipeline.ON_THE_WAY.wait_clear)  # clean up while prompts run


def client() -> ComfyClient:
    """One client (one HTTP session, one WebSocket) per worker; rebuilt if its address or pid
    setting changes."""
    global _client
    host, pid = settings.COMFY_HOST.get(), ComfyClient.configured_pid()
    if _client is None or (_client.host, _client.pid) != (host, pid):
        if _client is not None:
            _client.socket.close()
        _client = ComfyClient(host, pid)
    return _client


# --- the job function ---------------------------------------------------------------------
async def handle(job: dict) -> dict:
    """Run one RunPod job; return its result (outputs, or `{"error": ...}`)."""
    job_id = str(job.get("id") or "local")
    raw = job.get("input")
    with log.job_context(job_id), log.hidden(*api_keys(raw)):
        pipeline.Load.active += 1
        work = Job(job_id, client())
        try:
            try:
                result = await work.run(raw, pipeline.gates())
            except (JobError, settings.SettingError) as err:  # a bad setting is said as such
                result = work.failed(err)
            except Exception as err:  # a bug, not the user's mistake: say so, keep the worker
                result = work.crashed(err)
            await work.finish_progress()
        except asyncio.CancelledError:  # RunPod's stop signal (or the worker is going away)
            work.cancelled()
            raise
        finally:
            pipeline.Load.active -= 1
            work.arrived()  # it ended before its prompt was queued
        ctx = contextvars.copy_context()  # the clean-up logs under the job's id
        cleanup.CLEANER.submit(lambda: ctx.run(work.clean_up))  # off the next job's path
        return result


_runners = threading.local()


def run_job(job: dict) -> dict:
    """`handle(job)` to its end, for a caller without an event loop (one loop per thread)."""
    runner = getattr(_runners, "runner", None)
    if runner is None:
        runner = _runners.runner = asyncio.Runner()
    return runner.run(handle(job))


def drain(timeout: float = 60.0) -> bool:
    """Wait until every finished job's clean-up has run (before the worker exits)."""
    return cleanup.CLEANER.drain(timeout)


def close() -> None:
    """Let go of ComfyUI: close the worker's WebSocket (the next job opens a new one)."""
    global _client
    drain()
    if _client is not None:
        _client.socket.close()
        _client = None


class Job:
    """One job's state between its steps: the ComfyUI client, its files, its telemetry."""

    def __init__(self, job_id: str, comfy: ComfyClient):
        self.id = job_id
        self.comfy = comfy
        self.telemetry = JobTelemetry(comfy.pid, stats=comfy.stats_or_none)
        self.files = cleanup.JobFiles()
        self.prompt_run = PromptRun()
        self.channel = progress.channel()
        if self.channel is not None:
            self.channel.start(job_id)
        self.on_progress = _progress_sender(job_id, self.channel)
        self._step_future: concurrent.futures.Future | None = None
        self.errors: list[str] = []  # what failed in a job that still produced something
        self.warnings: list[str] = []  # what the input had that was ignored
        self.deadline: float | None = None  # the run's and its uploads' (set when following)
        self.budget = budget.Budget(0.0)  # the job's timeout_s (set once the input is parsed)
        self.models = models.Fetched()  # the job's own models, held until its clean-up
        # On its way to ComfyUI from now; `arrived()` once its prompt is queued or it ended.
        self.arrived = pipeline.ON_THE_WAY.enter()

    async def run(self, raw, pipe: pipeline.Pipeline) -> dict:
        job_input = await self._step(parse, raw)  # nothing reaches ComfyUI before it passes
        self.warnings = job_input.warnings
        self.budget = budget.Budget(job_input.timeout_s)
        if job_input.models:  # its own models, by URL: in the cache before anything else
            await self._step(self.bring_models, job_input)
        # The models the workflow names, ready (they jump the download queue) or not, within
        # its timeout_s; outside the gates, so jobs whose models are there go on meanwhile.
        waited = await readiness.wait_for_models_async(
            job_input.workflow,
            self.budget.deadline(),
            lambda update: report_progress(self.id, update, self.channel),
        )
        self.budget.spend(budget.MODELS, waited)
        async with pipe.prepare:
            prompt = await self._step(self.prepare_inputs, job_input)
        # The rest is one step on one thread (a hop between threads costs the job more
        # than most of its own work); the gates it passes are let go from that thread as
        # soon as its part is done, or here when the step failed or the job was stopped.
        loop = asyncio.get_running_loop()
        await pipe.prompts.acquire()
        prompts_gate = pipeline.Held(loop, pipe.prompts)
        try:
            await pipe.queue.acquire()  # prompts reach ComfyUI in the order the jobs came
            queue_gate = pipeline.Held(loop, pipe.queue)
            try:
                if pipe.last is not None and not pipe.last.has_left():
                    self.prompt_run.ahead = pipe.last
                pipe.last = self.prompt_run
                return await self._step(
                    self.run_prompt, prompt, job_input, queue_gate, prompts_gate, pipe
                )
            finally:
                queue_gate.let_go()
        finally:
            prompts_gate.let_go()

    def run_prompt(
        self,
        prompt: dict,
        job_input: JobInput,
        queue_gate: pipeline.Held,
        prompts_gate: pipeline.Held,
        pipe: pipeline.Pipeline,
    ) -> dict:
        """Queue the prompt, follow it, deliver its outputs: the job's one step in ComfyUI."""
        try:
            self.queue_prompt(prompt, job_input)
        finally:
            queue_gate.let_go()  # the next job's prompt may be queued behind this one now
            self.arrived()
        try:
            run = self.follow_prompt(prompt, job_input)
        finally:
            prompts_gate.let_go()  # it has left ComfyUI: another of the worker's may enter
        with pipe.deliver:
            return self.deliver_outputs(run, job_input)

    async def _step(self, fn, *args):
        """Run a blocking step on the worker's threads (with this job's log context)."""
        ctx = contextvars.copy_context()
        self._step_future = _pool.submit(ctx.run, fn, *args)
        return await asyncio.wrap_future(self._step_future)

    def bring_models(self, job_input: JobInput) -> None:
        """Fetch the job's `models` (or find them cached) by its deadline, and point its
        workflow at the cached files."""
        t = time.monotonic()
        try:
            self.models = models.fetch(
                job_input.models,
                self.budget.deadline(),
                lambda update: report_progress(self.id, update, self.channel),
            )
        finally:
            self.budget.spend(budget.MODELS, time.monotonic() - t)
        job_input.workflow = models.rename(job_input.workflow, self.models.renames)
        self.telemetry.add("model_fetch", time.monotonic() - t)
        self.telemetry.counts["models_downloaded_bytes"] = self.models.downloaded
        self.telemetry.counts["model_cache_hits"] = self.models.hits

    def prepare_inputs(self, job_input: JobInput) -> dict:
        """Load the input images (nothing reaches ComfyUI before they pass), know ComfyUI is
        there, check resources, upload the images; return the prompt to send. Spent from the
        job's budget (input downloads end by what the model wait left of it)."""
        started = time.monotonic()
        try:
            return self._prepare_inputs(job_input)
        finally:
            self.budget.spend(budget.INPUTS, time.monotonic() - started)

    def _prepare_inputs(self, job_input: JobInput) -> dict:
        t = time.monotonic()
        loaded = images.load(job_input.images, deadline=self.budget.deadline())
        self.telemetry.add("input_fetch", time.monotonic() - t)
        probed = self.comfy.ready()

        # Only the VRAM minimum needs ComfyUI's figures (a request): off by default.
        stats = probed or {}
        if not stats and settings.MIN_FREE_VRAM_MB.get() > 0:
            stats = self.comfy.stats_or_none() or {}
        resources.check(stats, str(cleanup.folder("output")))
        self.telemetry.start_sampling(probed)

        t = time.monotonic()
        renames = images.upload(self.comfy, loaded, self.files)
        self.telemetry.add("input_upload", time.monotonic() - t)
        return _prompt(job_input.workflow, renames, self.files.job_folder)

    def queue_prompt(self, prompt: dict, job_input: JobInput) -> None:
        extra = {"api_key_comfy_org": job_input.api_key} if job_input.api_key else {}
        try:
            if self.budget.left() <= 0:  # nothing left for the run: do not start it
                raise self.budget.ran_out(budget.INPUTS)
            prompts.queue(self.comfy, prompt, self.prompt_run, extra)
        except BaseException:
            self.prompt_run.mark_left()
            raise

    def follow_prompt(self, prompt: dict, job_input: JobInput) -> PromptRun:
        run = self.prompt_run
        try:
            return prompts.follow(self.comfy, prompt, run, self.budget, self.on_progress)
        except ExecutionFailed as err:  # a node failed: the outputs saved before it still count
            if not outputs.keep_partial(run, err, self.errors):
                raise
            return run
        finally:
            # The outputs are delivered by the run's deadline (what the budget left it).
            start = run.clock_start() or time.monotonic()
            self.deadline = start + self.budget.left_for(budget.RUN)
            self._note(run)  # its times and the files it wrote (also when it failed)

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
        if job_input.params is not None:  # a recipe job: the values it ran with (its seed)
            result["params"] = job_input.params
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

    async def finish_progress(self) -> None:
        """No progress update of this job may arrive after its result."""
        if self.channel is not None:
            await asyncio.get_running_loop().run_in_executor(_pool, self.channel.finish, self.id)

    def cancelled(self) -> None:
        """RunPod stopped the job: stop following its prompt, interrupt it in ComfyUI now, and
        clean up once its step in flight has ended (a thread cannot be stopped midway)."""
        log.event(_log, "job stopped", level=logging.WARNING)
        run = self.prompt_run
        run.stop()
        if self.channel is not None:
            self.channel.finish(self.id, timeout=0)
        if run.queued_at and not run.has_left():
            _pool.submit(prompts.interrupt, self.comfy, run.prompt_id)
        ctx = contextvars.copy_context()
        after = self._step_future
        if after is None or after.done():
            cleanup.CLEANER.submit(lambda: ctx.run(self._after_stop))
        else:
            after.add_done_callback(
                lambda _: cleanup.CLEANER.submit(lambda: ctx.run(self._after_stop))
            )

    def _after_stop(self) -> None:
        run = self.prompt_run
        if run.queued_at and not run.has_left():
            prompts.interrupt(self.comfy, run.prompt_id)  # again: the POST may have landed since
            prompts.wait_gone(self.comfy, run, timeout=STOP_WAIT_S)
            for item in run.files():  # what it wrote before the interrupt took effect
                self.files.add(item)
        run.mark_left()  # also when it never reached ComfyUI: the job behind starts its clock
        self.telemetry.finish()  # after the step: it may have started the sampling
        self.clean_up()

    def clean_up(self) -> None:
        """Remove the job's files and its history entry: nothing of it is left for the next."""
        ran, run = None, self.prompt_run
        if run.queued_at:  # when its prompt ran: what its nodes wrote then is the job's too
            status = run.status if run.seen_whole else None
            if status is None:  # frames were lost: history has the same status messages
                try:
                    entry = prompts.history(self.comfy, run.prompt_id) or {}
                    status = (entry.get("status") or {}).get("messages")
                except JobError:
                    pass  # ComfyUI is gone: its folders go with the worker
            ran = cleanup.ran_between(status)
        removed = self.files.remove(ran)
        self.models.release()  # its models may be evicted from now on
        if run.queued_at:
            prompts.forget(self.comfy, run.prompt_id)
        log.event(_log, "job files removed", files=removed)

    def _note(self, run: PromptRun) -> None:
        tel = self.telemetry
        end = run.finished_at or time.monotonic()
        if run.started_at is not None:
            tel.add("queue_wait", run.started_at - run.queued_at)
            tel.add("execution", end - run.started_at)
            pipeline.note_length(end - run.started_at)
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


def report_progress(job_id: str, update: dict, channel: progress.Channel | None) -> None:
    """Send a progress update to RunPod (only where RunPod listens for one)."""
    if channel is not None:
        channel.send(job_id, update)


def _progress_sender(job_id: str, channel: progress.Channel | None):
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
        report_progress(job_id, update, channel)

    return send

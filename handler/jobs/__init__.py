"""Running jobs: what the worker does with each RunPod job.

worker.py     `run_job`: parse input → wait for models → prepare inputs → run → deliver → clean up
pipeline.py   how many jobs the worker holds; the gates held jobs pass in order
budget.py     the job's timeout_s: one budget for its model wait, inputs and run
input.py      the job's input: its schema and `parse`
readiness.py  a job waits for the models its workflow names, and only for those
models.py     a job's own `models` by URL: parsed, fetched into the cache, the workflow renamed
images.py     input images: base64 or a URL (guarded against request forgery)
prompt.py     a prompt's life: queue, follow its frames, interrupt, history, forget
comfyui.py    the ComfyUI client: address, process, HTTP session, uploads, outputs
socket.py     the worker's one WebSocket to ComfyUI: hands frames to callbacks, reconnects
outputs.py    a finished prompt's outputs → the job result (base64 or storage)
storage.py    S3-compatible storage for outputs
cleanup.py    removing the job's files afterwards
progress.py   progress updates to RunPod ("node k of n", steps) on one ordered channel
telemetry.py, resources.py, errors.py
"""

"""Running jobs: what the worker does with each RunPod job.

worker.py     `run_job`: parse input → prepare inputs → run → deliver outputs → clean up
pipeline.py   how many jobs the worker holds; the gates held jobs pass in order
input.py      the job's input: its schema and `parse`
images.py     input images: base64 or a URL (guarded against request forgery)
comfyui.py    the ComfyUI client (HTTP API) and `run_prompt`
prompt.py     running one prompt to its end: queue it, follow its frames, its deadline
socket.py     the worker's one WebSocket to ComfyUI: a reader thread, reconnects
outputs.py    a finished prompt's outputs → the job result (base64 or storage)
storage.py    S3-compatible storage for outputs
cleanup.py    removing the job's files afterwards
telemetry.py, resources.py, errors.py
"""

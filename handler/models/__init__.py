"""Getting models ready: in the background while the worker serves jobs, or all before it.

scheduler.py    the one scheduler (at start, by hand, at build time); one model in place
status.py       the status board: its files, shared with the worker, and the writer
needs.py        which manifest models a workflow names
hf_cache.py     RunPod's cached Hugging Face models, linked into place
fetch.py        `python -m handler.models.fetch`: every model now, by hand or at build time
volume.py       where models live, the warm-start records, the per-file lock
download.py     one model: resume, verify, rename into place
connections.py  one pass of a download: its ranged connections and their segments
source.py       GET from a model's source: redirects hop by hop, the retry budget
tokens.py       which host receives which token
job_cache.py    the cache of the models jobs bring by URL: LRU under a cap, held files kept
hashing.py      sha256 while the bytes arrive; write-back
segments.py, progress.py, errors.py
"""

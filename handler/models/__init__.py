"""Getting models ready: every model of the manifest in place before ComfyUI starts.

fetch.py        `python -m handler.models.fetch`: all models of the manifest (start.py runs it)
volume.py       where models live, the warm-start records, the per-file lock
download.py     one model: resume, verify, rename into place
connections.py  one pass of a download: its ranged connections and their segments
source.py       GET from a model's source: redirects hop by hop, the retry budget
tokens.py       which host receives which token
hashing.py      sha256 while the bytes arrive; write-back
segments.py, progress.py, errors.py
"""

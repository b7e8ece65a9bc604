"""The ComfyUI test double: a ComfyUI-shaped folder (main.py) and, for tests, its launcher.

Only the launcher is imported in the test process; the server modules run in
the double's own process (`python main.py`), as ComfyUI's do.
"""

from .launcher import DoubleError, RunningDouble, copy_comfyui, free_port, start

__all__ = ["DoubleError", "RunningDouble", "copy_comfyui", "free_port", "start"]

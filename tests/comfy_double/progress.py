"""Progress and interrupt, the two things a running node tells the executor.

Mirrors comfy.utils.ProgressBar and comfy.model_management's interrupt flag
closely enough for simple nodes; the executor installs the hook per node.
"""

from __future__ import annotations

import threading


class InterruptProcessingException(Exception):
    pass


_interrupt = threading.Event()
# Set by the executor while a node runs: hook(value, total, preview) sends progress frames.
HOOK = None
# --preview-method other than none: samplers send a binary preview frame per step.
PREVIEWS = False


def interrupt_processing(value: bool = True) -> None:
    if value:
        _interrupt.set()
    else:
        _interrupt.clear()


def processing_interrupted() -> bool:
    return _interrupt.is_set()


def throw_exception_if_processing_interrupted() -> None:
    if _interrupt.is_set():
        _interrupt.clear()
        raise InterruptProcessingException()


class ProgressBar:
    def __init__(self, total: int):
        self.total = total
        self.current = 0

    def update_absolute(self, value: int, total: int | None = None, preview=None) -> None:
        if total is not None:
            self.total = total
        self.current = min(value, self.total)
        if HOOK is not None:
            HOOK(self.current, self.total, preview)

    def update(self, value: int) -> None:
        self.update_absolute(self.current + value)

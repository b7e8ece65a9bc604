"""A job's timeout_s: one budget for the whole job, spent by its parts in turn.

The parts are waiting for the workflow's models, loading and uploading the
input images, and running the workflow (its outputs are delivered by the
run's deadline). Each part gets what the parts before it left, so a job never
takes longer than its timeout_s of its own work, and the error says which
part ran out and what the others took. Waiting on other jobs (the worker's
gates, this worker's prompt ahead in ComfyUI) is not the job's own work and
is not spent (pipelined jobs, handler.jobs.pipeline).
"""

from __future__ import annotations

import time

from handler.jobs.errors import JobTimeout

MODELS = "waiting for its models"
INPUTS = "loading and uploading its input images"
RUN = "running the workflow"
SHOWN_S = 0.05  # a part that took less is left out of the error (it did not matter)


class Budget:
    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.spent: dict[str, float] = {}  # part → seconds, in the order they ran

    def spend(self, part: str, seconds: float) -> None:
        self.spent[part] = self.spent.get(part, 0.0) + max(seconds, 0.0)

    def left(self) -> float:
        return max(self.timeout_s - sum(self.spent.values()), 0.0)

    def deadline(self) -> float:
        """The time.monotonic() by which the next part must end."""
        return time.monotonic() + self.left()

    def ran_out(self, part: str, then: str = "") -> JobTimeout:
        """The error for `part` running out of the budget (`then`: what was done about it).

        With no other part worth naming it reads "<part> did not finish within 10 s
        (timeout_s)", else the parts and their seconds follow."""
        others = {p: s for p, s in self.spent.items() if p != part and s >= SHOWN_S}
        what = {MODELS: "its models were not ready", INPUTS: "its input images were not ready"}
        text = f"{what.get(part, 'the workflow did not finish')} within "
        if not others:
            text += f"{self.timeout_s:g} s (timeout_s)"
        else:
            took = ", ".join(f"{s:.1f} s {p}" for p, s in others.items())
            text += f"the {self.left_for(part):.1f} s left of timeout_s {self.timeout_s:g} s "
            text += f"({took})"
        return JobTimeout(text + (f"; {then}" if then else ""))

    def left_for(self, part: str) -> float:
        """What `part` was given: the budget less what the other parts spent."""
        others = sum(s for p, s in self.spent.items() if p != part)
        return max(self.timeout_s - others, 0.0)

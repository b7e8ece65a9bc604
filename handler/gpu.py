"""Reading the GPU for the fitness checks (handler.fitness): what it is, its driver, its memory.

Through NVML (nvidia-ml-py), or torch where NVML cannot be loaded, behind one
seam: `BAKERY_GPU_RECORD` names a recorded answer (JSON) read instead, so tests
decide on real GPUs' answers without one (tests/fitness/gpus/).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from handler import settings


@dataclass(frozen=True)
class Gpu:
    name: str
    capability: tuple[int, int]
    memory_total: int | None = None  # bytes
    memory_free: int | None = None

    @property
    def arch(self) -> str:
        return f"sm_{self.capability[0]}{self.capability[1]}"


@dataclass(frozen=True)
class Probe:
    """What the machine said about its GPUs, and through which library."""

    source: str
    gpus: tuple[Gpu, ...] = ()
    driver: str | None = None
    problem: str | None = None  # why no GPU could be read


def from_record(data: dict, source: str = "record") -> Probe:
    """A recorded answer: {"driver", "gpus": [{"name", "compute_capability": "8.9",
    "memory_total_mib", "memory_free_mib"}]} or {"error": "..."} for no GPU."""
    if data.get("error"):
        return Probe(source, problem=str(data["error"]))
    gpus = []
    for g in data.get("gpus") or []:
        major, minor = (int(p) for p in str(g["compute_capability"]).split("."))
        mib = 1024 * 1024
        total, free = g.get("memory_total_mib"), g.get("memory_free_mib")
        gpus.append(
            Gpu(
                name=g["name"],
                capability=(major, minor),
                memory_total=None if total is None else int(total * mib),
                memory_free=None if free is None else int(free * mib),
            )
        )
    return Probe(source, tuple(gpus), data.get("driver"))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_nvml() -> Probe:
    try:
        import pynvml
    except ImportError as exc:
        return Probe("nvml", problem=f"nvidia-ml-py is not installed ({exc})")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return Probe("nvml", problem=f"NVML: {exc}")
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            try:
                mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
                total, free = int(mem.total), int(mem.free)
            except pynvml.NVMLError:  # some virtualised GPUs do not say
                total = free = None
            gpus.append(Gpu(_text(pynvml.nvmlDeviceGetName(handle)), (major, minor), total, free))
        return Probe("nvml", tuple(gpus), driver)
    except pynvml.NVMLError as exc:
        return Probe("nvml", problem=f"NVML: {exc}")
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def read_torch() -> Probe:
    """torch where it is in the image: no driver version (that check then warns)."""
    import torch

    if not torch.cuda.is_available():
        return Probe("torch", problem="torch.cuda.is_available() is False")
    gpus = []
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        gpus.append(
            Gpu(torch.cuda.get_device_name(i), torch.cuda.get_device_capability(i), total, free)
        )
    return Probe("torch", tuple(gpus))


def probe(env: dict | None = None) -> Probe:
    record = settings.GPU_RECORD.get(env)
    if record:
        try:
            return from_record(json.loads(Path(record).read_text()), f"record {record}")
        except (OSError, ValueError, KeyError) as exc:
            return Probe(f"record {record}", problem=f"cannot read the GPU record: {exc}")
    found = read_nvml()
    if found.problem and importlib.util.find_spec("torch") is not None:
        by_torch = read_torch()
        if not by_torch.problem:
            return by_torch
    return found

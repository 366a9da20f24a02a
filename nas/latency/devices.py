"""Devices: a registry of names to a measurement backend and its settings.

A user adds a device with one call, e.g. ``register_device(Device("cpu4", "cpu", threads=4))``; everything that
takes ``--device`` then knows it. The default table of a device lives at ``latency_luts/<name>.json`` (shipped
tables) or ``~/.cache/nas/latency_luts/<name>.json`` (tables built on this machine, not committed).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from nas.errors import UsageError
from nas.latency.backends import BACKENDS, Backend


@dataclass(frozen=True)
class Device:
    name: str
    backend: str            # a key of nas.latency.backends.BACKENDS
    threads: int = 1
    batch: int = 1
    dtype: str = "float32"
    description: str = ""
    compute_units: str = "ALL"   # Core ML devices: which units the packages may use (recorded in the table)

    def make_backend(self) -> Backend:
        return BACKENDS[self.backend](threads=self.threads, batch=self.batch, dtype=self.dtype)


DEVICES: dict[str, Device] = {}


def register_device(device: Device) -> Device:
    if device.backend not in BACKENDS:
        raise UsageError(f"device {device.name!r}: backend {device.backend!r} is unknown; known: {', '.join(BACKENDS)}")
    DEVICES[device.name] = device
    return device


register_device(Device("cpu", "cpu", threads=1, description="this machine's CPU, PyTorch eager, 1 thread"))
register_device(Device("cpu-2t", "cpu", threads=2, description="this machine's CPU, PyTorch eager, 2 threads"))
register_device(Device("cuda", "cuda", description="the first CUDA GPU, PyTorch eager, CUDA events"))
register_device(Device("onnxruntime", "onnxruntime", threads=1,
                       description="this machine's CPU, ONNX Runtime CPU execution provider, 1 thread"))
register_device(Device("iphone12", "coreml", dtype="float16", compute_units="ALL",
                       description="iPhone 12 (A14), Core ML mlprogram fp16, compute units All; ships as an estimate "
                                   "from the calibrated cost model until a measured table is ingested"))


def get_device(name: str) -> Device:
    if name not in DEVICES:
        raise UsageError(f"unknown device {name!r}; known: {', '.join(sorted(DEVICES))}")
    return DEVICES[name]


def local_table_dir() -> Path:
    return Path(os.environ.get("NAS_LUT_DIR", Path.home() / ".cache" / "nas" / "latency_luts"))


def table_filename(device: str, space: str = "efficientformer") -> str:
    return f"{device}.json" if space == "efficientformer" else f"{device}-{space}.json"


def local_table_path(device: str, space: str = "efficientformer") -> Path:
    """Where tables built, ingested or estimated on this machine go (looked up before the shipped ones)."""
    return local_table_dir() / table_filename(device, space)


def default_table_path(device: str, space: str = "efficientformer") -> Path:
    """Where ``nas lut build`` writes and ``nas predict`` looks: a local table first, then a shipped one."""
    name = table_filename(device, space)
    local = local_table_dir() / name
    if local.exists():
        return local
    shipped = resources.files("latency_luts") / name
    if shipped.is_file():
        return Path(str(shipped))
    return local

"""Measurement backends: time one module on one input, with warm-up and repeats until the median is stable.

All backends share ``time_until_stable``; a backend only says how to prepare a module and run it once
(synchronising where the device is asynchronous). Each records its own name and version in the table header.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from nas.errors import UsageError


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return {"median_ms": self.median_ms, "p10_ms": self.p10_ms, "p90_ms": self.p90_ms, "n": self.n}


@dataclass(frozen=True)
class TimingPolicy:
    """When to stop repeating: after ``min_repeats`` and once two successive rounds move the median by less than
    ``rel_tol``, or at ``max_repeats`` / ``max_seconds``, whichever comes first."""

    warmup_seconds: float = 0.05
    min_warmup: int = 3
    round_size: int = 10
    min_repeats: int = 20
    max_repeats: int = 400
    max_seconds: float = 1.5
    rel_tol: float = 0.01


def _quantile(sorted_values: list[float], q: float) -> float:
    i = q * (len(sorted_values) - 1)
    lo, hi = int(i), min(int(i) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (i - lo)


def time_until_stable(run: Callable[[], float], policy: TimingPolicy = TimingPolicy()) -> Timing:
    """``run()`` executes once and returns its duration in seconds."""
    start, n = time.perf_counter(), 0
    while n < policy.min_warmup or time.perf_counter() - start < policy.warmup_seconds:
        run()
        n += 1
    samples: list[float] = []
    previous = None
    start = time.perf_counter()
    while True:
        samples += [run() for _ in range(policy.round_size)]
        median = statistics.median(samples)
        stable = previous is not None and abs(median - previous) <= policy.rel_tol * median
        if (len(samples) >= policy.min_repeats and stable) or len(samples) >= policy.max_repeats \
                or time.perf_counter() - start > policy.max_seconds:
            break
        previous = median
    return timing_of([1e3 * s for s in samples])


def timing_of(samples_ms: list[float]) -> Timing:
    """Median and 10th/90th percentiles of durations in milliseconds."""
    ordered = sorted(samples_ms)
    return Timing(statistics.median(ordered), _quantile(ordered, 0.1), _quantile(ordered, 0.9), len(ordered))


class Backend:
    """Times modules on one kind of hardware/runtime."""

    name = "base"

    def __init__(self, threads: int = 1, batch: int = 1, dtype: str = "float32", policy: TimingPolicy = TimingPolicy()):
        self.threads, self.batch, self.dtype, self.policy = threads, batch, dtype, policy

    @property
    def version(self) -> str:
        return torch.__version__

    def available(self) -> tuple[bool, str]:
        return True, ""

    def measure(self, module: nn.Module, x: torch.Tensor) -> Timing:
        raise NotImplementedError


class CpuBackend(Backend):
    """PyTorch eager on the CPU, inference mode, with a fixed thread count (recorded in the table)."""

    name = "torch-cpu"

    def measure(self, module: nn.Module, x: torch.Tensor) -> Timing:
        torch.set_num_threads(self.threads)
        torch.set_flush_denormal(True)   # denormals would make timings depend on the random weights
        module = module.eval()

        def run() -> float:
            t = time.perf_counter()
            module(x)
            return time.perf_counter() - t

        with torch.inference_mode():
            return time_until_stable(run, self.policy)


class CudaBackend(Backend):
    """PyTorch eager on a CUDA GPU, timed with CUDA events around each call."""

    name = "torch-cuda"

    @property
    def version(self) -> str:
        return f"{torch.__version__} (CUDA {torch.version.cuda})"

    def available(self) -> tuple[bool, str]:
        if not torch.cuda.is_available():
            return False, "no CUDA GPU is visible to torch on this machine"
        return True, ""

    def measure(self, module: nn.Module, x: torch.Tensor) -> Timing:
        ok, why = self.available()
        if not ok:
            raise UsageError(f"device backend {self.name!r} cannot run here: {why}")
        module, x = module.eval().cuda(), x.cuda()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def run() -> float:
            start.record()
            module(x)
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3

        with torch.inference_mode():
            return time_until_stable(run, self.policy)


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime, CPU execution provider: the op is exported (TorchScript-based exporter) and run by a session."""

    name = "onnxruntime-cpu"

    @property
    def version(self) -> str:
        import onnxruntime
        return onnxruntime.__version__

    def available(self) -> tuple[bool, str]:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError:
            return False, "onnx and onnxruntime are not installed (pip install 'nas[onnx]')"
        return True, ""

    def measure(self, module: nn.Module, x: torch.Tensor) -> Timing:
        import io

        import numpy as np
        import onnxruntime as ort

        buf = io.BytesIO()
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(module.eval(), (x,), buf, dynamo=False, opset_version=17,
                              input_names=["x"], output_names=["y"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(buf.getvalue(), options, providers=["CPUExecutionProvider"])
        feed = {"x": np.ascontiguousarray(x.numpy())}

        def run() -> float:
            t = time.perf_counter()
            session.run(None, feed)
            return time.perf_counter() - t

        return time_until_stable(run, self.policy)


class CoremlBackend(Backend):
    """Core ML on Apple hardware. Nothing is timed in this process: ``nas lut build`` converts the ops to packages
    and ``nas lut measure`` times them on a Mac or a connected iPhone (``nas.latency.coreml``)."""

    name = "coreml"

    @property
    def version(self) -> str:
        from nas.latency.coreml import coremltools_version

        return coremltools_version()

    def available(self) -> tuple[bool, str]:
        return False, ("Core ML runs on Apple hardware: `nas lut build` writes Core ML packages and a manifest, "
                       "`nas lut measure` times them on a Mac or iPhone, `nas lut ingest` makes the table")


BACKENDS: dict[str, type[Backend]] = {"cpu": CpuBackend, "cuda": CudaBackend, "onnxruntime": OnnxRuntimeBackend,
                                      "coreml": CoremlBackend}

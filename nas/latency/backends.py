"""Measurement backends: time one module on one input on one kind of hardware or runtime.

A backend says only how to prepare a module and run it once (synchronising where the device is asynchronous);
``nas.latency.timing`` decides how often. Each records its own name and version in the table header. A new backend
is one ``Backend`` subclass plus one ``register_backend`` call; a device (``nas.latency.devices``) names it.
"""
from __future__ import annotations

import abc
import time
from typing import Any

import torch
import torch.nn as nn

from nas import install_hint, registry
from nas.errors import UsageError
from nas.latency.timing import DEFAULT_POLICY, Timing, TimingPolicy, time_until_stable


class Backend(abc.ABC):
    """Times modules on one kind of hardware/runtime."""

    name = "base"

    precisions: tuple[str, ...] = ("fp32",)     # what it can run (nas.latency.precision)

    def __init__(self, threads: int = 1, batch: int = 1, dtype: str = "float32",
                 policy: TimingPolicy = DEFAULT_POLICY, precision: str = "fp32"):
        self.threads, self.batch, self.dtype, self.policy = threads, batch, dtype, policy
        self.precision = precision
        self.recipe: Any = None        # a quantised precision's recipe (nas.latency.quantize), set by the build

    @property
    def version(self) -> str:
        return torch.__version__

    def available(self) -> tuple[bool, str]:
        """Whether this machine can measure with it, and why not."""
        return True, ""

    @abc.abstractmethod
    def measure(self, module: nn.Module, x: torch.Tensor) -> Timing:
        """Median and spread of ``module(x)``'s latency."""


class CpuBackend(Backend):
    """PyTorch eager on the CPU, inference mode, with a fixed thread count (recorded in the table)."""

    name = "torch-cpu"

    def measure(self, module: nn.Module, x: torch.Tensor) -> Timing:
        threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        torch.set_flush_denormal(True)   # denormals would make timings depend on the random weights
        module = module.eval()

        def run() -> float:
            t = time.perf_counter()
            module(x)
            return time.perf_counter() - t

        try:
            with torch.inference_mode():
                return time_until_stable(run, self.policy)
        finally:   # the process's own settings back (a caller may train next; torch has no getter for the other)
            torch.set_num_threads(threads)
            torch.set_flush_denormal(False)


class CudaBackend(Backend):
    """PyTorch eager on a CUDA GPU, timed with CUDA events around each call."""

    name = "torch-cuda"
    precisions = ("fp32", "fp16")

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
        if self.precision == "fp16":
            module, x = module.half(), x.half()
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
    precisions = ("fp32", "int8")

    @property
    def version(self) -> str:
        import onnxruntime
        return onnxruntime.__version__

    def available(self) -> tuple[bool, str]:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError:
            return False, f"onnx and onnxruntime are not installed ({install_hint('onnx')})"
        return True, ""

    def measure(self, module: nn.Module, x: torch.Tensor) -> Timing:
        import numpy as np

        from nas.latency.quantize import onnx_bytes, quantize_onnx

        model = onnx_bytes(module, x)
        feed = {"x": np.ascontiguousarray(x.numpy())}
        if self.precision == "int8":    # quantised as an exported model is; ranges from this input (speed-neutral)
            if self.recipe is None:
                raise UsageError("an int8 measurement needs the table's recipe (nas.latency.quantize.choose_recipe)")
            model = quantize_onnx(model, self.recipe, [feed])
        return self.time_model(model, x)

    def time_model(self, model: bytes, x: torch.Tensor) -> Timing:
        """An ONNX model as it is (an export's file, already quantised or not), timed on ``x`` with this backend's
        threads and policy: what ``measure`` does after exporting, and what an export's latency check does."""
        import numpy as np

        from nas.latency.quantize import session as make_session

        session, feed = make_session(model, self.threads), {"x": np.ascontiguousarray(x.numpy())}

        def run() -> float:
            t = time.perf_counter()
            session.run(None, feed)
            return time.perf_counter() - t

        return time_until_stable(run, self.policy)


class CoremlBackend(Backend):
    """Core ML on Apple hardware. Nothing is timed in this process: ``nas lut build`` converts the ops to packages
    and ``nas lut measure`` times them on a Mac or a connected iPhone (``nas.latency.coreml``)."""

    name = "coreml"
    precisions = ("fp16", "int8")     # int8: W8A8 packages (nas.latency.coreml.quantize)

    @property
    def version(self) -> str:
        from nas.latency.coreml.convert import coremltools_version

        return coremltools_version()

    def available(self) -> tuple[bool, str]:
        return False, ("Core ML runs on Apple hardware: `nas lut build` writes Core ML packages and a manifest, "
                       "`nas lut measure` times them on a Mac or iPhone, `nas lut ingest` makes the table")

    def measure(self, module: nn.Module, x: torch.Tensor) -> Timing:
        raise UsageError(self.available()[1])


BACKENDS: dict[str, type[Backend]] = {}


def register_backend(key: str, cls: type[Backend]) -> type[Backend]:
    return registry.add(BACKENDS, key, cls, "backend")


register_backend("cpu", CpuBackend)
register_backend("cuda", CudaBackend)
register_backend("onnxruntime", OnnxRuntimeBackend)
register_backend("coreml", CoremlBackend)

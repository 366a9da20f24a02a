"""Measurement backends: time one module on one input on one kind of hardware or runtime.

A backend says only how to prepare a module and run it once (synchronising where the device is asynchronous);
``nas.latency.timing`` decides how often. Each records its own name and version in the table header. A new backend
is one ``Backend`` subclass plus one ``register_backend`` call; a device (``nas.latency.devices``) names it.
"""
from __future__ import annotations

import abc
import time

import torch
import torch.nn as nn

from nas import install_hint, registry
from nas.errors import UsageError
from nas.latency.timing import DEFAULT_POLICY, Timing, TimingPolicy, time_until_stable


class Backend(abc.ABC):
    """Times modules on one kind of hardware/runtime."""

    name = "base"

    def __init__(self, threads: int = 1, batch: int = 1, dtype: str = "float32",
                 policy: TimingPolicy = DEFAULT_POLICY):
        self.threads, self.batch, self.dtype, self.policy = threads, batch, dtype, policy

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
            return False, f"onnx and onnxruntime are not installed ({install_hint('onnx')})"
        return True, ""

    def measure(self, module: nn.Module, x: torch.Tensor) -> Timing:
        import io

        import numpy as np
        import onnxruntime as ort

        buf = io.BytesIO()
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(module.eval(), (x,), buf,  # type: ignore[arg-type]   # a file object works too
                              dynamo=False, opset_version=17, input_names=["x"], output_names=["y"])
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

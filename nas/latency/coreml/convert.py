"""Converting a module to a Core ML mlprogram (fp16, iOS 16), as ``nas lut build`` and ``nas export`` both do."""
from __future__ import annotations

import contextlib
import io
import logging
import platform
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn

from nas import install_hint
from nas.errors import UsageError
from nas.latency.coreml.units import COMPUTE_UNITS
from nas.latency.ops import Op
from nas.latency.remote import INPUT_NAME


@contextmanager
def quiet_coremltools() -> Iterator[Any]:
    """Import coremltools without its torch-version warning and progress bars on every conversion."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            try:
                import coremltools as ct
            except ImportError:
                raise UsageError(f"Core ML conversion needs coremltools: {install_hint('coreml')}") from None
            yield ct
        finally:
            logging.disable(previous)


def coremltools_version() -> str:
    try:
        from importlib.metadata import version

        return version("coremltools")
    except Exception:  # noqa: BLE001 - not installed
        return "not installed"


def convert(module: nn.Module, example: torch.Tensor, compute_units: str = "ALL",
            output_name: str | None = None) -> Any:
    """``module`` as a Core ML mlprogram (fp16 compute, iOS 16), traced on ``example``; its input is named
    ``x``, its one output ``output_name`` (default: the name coremltools generates)."""
    if compute_units not in COMPUTE_UNITS:
        raise UsageError(f"compute units {compute_units!r} are not known; allowed: {', '.join(COMPUTE_UNITS)}")
    module = module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")   # torch 2.14 marks jit.trace deprecated; coremltools still takes it
        traced = torch.jit.trace(module, example)
    # coremltools draws a progress bar per conversion pass; ours (one per package) is the useful one
    with quiet_coremltools() as ct, contextlib.redirect_stderr(io.StringIO()):
        return ct.convert(
            traced, inputs=[ct.TensorType(name=INPUT_NAME, shape=tuple(example.shape))],
            outputs=[ct.TensorType(name=output_name)] if output_name else None, convert_to="mlprogram",
            compute_precision=ct.precision.FLOAT16, minimum_deployment_target=ct.target.iOS16,
            compute_units=getattr(ct.ComputeUnit, compute_units), skip_model_load=platform.system() != "Darwin")


def check_conversions(op_keys: list[str], compute_units: str = "ALL") -> list[str]:
    """Convert each op as ``build_packages`` does, without saving; the problems found, one line per op.

    What a package must be: an iOS 16 mlprogram whose one input is ``x`` of the op's shape, with one output."""
    problems = []
    for key in op_keys:
        module, x = Op.from_key(key).build(1)
        try:
            spec = convert(module, x, compute_units).get_spec()
        except Exception as exc:  # noqa: BLE001 - reported with the op's key
            problems.append(f"{key}: {type(exc).__name__}: {exc}")
            continue
        inputs = [(i.name, list(i.type.multiArrayType.shape)) for i in spec.description.input]
        if spec.WhichOneof("Type") != "mlProgram" or spec.specificationVersion < 7:   # 7 = iOS 16
            problems.append(f"{key}: not an iOS 16 mlprogram")
        elif inputs != [(INPUT_NAME, list(x.shape))]:
            problems.append(f"{key}: inputs {inputs}, expected {INPUT_NAME}{list(x.shape)}")
        elif len(spec.description.output) != 1:
            problems.append(f"{key}: {len(spec.description.output)} outputs")
    return problems

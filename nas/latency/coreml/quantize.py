"""Core ML at 8 bits: W8A8 packages (int8 weights and activations) for latency tables and exports, and W8 exports
(int8 weights, fp16 compute), both made by ``coremltools.optimize`` and both made here, on any OS.

- **W8A8** (``iphone12-int8``, export format ``coreml-int8``): coremltools' own torch quantizer
  (``coremltools.optimize.torch.quantization.LinearQuantizer``: symmetric per-channel int8 weights and uint8
  activations, the settings Apple documents for Core ML) observes activation ranges on calibration images in eval
  mode (no training step, BatchNorm statistics untouched), then the model converts to an iOS 17 mlprogram whose
  ``quantize``/``dequantize`` ops the Neural Engine runs int8-int8 from the A17 Pro on. Core ML's own activation
  quantiser (``coremltools.optimize.coreml.experimental.linear_quantize_activations``) is not used: it calibrates
  by running the converted model, which Core ML does only on macOS.
- **W8** (export format ``coreml-w8``): ``linear_quantize_weights`` on the fp16 package: a quarter of the fp32
  weights' bytes, the same fp16 compute (Apple measures no speed-up from weight-only int8, so it has no table of
  its own: the fp16 table prices it).

Timing a package happens where Core ML runs (``nas.latency.coreml.measure``, a Mac or an iPhone); an int8 iPhone
table is measured there and ingested (``nas lut ingest``), never derived from the fp16 one by a factor.
"""
from __future__ import annotations

import contextlib
import io
import platform
import warnings
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn as nn

from nas.latency.coreml.convert import quiet_coremltools
from nas.latency.coreml.units import COMPUTE_UNITS
from nas.latency.remote import INPUT_NAME

W8A8_TARGET = "iOS17"         # the first deployment target with activation quantize/dequantize ops
W8_WEIGHT_THRESHOLD = 512     # weights with fewer elements stay fp16 (Apple's default; biases, norms, scales)


def w8a8_module(module: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor]) -> nn.Module:
    """``module`` with int8 fake-quantisation of weights (per channel) and activations (per tensor, ranges observed
    on ``calibration``), ready to convert: what coremltools turns into a W8A8 mlprogram."""
    with quiet_coremltools():
        import coremltools.optimize.torch.quantization as ctq

    config = ctq.LinearQuantizerConfig(global_config=ctq.ModuleLinearQuantizerConfig(
        quantization_scheme="symmetric", activation_dtype=torch.quint8, weight_dtype=torch.qint8,
        weight_per_channel=True, milestones=[0, 0, 1_000_000, 0]))   # observe from the start, never freeze here
    quantizer = ctq.LinearQuantizer(module.eval(), config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = quantizer.prepare(example_inputs=(example,), inplace=False)
        prepared.eval()
        quantizer.step()
        with torch.no_grad():
            for images in calibration:
                prepared(images)
        finalized: nn.Module = quantizer.finalize(inplace=False)
    return _fold_shapes(finalized.eval(), example)


def _fold_shapes(module: nn.Module, example: torch.Tensor) -> nn.Module:
    """The quantizer's torch.fx graph with every tensor-shape lookup (``x.shape[i]``, ``x.size(i)``) replaced by
    its value for ``example``: traced, such lookups become ``aten::Int`` casts that coremltools cannot convert
    ("only 0-dimensional arrays can be converted"), and a package's input shape is fixed anyway."""
    import operator

    from torch.fx import GraphModule, Node
    from torch.fx.node import map_arg
    from torch.fx.passes.shape_prop import ShapeProp

    if not isinstance(module, GraphModule):
        return module
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # torch 2.14 marks quantized tensor creation deprecated
        ShapeProp(module).propagate(example)

    def constant_of(node: Node) -> int | None:
        if node.op == "call_function" and node.target is operator.getitem and isinstance(node.args[1], int):
            source = node.args[0]
            if isinstance(source, Node) and source.op == "call_function" and source.target is getattr \
                    and source.args[1] == "shape":
                return int(source.args[0].meta["tensor_meta"].shape[node.args[1]])     # type: ignore[union-attr]
        if node.op == "call_method" and node.target == "size" and len(node.args) == 2 \
                and isinstance(node.args[1], int):
            return int(node.args[0].meta["tensor_meta"].shape[node.args[1]])           # type: ignore[union-attr]
        return None

    for node in list(module.graph.nodes):
        value = constant_of(node)
        if value is None:
            continue
        for user in list(node.users):
            user.args = map_arg(user.args, lambda a, n=node, v=value: v if a is n else a)  # type: ignore[misc]
            user.kwargs = map_arg(user.kwargs, lambda a, n=node, v=value: v if a is n else a)  # type: ignore[misc]
    module.graph.eliminate_dead_code()
    module.recompile()
    return module


def convert_w8a8(module: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor],
                 compute_units: str = "ALL", output_name: str | None = None) -> Any:
    """``module`` as a W8A8 Core ML mlprogram (iOS 17), traced on ``example``; input ``x`` as for fp16."""
    from nas.errors import UsageError

    if compute_units not in COMPUTE_UNITS:
        raise UsageError(f"compute units {compute_units!r} are not known; allowed: {', '.join(COMPUTE_UNITS)}")
    quantised = w8a8_module(module, example, calibration)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(quantised, example)
    with quiet_coremltools() as ct, contextlib.redirect_stderr(io.StringIO()):
        return ct.convert(
            traced, inputs=[ct.TensorType(name=INPUT_NAME, shape=tuple(example.shape))],
            outputs=[ct.TensorType(name=output_name)] if output_name else None, convert_to="mlprogram",
            minimum_deployment_target=getattr(ct.target, W8A8_TARGET),
            compute_units=getattr(ct.ComputeUnit, compute_units), skip_model_load=platform.system() != "Darwin")


def weights_w8(mlmodel: Any) -> Any:
    """An fp16 mlprogram with its weights in int8 (symmetric, per channel): W8, fp16 compute."""
    with quiet_coremltools(), contextlib.redirect_stderr(io.StringIO()):
        import coremltools.optimize.coreml as cto

        config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(
            mode="linear_symmetric", weight_threshold=W8_WEIGHT_THRESHOLD))
        return cto.linear_quantize_weights(mlmodel, config=config)


def op_counts(mlmodel: Any) -> dict[str, int]:
    """How many ops of each type the mlprogram's spec holds (the check that quantisation happened), for a model
    converted in this process or loaded from disk alike."""
    counts: dict[str, int] = {}
    for function in mlmodel.get_spec().mlProgram.functions.values():
        for block in function.block_specializations.values():
            for op in block.operations:
                counts[op.type] = counts.get(op.type, 0) + 1
    return counts

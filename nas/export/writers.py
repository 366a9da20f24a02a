"""One writer per export format. Each saves the subnet under the output folder, reloads what it saved as a user
would, and returns (files written, check). A new one is registered by name in
``nas.export.formats`` (``register_format``)."""
from __future__ import annotations

import json
import platform
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from nas.export.subnet import Subnet, compare
from nas.fileio import atomic_output, write_json_atomic
from supernet.static import EfficientFormerNet

ONNX_OPSET = 17
COREML_RTOL = 2e-2                # Core ML runs fp16 (macOS only): max |difference| / max |logit|
OUTPUT_NAME = "logits"            # ONNX and Core ML name their one output so; their input is "x"

Check = dict[str, Any]
Writer = Callable[[Subnet, Path, torch.Tensor, torch.Tensor], tuple[list[str], Check]]
def write_pt(sub: Subnet, out: Path, x: torch.Tensor, ref: torch.Tensor) -> tuple[list[str], Check]:
    with atomic_output(out / "model.pt") as staging:
        torch.save({k: v.detach().cpu() for k, v in sub.model.state_dict().items()}, staging)
    write_json_atomic(out / "model_config.json", sub.model.arch_config)
    model = EfficientFormerNet(**json.loads((out / "model_config.json").read_text()))
    model.load_state_dict(torch.load(out / "model.pt", map_location="cpu", weights_only=True))
    with torch.no_grad():
        got = model.eval()(x)
    return ["model.pt", "model_config.json"], compare(ref, got)


def write_timm(sub: Subnet, out: Path, x: torch.Tensor, ref: torch.Tensor) -> tuple[list[str], Check]:
    import timm
    from timm.models import save_for_hf

    from supernet.timm_model import MODEL_NAME

    model = timm.create_model(MODEL_NAME, **sub.model.arch_config)
    model.load_state_dict(sub.model.state_dict())
    with atomic_output(out / "timm") as staging:
        save_for_hf(model, str(staging), model_args=sub.model.arch_config, safe_serialization=True)
    reloaded = timm.create_model(f"local-dir:{out / 'timm'}", pretrained=True).eval()
    with torch.no_grad():
        got = reloaded(x)
    return ["timm/config.json", "timm/model.safetensors"], compare(ref, got)


def write_torchscript(sub: Subnet, out: Path, x: torch.Tensor, ref: torch.Tensor) -> tuple[list[str], Check]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")    # torch 2.14 marks TorchScript deprecated; it still serves C++/mobile users
        scripted = torch.jit.script(sub.model.eval())
        with atomic_output(out / "model.torchscript.pt") as staging:
            scripted.save(str(staging))
        loaded = torch.jit.load(str(out / "model.torchscript.pt"), map_location="cpu")
    with torch.no_grad():
        got = loaded(x)
    return ["model.torchscript.pt"], compare(ref, got)


def write_onnx(sub: Subnet, out: Path, x: torch.Tensor, ref: torch.Tensor) -> tuple[list[str], Check]:
    import onnx
    import onnxruntime as ort

    with atomic_output(out / "model.onnx") as staging, warnings.catch_warnings():
        warnings.simplefilter("ignore")    # the TorchScript-based exporter warns that it is deprecated
        torch.onnx.export(sub.model.eval(), (x[:1],), str(staging), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["x"], output_names=[OUTPUT_NAME],
                          dynamic_axes={"x": {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    onnx.checker.check_model(str(out / "model.onnx"))
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x.numpy()})[0]
    return ["model.onnx"], {**compare(ref, got), "opset": ONNX_OPSET, "onnxruntime": ort.__version__}


def write_onnx_int8(sub: Subnet, out: Path, x: torch.Tensor, ref: torch.Tensor) -> tuple[list[str], Check]:
    """The int8 QDQ ONNX model, quantised by the recipe of this machine's ``onnxruntime-int8`` table (the op
    types that run faster in int8 here; the others stay float, as the table priced them), its activation ranges
    calibrated on the training images BatchNorm was recalibrated on (``--data``), else on the check input. Checked
    against the float model: top-1 agreement and the largest difference relative to the logits' range."""
    import numpy as np
    import onnx

    from nas.data import image_batches
    from nas.latency.quantize import CALIBRATION_IMAGES, CALIBRATION_SEED, onnx_bytes, quantize_onnx, session
    from nas.latency.table import table_recipe

    recipe = table_recipe("onnxruntime-int8", sub.space)
    data = (sub.weights.get("batchnorm") or {}).get("recalibrated_on")
    batches: Iterable[torch.Tensor] = [x]
    calibrated_on = "the check input (random images: give --data for real activation ranges)"
    if data:
        batches = image_batches(data, sub.space.input_size, CALIBRATION_IMAGES, seed=CALIBRATION_SEED, split="train")
        calibrated_on = f"{CALIBRATION_IMAGES} training images of {data}"
    feeds = [{"x": np.ascontiguousarray(images.numpy())} for images in batches]
    model = quantize_onnx(onnx_bytes(sub.model, x[:1], dynamic_batch=True, output_name=OUTPUT_NAME), recipe, feeds)
    with atomic_output(out / "model.int8.onnx") as staging:
        staging.write_bytes(model)
    onnx.checker.check_model(str(out / "model.int8.onnx"))
    got = torch.as_tensor(session((out / "model.int8.onnx").read_bytes(), 1).run(None, {"x": x.numpy()})[0])
    if got.shape != ref.shape or not bool(torch.isfinite(got).all()):
        return ["model.int8.onnx"], {"ok": False, "detail": f"output shape {list(got.shape)} (expected "
                                                            f"{list(ref.shape)}) or not finite"}
    spread = float(ref.max() - ref.min()) or 1.0
    return ["model.int8.onnx"], {
        "ok": True, "int8_op_types": list(recipe.op_types), "calibrated_on": calibrated_on,
        "top1_agreement_pct": 100.0 * float((got.argmax(1) == ref.argmax(1)).float().mean()),
        "max_abs_diff_rel": float((got - ref).abs().max()) / spread,
        "note": "int8 differs from float by design; the agreement is on the check input (random images): "
                "accuracy after quantisation is nas search's objective at int8, on validation images"}


def write_coreml(sub: Subnet, out: Path, x: torch.Tensor, ref: torch.Tensor) -> tuple[list[str], Check]:
    from nas.latency.coreml.convert import INPUT_NAME, convert

    one = x[:1]
    mlmodel = convert(sub.model, one, output_name=OUTPUT_NAME)
    with atomic_output(out / "model.mlpackage") as staging:
        mlmodel.save(str(staging))
    spec = mlmodel.get_spec()
    inputs = [(i.name, list(i.type.multiArrayType.shape)) for i in spec.description.input]
    outputs = [o.name for o in spec.description.output]
    check: dict[str, Any] = {"inputs": inputs, "outputs": outputs, "spec_version": spec.specificationVersion}
    problems = []
    if spec.WhichOneof("Type") != "mlProgram" or spec.specificationVersion < 7:    # 7 = iOS 16
        problems.append("not an iOS 16 mlprogram")
    if inputs != [(INPUT_NAME, list(one.shape))]:
        problems.append(f"inputs {inputs}, expected {INPUT_NAME}{list(one.shape)}")
    if outputs != [OUTPUT_NAME]:
        problems.append(f"outputs {outputs}, expected [{OUTPUT_NAME!r}]")
    if problems:
        return ["model.mlpackage"], {**check, "ok": False, "detail": "; ".join(problems)}
    if platform.system() != "Darwin":
        return ["model.mlpackage"], {**check, "ok": True, "predictions": "not run: Core ML predicts on macOS only; "
                                                                         "the conversion and its spec are checked"}
    got = mlmodel.predict({INPUT_NAME: one.numpy()})[OUTPUT_NAME]
    scale = float(ref[:1].abs().max()) or 1.0
    compared = compare(ref[:1] / scale, torch.as_tensor(got, dtype=torch.float32) / scale, COREML_RTOL)
    return ["model.mlpackage"], {**check, **compared, "predictions": "compared relative to max |logit| (fp16)"}



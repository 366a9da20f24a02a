"""Export a subnet where it ships: PyTorch state dict, timm, TorchScript, ONNX and Core ML, each checked.

``export_arch`` builds the subnet once (inherited from a supernet checkpoint when one is given, with BatchNorm
recalibrated on images when given), then each format's writer saves it and reloads what it saved to compare it
with the PyTorch model on the same random input. ``DIR`` ends up with::

    arch.json                the arch (``nas predict --arch DIR/arch.json``)
    model.pt                 state dict (plain tensors) + model_config.json (EfficientFormerNet keyword arguments)
    timm/                    timm's folder format: timm.create_model("local-dir:DIR/timm", pretrained=True)
    model.torchscript.pt     torch.jit.script, any batch size
    model.onnx               TorchScript-based exporter (no onnxscript needed), dynamic batch, opset recorded
    model.mlpackage          Core ML mlprogram, fp16, iOS 16, input "x" [1, 3, H, W]
    export_check.json        every format's check: reloaded output vs PyTorch's, tolerance, pass/fail
    README.md                model card

Every file is written through a staging path and renamed into place, so a killed export leaves whole files.
"""
from __future__ import annotations

import json
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from nas.errors import UsageError
from nas.fileio import atomic_output, write_json_atomic
from nas.space import Arch, SearchSpace, load_space
from supernet.static import EfficientFormerNet

FORMATS = ("pt", "timm", "torchscript", "onnx", "coreml")
ONNX_OPSET = 17
TOLERANCE = 1e-4                  # TorchScript, ONNX Runtime, timm reload: max |difference| of the logits
COREML_RTOL = 2e-2                # Core ML runs fp16 (macOS only): max |difference| / max |logit|
CHECK_BATCH = 2                   # != 1, so a format that baked the batch size in fails its check
CHECK_SEED = 0
OUTPUT_NAME = "logits"            # ONNX and Core ML name their one output so; their input is "x"


@dataclass
class Subnet:
    """The model to export and where its weights came from."""
    arch: Arch
    space: SearchSpace
    model: EfficientFormerNet
    weights: dict[str, Any] = field(default_factory=dict)   # provenance, for the card and export_check.json


def parse_formats(text: str) -> list[str]:
    wanted = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown or not wanted:
        raise UsageError(f"--format {text!r}: unknown format {', '.join(unknown) or '(none)'}; "
                         f"accepted: a comma-separated list of {', '.join(FORMATS)}")
    return [f for f in FORMATS if f in wanted]     # a fixed order: pt first, the slow Core ML last


_NEEDS = {"onnx": (("onnx", "onnxruntime"), "nas[onnx]"), "coreml": (("coremltools",), "nas[coreml]")}


def require_packages(formats: list[str]) -> None:
    """Refuse up front, in one line, a format whose packages are missing (before minutes of other exports)."""
    from importlib.util import find_spec

    for fmt in formats:
        modules, extra = _NEEDS.get(fmt, ((), ""))
        missing = [m for m in modules if find_spec(m) is None]
        if missing:
            raise UsageError(f"--format {fmt} needs {', '.join(missing)}: pip install '{extra}'")


# --------------------------------------------------------------------------------------------- the subnet


def build_subnet(arch: Arch, supernet: str | Path | None = None, data: str | Path | None = None,
                 bn_images: int = 1024) -> Subnet:
    """``arch`` with the supernet checkpoint's weights (or a fresh initialisation), BatchNorm recalibrated on
    ``data`` when given."""
    from supernet.checkpoint import file_digest, load_supernet

    space = load_space(arch.space)
    if supernet is None:
        model = EfficientFormerNet.from_arch(arch, space)
        weights: dict[str, Any] = {"source": "fresh initialisation (no --supernet): right for latency, deployment "
                                             "plumbing and fine-tuning, not for accuracy"}
    else:
        net, meta = load_supernet(supernet)
        if net.space.name != space.name:
            raise UsageError(f"the arch is of space {space.name!r}, the supernet {supernet} of {net.space.name!r}")
        model = net.extract(arch)
        weights = {"source": "inherited from a supernet", "supernet": str(supernet),
                   "supernet_sha256": file_digest(supernet), "supernet_meta": meta}
    if data is not None:
        from nas.data import image_batches
        from supernet.batchnorm import recalibrate_batchnorm

        seen = recalibrate_batchnorm(model, image_batches(data, space.input_size, bn_images))
        weights["batchnorm"] = {"recalibrated_on": str(data), "images": seen}
    return Subnet(arch, space, model.eval(), weights)


def check_input(space: SearchSpace, batch: int = CHECK_BATCH) -> torch.Tensor:
    g = torch.Generator().manual_seed(CHECK_SEED)
    return torch.randn(batch, 3, space.input_size, space.input_size, generator=g)


def _compare(reference: torch.Tensor, got: Any, tolerance: float = TOLERANCE) -> dict[str, Any]:
    got = torch.as_tensor(got, dtype=torch.float32)
    if got.shape != reference.shape:
        return {"ok": False, "detail": f"output shape {list(got.shape)}, expected {list(reference.shape)}"}
    diff = float((got - reference).abs().max())
    return {"ok": diff <= tolerance, "max_abs_diff": diff, "tolerance": tolerance}


# --------------------------------------------------------------------------------------------- one writer a format
# Each writer saves ``sub`` under ``out``, reloads it as a user would, and returns (files written, check).

Writer = Callable[[Subnet, Path, torch.Tensor, torch.Tensor], tuple[list[str], dict[str, Any]]]


def _write_pt(sub: Subnet, out: Path, x: torch.Tensor, ref: torch.Tensor):
    with atomic_output(out / "model.pt") as staging:
        torch.save({k: v.detach().cpu() for k, v in sub.model.state_dict().items()}, staging)
    write_json_atomic(out / "model_config.json", sub.model.arch_config)
    model = EfficientFormerNet(**json.loads((out / "model_config.json").read_text()))
    model.load_state_dict(torch.load(out / "model.pt", map_location="cpu", weights_only=True))
    with torch.no_grad():
        got = model.eval()(x)
    return ["model.pt", "model_config.json"], _compare(ref, got)


def _write_timm(sub: Subnet, out: Path, x: torch.Tensor, ref: torch.Tensor):
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
    return ["timm/config.json", "timm/model.safetensors"], _compare(ref, got)


def _write_torchscript(sub: Subnet, out: Path, x: torch.Tensor, ref: torch.Tensor):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")    # torch 2.14 marks TorchScript deprecated; it still serves C++/mobile users
        scripted = torch.jit.script(sub.model.eval())
        with atomic_output(out / "model.torchscript.pt") as staging:
            scripted.save(str(staging))
        loaded = torch.jit.load(str(out / "model.torchscript.pt"), map_location="cpu")
    with torch.no_grad():
        got = loaded(x)
    return ["model.torchscript.pt"], _compare(ref, got)


def _write_onnx(sub: Subnet, out: Path, x: torch.Tensor, ref: torch.Tensor):
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
    return ["model.onnx"], {**_compare(ref, got), "opset": ONNX_OPSET, "onnxruntime": ort.__version__}


def _write_coreml(sub: Subnet, out: Path, x: torch.Tensor, ref: torch.Tensor):
    from nas.latency.coreml import INPUT_NAME, convert

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
    compared = _compare(ref[:1] / scale, torch.as_tensor(got, dtype=torch.float32) / scale, COREML_RTOL)
    return ["model.mlpackage"], {**check, **compared, "predictions": "compared relative to max |logit| (fp16)"}


WRITERS: dict[str, Writer] = {"pt": _write_pt, "timm": _write_timm, "torchscript": _write_torchscript,
                              "onnx": _write_onnx, "coreml": _write_coreml}


# --------------------------------------------------------------------------------------------- the whole export


def run_notes(arch_or_run: str | Path) -> dict[str, Any]:
    """What a ``nas search`` run directory says of its winner (objective, budgets), for the model card."""
    from nas.fileio import read_json

    run_file = Path(arch_or_run) / "run.json"
    if not run_file.is_file():
        return {}
    run = read_json(run_file, "run summary")
    best = run.get("best") or {}
    budgets = ", ".join(f"{b['budget_ms']} ms on {b['device']}" for b in run.get("budgets", []))
    notes = {"search": f"winner of `nas search` run `{arch_or_run}` (strategy {run.get('strategy')}, "
                       f"budget {budgets or 'unknown'})"}
    if "objective" in best:
        notes["search_objective"] = f"{best.get('objective_name', 'objective')} = {best['objective']:.4g}"
    if best.get("objective_is_accuracy"):
        notes["accuracy"] = f"{best['objective']:.4g} ({best.get('objective_name')})"
    return notes


def model_facts(sub: Subnet) -> dict[str, Any]:
    """Parameters, MACs (traced, BatchNorm folded as deployed) and predicted latency on every device with a table."""
    from nas.latency import DEVICES, default_table_path, load_predictor
    from nas.latency.trace import summarize, trace_ops

    params = sum(p.numel() for p in sub.model.parameters())
    macs = summarize(trace_ops(sub.model.eval(), check_input(sub.space, 1)))["macs_g"]
    latency: dict[str, dict[str, Any]] = {}
    for name in DEVICES:
        path = default_table_path(name, sub.space.name)
        if not path.exists():
            latency[name] = {"latency_ms": None, "table": None}
            continue
        predictor = load_predictor(name, sub.space.name)
        latency[name] = {"latency_ms": predictor.predict(sub.arch), "table": predictor.path, "kind": predictor.kind}
    return {"params": params, "macs_g": macs, "input_size": sub.space.input_size, "latency": latency}


def export_subnet(sub: Subnet, out: str | Path, formats: list[str], notes: dict[str, Any] | None = None,
                  progress: bool = True) -> dict[str, Any]:
    """Write ``sub`` in ``formats`` under ``out``, check each, write export_check.json and README.md."""
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "arch.json", sub.arch.to_dict())
    x = check_input(sub.space)
    with torch.no_grad():
        ref = sub.model.eval()(x)
    files: dict[str, list[str]] = {}
    checks: dict[str, dict[str, Any]] = {}
    bar = tqdm(formats, desc="exporting", unit="format", disable=not progress)
    for fmt in bar:
        bar.set_postfix_str(fmt)
        start = time.perf_counter()
        try:
            files[fmt], checks[fmt] = WRITERS[fmt](sub, out, x, ref)
        except Exception as exc:  # noqa: BLE001 - one format failing is reported, the others still export
            files[fmt], checks[fmt] = [], {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
        checks[fmt]["seconds"] = round(time.perf_counter() - start, 2)
    facts = model_facts(sub)
    report = {"out": str(out), "arch": sub.arch.to_dict(), "formats": formats, "files": files, "checks": checks,
              "ok": all(c["ok"] for c in checks.values()), "weights": sub.weights, **facts,
              "notes": notes or {}, "check_input": {"shape": list(x.shape), "seed": CHECK_SEED},
              "versions": _versions(), "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_json_atomic(out / "export_check.json", report)
    with atomic_output(out / "README.md") as staging:
        staging.write_text(model_card(report))
    return report


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("torch", "timm", "onnx", "onnxruntime", "coremltools"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


# --------------------------------------------------------------------------------------------- the model card


def model_card(report: dict[str, Any]) -> str:
    arch = report["arch"]
    lines = [f"# `{_arch_name(arch)}`: an EfficientFormer-family subnet of space `{arch['space']}`", ""]
    lines += ["Exported by `nas export`. Reload and check every format with the snippets below; "
              "`export_check.json` holds the same facts as data.", ""]
    lines += ["## Architecture", "", "| stage | width | blocks | MLP ratios |", "|---|---|---|---|"]
    last = len(arch["depths"]) - 1
    for s, (w, d) in enumerate(zip(arch["widths"], arch["depths"])):
        n3d = arch["n3d"] if s == last else 0
        kinds = f"{d - n3d}x MB4D" + (f" + {n3d}x MB3D" if n3d else "")
        lines.append(f"| {s + 1} | {w} | {kinds} | {', '.join(map(str, arch['mlp_ratios'][s]))} |")
    if arch["n3d"]:
        lines += ["", "MB3D blocks (token mixer, heads, key dim): " + "; ".join(
            f"{m} {h}x{k}" for m, h, k in zip(arch["mixers"], arch["heads"], arch["key_dims"]))]
    lines += ["", f"- Parameters: {report['params'] / 1e6:.2f} M",
              f"- MACs: {report['macs_g']:.3f} G at {report['input_size']}x{report['input_size']} "
              "(traced, BatchNorm folded into the convolutions as deployed)",
              f"- Weights: {report['weights']['source']}"]
    if "supernet" in report["weights"]:
        lines.append(f"  - checkpoint `{report['weights']['supernet']}` "
                     f"(sha256 {report['weights']['supernet_sha256'][:16]}...)")
    if "batchnorm" in report["weights"]:
        bn = report["weights"]["batchnorm"]
        lines.append(f"  - BatchNorm statistics recalibrated on {bn['images']} images of `{bn['recalibrated_on']}`")
    accuracy = report["notes"].get("accuracy") or report["weights"].get("supernet_meta", {}).get("accuracy")
    lines.append(f"- Accuracy: {accuracy if accuracy is not None else 'not measured'}")
    for key, value in report["notes"].items():
        if key != "accuracy":
            lines.append(f"- {key.replace('_', ' ').capitalize()}: {value}")
    lines += ["", "## Predicted latency", "", "| device | latency (ms) | table |", "|---|---|---|"]
    for device, info in report["latency"].items():
        if info["latency_ms"] is None:
            lines.append(f"| {device} | - | no table (build one: `nas lut build --device {device}`) |")
        else:
            lines.append(f"| {device} | {info['latency_ms']:.3f} | {info['kind']}: `{info['table']}` |")
    lines += ["", "## Files and checks", "",
              f"Each format was reloaded from disk and run on the same random input (shape "
              f"{report['check_input']['shape']}, seed {report['check_input']['seed']}) as the PyTorch model.", "",
              "| format | files | check |", "|---|---|---|"]
    for fmt in report["formats"]:
        lines.append(f"| {fmt} | {', '.join(f'`{f}`' for f in report['files'][fmt]) or '-'} | "
                     f"{_check_text(report['checks'][fmt])} |")
    size = report["input_size"]
    lines += ["", "## Loading", "", "```python", "import json, torch",
              "# PyTorch (pip install nas)", "from supernet import EfficientFormerNet",
              "model = EfficientFormerNet(**json.load(open('model_config.json')))",
              "model.load_state_dict(torch.load('model.pt', weights_only=True)); model.eval()", "",
              "# timm (needs `nas` installed for the architecture)", "import timm, supernet.timm_model  # registers "
              "nas_efficientformer", "model = timm.create_model('local-dir:timm', pretrained=True).eval()", "",
              "# TorchScript (torch only)", "model = torch.jit.load('model.torchscript.pt')", "",
              "# ONNX Runtime", "import onnxruntime as ort, numpy as np",
              "session = ort.InferenceSession('model.onnx')",
              f"logits = session.run(None, {{'x': np.zeros((1, 3, {size}, {size}), np.float32)}})[0]", "",
              "# Core ML (macOS)", "import coremltools as ct", "mlmodel = ct.models.MLModel('model.mlpackage')",
              f"out = mlmodel.predict({{'x': np.zeros((1, 3, {size}, {size}), np.float32)}})", "```", "",
              "Inputs are RGB images normalised with the ImageNet mean and std, as timm's eval transform does; "
              "outputs are class logits.", ""]
    lines.append(f"Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}; exported {report['date']}.")
    return "\n".join(lines) + "\n"


def _arch_name(arch: dict[str, Any]) -> str:
    return f"w{'-'.join(map(str, arch['widths']))}_d{'-'.join(map(str, arch['depths']))}_3d{arch['n3d']}"


def _check_text(check: dict[str, Any]) -> str:
    verdict = "pass" if check["ok"] else "**FAIL**"
    if "max_abs_diff" in check:
        verdict += f": max diff {check['max_abs_diff']:.1e} (tolerance {check['tolerance']:.0e})"
    if "predictions" in check:
        verdict += f"; inputs {check['inputs']}, outputs {check['outputs']}; predictions {check['predictions']}"
    if "detail" in check:
        verdict += f": {check['detail']}"
    return verdict.replace("|", "/")

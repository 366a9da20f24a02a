"""The model card (``README.md`` of an export) and the facts it states, from the export's report."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from nas.export.subnet import Subnet
from nas.space import block_layout, space_flag


def run_notes(arch_or_run: str | Path) -> dict[str, Any]:
    """What a ``nas search`` run directory says of its winner (objective, budgets), for the model card."""
    from nas.fileio import read_json

    run_file = Path(arch_or_run) / "run.json"
    if not run_file.is_file():
        return {}
    from nas.schemas import check

    run = check(read_json(run_file, "run summary"), "run summary", str(run_file))
    best = run.get("best") or {}
    budgets = ", ".join(f"{b['budget_ms']} ms on {b['device']}"
                        + (f" (guaranteed: upper bound at {b['guarantee']:.0%} coverage, {b['interval_source']})"
                           if b.get("guarantee") is not None else "") for b in run.get("budgets", []))
    notes = {"search": f"winner of `nas search` run `{Path(arch_or_run).name}` (strategy {run.get('strategy')}, "
                       f"budget {budgets or 'unknown'})"}
    from nas.latency.precision import PRECISIONS

    shipped = {device: p for device, p in (best.get("precisions") or {}).items()      # quantised: said so
               if p in PRECISIONS and PRECISIONS[p].quantized}
    if shipped:
        auto = any(b.get("precision") == "auto" for b in run.get("budgets", []))
        notes["precision"] = (", ".join(f"{p} on {device}" for device, p in shipped.items())
                              + (" (chosen with the arch: --precision auto)" if auto else ""))
    if "objective" in best:
        notes["search_objective"] = f"{best.get('objective_name', 'objective')} = {best['objective']:.4g}"
    if best.get("objective_is_accuracy"):
        notes["accuracy"] = f"{best['objective']:.4g} ({best.get('objective_name')})"
    return notes


def model_facts(sub: Subnet) -> dict[str, Any]:
    """Parameters, MACs (the sum over the arch's ops, each traced once with BatchNorm folded as deployed and cached:
    ``nas.latency.counts``, exact and ~3 s faster than tracing the whole model) and predicted latency on every
    device with a table."""
    from nas.latency.counts import OpCounts
    from nas.latency.devices import DEVICES
    from nas.latency.paths import default_table_path
    from nas.latency.predict import load_predictor

    params = sum(p.numel() for p in sub.model.parameters())
    counts = OpCounts(sub.space)
    macs = counts.counts(sub.arch)[1] / 1e9
    counts.save()
    latency: dict[str, dict[str, Any]] = {}
    for name in DEVICES:
        path = default_table_path(name, sub.space.name)
        if not path.exists():
            latency[name] = {"latency_ms": None, "table": None}
            continue
        predictor = load_predictor(name, sub.space.name)
        latency[name] = {"latency_ms": predictor.predict(sub.arch), "table": predictor.path, "kind": predictor.kind}
    return {"params": params, "macs_g": macs, "input_size": sub.space.input_size, "latency": latency}


# --------------------------------------------------------------------------------------------- the model card


def model_card(report: dict[str, Any]) -> str:
    arch = report["arch"]
    lines = [f"# `{_arch_name(arch)}`: an EfficientFormer-family subnet of space `{arch['space']}`", ""]
    lines += ["Exported by `nas export`. Reload and check every format with the snippets below; "
              "`export_check.json` holds the same facts as data.", ""]
    lines += ["## Architecture", "", "| stage | width | blocks | MLP ratios |", "|---|---|---|---|"]
    layout = block_layout(arch["depths"], arch["n3d"])
    for s, w in enumerate(arch["widths"]):
        n4d = sum(1 for st, _, kind in layout if st == s and kind == "4d")
        n3d = sum(1 for st, _, kind in layout if st == s and kind == "3d")
        kinds = f"{n4d}x MB4D" + (f" + {n3d}x MB3D" if n3d else "")
        lines.append(f"| {s + 1} | {w} | {kinds} | {', '.join(map(str, arch['mlp_ratios'][s]))} |")
    if arch["n3d"]:
        from supernet.mixers import get_mixer

        lines += ["", "MB3D blocks of the last stage (token mixer of each):", "",
                  "| block | mixer | heads | key dim | design |", "|---|---|---|---|---|"]
        first = arch["depths"][-1] - arch["n3d"]
        for j, (m, h, k) in enumerate(zip(arch["mixers"], arch["heads"], arch["key_dims"])):
            lines.append(f"| {first + j + 1} | {m} | {h or '-'} | {k or '-'} | {get_mixer(m).paper or m} |")
        counts = {m: arch["mixers"].count(m) for m in dict.fromkeys(arch["mixers"])}
        lines += ["", "Mixers used: " + ", ".join(f"{n}x {m}" for m, n in counts.items())]
    lines += ["", f"- Parameters: {report['params'] / 1e6:.2f} M",
              f"- MACs: {report['macs_g']:.3f} G at {report['input_size']}x{report['input_size']} "
              "(traced, BatchNorm folded into the convolutions as deployed)",
              f"- Weights: {report['weights']['source']}"]
    if "supernet" in report["weights"]:
        lines.append(f"  - checkpoint `{Path(report['weights']['supernet']).name}` "
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
            lines.append(f"| {device} | - | no table (build one: `nas lut build --device {device}"
                         f"{space_flag(arch['space'])}`) |")
        else:
            lines.append(f"| {device} | {info['latency_ms']:.3f} | {info['kind']}: `{Path(info['table']).name}` |")
    lines += ["", "## Files and checks", "",
              f"Each format was reloaded from disk and run on the same random input (shape "
              f"{report['check_input']['shape']}, seed {report['check_input']['seed']}) as the PyTorch model.", "",
              "| format | files | check |", "|---|---|---|"]
    for fmt in report["formats"]:
        lines.append(f"| {fmt} | {', '.join(f'`{f}`' for f in report['files'][fmt]) or '-'} | "
                     f"{_check_text(report['checks'][fmt])} |")
    lines += ["", "## Loading", "", "```python", *_loading_snippets(report), "```", "",
              "Inputs are RGB images normalised with the ImageNet mean and std, as timm's eval transform does; "
              "outputs are class logits.", ""]
    lines.append(f"Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}; exported "
                 f"{report['date']}.")
    return "\n".join(lines) + "\n"


# How to install this project for the snippets that need its code (the PyPI package named ``nas`` is another one).
INSTALL_HINT = ("needs this project's code: pip install -e <its clone> (the distribution vit-latency-nas; "
                "PyPI's `nas` is an unrelated package)")


def _loading_snippets(report: dict[str, Any]) -> list[str]:
    """Python that reloads each written format, from the export folder; only the formats this export holds (each
    format's lines are its registration's ``loading``)."""
    from nas.export.formats import FORMATS

    size = report["input_size"]
    zeros = f"np.zeros((1, 3, {size}, {size}), np.float32)"
    lines: list[str] = []
    for fmt in report["formats"]:
        loading = FORMATS[fmt].loading if fmt in FORMATS else ()
        lines += [line.replace("{install}", INSTALL_HINT).replace("{input}", zeros) for line in loading]
        lines += [] if loading else [f"# {fmt}: see export_check.json"]
        lines.append("")
    return lines[:-1]


def _arch_name(arch: dict[str, Any]) -> str:
    return f"w{'-'.join(map(str, arch['widths']))}_d{'-'.join(map(str, arch['depths']))}_3d{arch['n3d']}"


def _check_text(check: dict[str, Any]) -> str:
    verdict = "pass" if check["ok"] else "**FAIL**"
    if "max_abs_diff" in check:
        verdict += f": max diff {check['max_abs_diff']:.1e} (tolerance {check['tolerance']:.0e})"
    if "predictions" in check:
        verdict += f"; inputs {check['inputs']}, outputs {check['outputs']}; predictions {check['predictions']}"
    if "top1_agreement_pct" in check:       # int8: differs from float by design
        verdict += (f": int8 {', '.join(check['int8_op_types']) or 'nothing'}; top-1 agrees with float on "
                    f"{check['top1_agreement_pct']:.0f}% of the check input, max diff {check['max_abs_diff_rel']:.1%} "
                    f"of the logits' range; ranges from {check['calibrated_on']}")
    if "quantize_ops" in check:             # Core ML W8A8: what was quantised, and on which images
        verdict += (f"; W8A8: {check['quantize_ops']} activation quantize ops, ranges from "
                    f"{check['calibrated_on']}")
    if "int8_weight_tensors" in check:      # Core ML W8
        verdict += f"; W8: {check['int8_weight_tensors']} weight tensors in int8, fp16 compute"
    if "validation" in check:
        v = check["validation"]
        verdict += (f"; on {v['images']} validation images top-1 {v['top1']:.1f}% (float {v['float_top1']:.1f}%), "
                    f"agreement {v['agreement']:.0f}%")
    if "latency" in check:
        lat = check["latency"]
        low, high = lat["interval_ms"]
        where = ("no interval (the table has no end-to-end points)" if low is None else
                 f"{'inside' if lat['inside_interval'] else 'outside'} the table's {lat['coverage']:.0%} interval "
                 f"{low:.2f}-{high:.2f} ms")
        verdict += (f"; measured here {lat['measured_ms']:.2f} ms against {lat['predicted_ms']:.2f} ms predicted, "
                    f"{where}")
    if "detail" in check:
        verdict += f": {check['detail']}"
    return verdict.replace("|", "/")

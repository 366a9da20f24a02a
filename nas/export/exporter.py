"""``export_subnet``: write a subnet in the formats asked for, check each, and write ``export_check.json`` and the
model card."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from nas.export.card import model_card, model_facts
from nas.export.subnet import CHECK_SEED, Subnet, check_input
from nas.export.writers import WRITERS
from nas.fileio import atomic_output, write_json_atomic


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



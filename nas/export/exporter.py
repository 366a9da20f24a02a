"""``export_subnet``: write a subnet in the formats asked for, check each, and write ``export_check.json`` and the
model card."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from nas.errors import UsageError
from nas.export.card import model_card, model_facts
from nas.export.formats import FORMATS
from nas.export.subnet import CHECK_SEED, Subnet, check_input
from nas.fileio import atomic_output, mark_owned, write_json_atomic

REPORT_FILE = "export_check.json"     # marks a folder as an export of ours (it may be replaced whole)


def check_export_folder(out: str | Path) -> None:
    """Refuse, up front, an ``--out`` that holds something other than an earlier export (it is replaced whole)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the export")
    if out.is_dir() and any(out.iterdir()) and not (out / REPORT_FILE).is_file():
        raise UsageError(f"--out {out} holds files that are not an export (no {REPORT_FILE}); an export replaces "
                         "its folder whole, so give a new or empty folder, or an earlier export's")


def export_subnet(sub: Subnet, out: str | Path, formats: list[str], notes: dict[str, Any] | None = None,
                  progress: bool = True) -> dict[str, Any]:
    """Write ``sub`` in ``formats`` under ``out``, check each, write export_check.json and README.md.

    Everything is written into a staging folder beside ``out`` that replaces it at the end, so a folder that
    held an earlier export ends up with one model's files only, and a killed export leaves the earlier one."""
    check_export_folder(out)
    with atomic_output(Path(out).resolve()) as staging:     # resolved: "." has no name to stage beside
        staging.mkdir(parents=True)
        mark_owned(staging, "export")
        report = _write_export(sub, staging, formats, notes, progress)
    report["out"] = str(out)
    return report


def _write_export(sub: Subnet, out: Path, formats: list[str], notes: dict[str, Any] | None,
                  progress: bool) -> dict[str, Any]:
    from tqdm import tqdm

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
            files[fmt], checks[fmt] = FORMATS[fmt].load_writer()(sub, out, x, ref)
        except Exception as exc:  # noqa: BLE001 - one format failing is reported, the others still export
            files[fmt], checks[fmt] = [], {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
        checks[fmt]["seconds"] = round(time.perf_counter() - start, 2)
    facts = model_facts(sub)
    report = {"arch": sub.arch.to_dict(), "formats": formats, "files": files, "checks": checks,
              "ok": all(c["ok"] for c in checks.values()), "weights": sub.weights, **facts,
              "notes": notes or {}, "check_input": {"shape": list(x.shape), "seed": CHECK_SEED},
              "versions": _versions(), "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_json_atomic(out / REPORT_FILE, report)
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



"""Step 1 of a table measured elsewhere (any OS): every op of the space, plus whole archs for the end-to-end
correction, converted to packages of the device's format and listed in ``manifest.json``. The manifest is
rewritten atomically after every package, so a killed build resumes with ``--resume`` and converts nothing
twice."""
from __future__ import annotations

import platform
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from nas.errors import UsageError
from nas.fileio import mark_owned, read_json, write_json_atomic
from nas.latency.devices import Device
from nas.latency.ops import Op, space_ops
from nas.latency.remote import INPUT_NAME, PackageFormat, get_package_format
from nas.latency.table import CALIBRATION_ARCHS, CALIBRATION_SEED_BASE
from nas.schemas import check
from nas.space import DEFAULT_SPACE, SearchSpace

MANIFEST_SCHEMA = "nas-manifest/2"          # /2: any package format (header.package_format)
OLD_MANIFEST_SCHEMAS = ("nas-coreml-manifest/1",)   # read as Core ML manifests


def default_package_dir(device: Device, space: SearchSpace) -> Path:
    """Where ``nas lut build`` puts a device's packages unless told: ``FORMAT_packages/DEVICE[-SPACE]``."""
    return Path(f"{device.package_format}_packages/{device.name}"
                + ("" if space.name == DEFAULT_SPACE else f"-{space.name}"))


def package_format_of(manifest: dict[str, Any]) -> PackageFormat:
    """The format of a loaded manifest's packages (a /1 manifest's are Core ML)."""
    return get_package_format(manifest["header"].get("package_format", "coreml"))


def _jobs(space: SearchSpace, calibrate: int = CALIBRATION_ARCHS) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = [{"id": f"op-{i:04d}", "kind": "op", "op": op.key}
                                  for i, op in enumerate(space_ops(space))]
    for k in range(calibrate):
        arch = space.sample(CALIBRATION_SEED_BASE + k)
        jobs.append({"id": f"arch-{k:02d}", "kind": "arch", "arch": arch.to_dict()})
    return jobs


def _module_of(job: dict[str, Any], space: SearchSpace, batch: int) -> tuple[nn.Module, torch.Tensor]:
    if job["kind"] == "op":
        return Op.from_key(job["op"]).build(batch)
    from supernet.static import EfficientFormerNet

    arch = space.arch_from_dict(job["arch"])
    return EfficientFormerNet.from_arch(arch, space).eval(), torch.randn(batch, 3, space.input_size, space.input_size)


def _manifest_header(device: Device, space: SearchSpace, fmt: PackageFormat) -> dict[str, Any]:
    return {"schema": MANIFEST_SCHEMA, "device": device.name, "space": space.name,
            "space_source": space.source or space.name, "input_size": space.input_size, "batch": device.batch,
            "threads": device.threads, "package_format": fmt.name, **fmt.function("describe")(device),
            "torch_version": torch.__version__, "host": platform.node(), "date": time.strftime("%Y-%m-%dT%H:%M:%S")}


_MANIFEST_MUST_MATCH = ("device", "space", "input_size", "batch", "package_format", "compute_units", "precision")


def build_packages(device: Device, space: SearchSpace, out_dir: str | Path, resume: bool = False,
                   progress: bool = True, limit: int | None = None, calibrate: int = CALIBRATION_ARCHS) -> Path:
    """Convert every op of ``space`` and ``calibrate`` calibration archs (``nas lut build --calibrate``, the same
    seeds as a measured build's) to packages of the device's format; returns the manifest path."""
    from tqdm import tqdm

    if device.package_format is None:
        raise UsageError(f"device {device.name!r} is measured here, not through packages: nas lut build measures it")
    fmt = get_package_format(device.package_format)
    fmt.require_converter()           # before any folder is made or any header written (it names the converter)
    out_dir = Path(out_dir)
    manifest_path = out_dir / "manifest.json"
    header = _manifest_header(device, space, fmt)
    done: dict[str, dict[str, Any]] = {}
    if manifest_path.exists():
        if not resume:
            raise UsageError(f"{manifest_path} exists; add --resume to continue it or choose another --out")
        old = load_manifest(manifest_path)
        clash = [k for k in _MANIFEST_MUST_MATCH
                 if old["header"].get(k, "coreml" if k == "package_format" else None) != header.get(k)]
        if clash:
            raise UsageError(f"cannot resume {manifest_path}: its {', '.join(clash)} differ from this build's")
        done = {p["id"]: p for p in old["packages"] if (out_dir / p["package"]).is_dir()}
    jobs = _jobs(space, calibrate)[:limit]
    packages: list[dict[str, Any]] = [done[j["id"]] for j in jobs if j["id"] in done]
    todo = [j for j in jobs if j["id"] not in done]
    (out_dir / "packages").mkdir(parents=True, exist_ok=True)
    mark_owned(out_dir, "lut build")
    _copy_runner(fmt, out_dir)
    convert = fmt.function("convert")
    for job in tqdm(todo, desc=f"converting for {device.name} ({fmt.name})", unit="pkg", disable=not progress):
        module, x = _module_of(job, space, device.batch)
        relative = f"packages/{job['id']}{fmt.suffix}"
        staging = out_dir / "packages" / f".{job['id']}.partial{fmt.suffix}"
        _remove(staging)
        convert(module.eval(), x, device, staging)
        _remove(out_dir / relative)
        staging.rename(out_dir / relative)   # a package is complete or absent, never half-written
        packages.append({**job, "package": relative, "input": {"name": INPUT_NAME, "shape": list(x.shape)}})
        write_json_atomic(manifest_path, {"header": header, "packages": packages})
    write_json_atomic(manifest_path, {"header": header, "packages": packages})
    return manifest_path


def _remove(path: Path) -> None:
    """A package, whether a folder (.mlpackage) or a file (.onnx)."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _copy_runner(fmt: PackageFormat, out_dir: Path) -> None:
    """A format whose runner needs no nas is copied beside the packages: the folder is all the other machine
    needs (``python3 RUNNER manifest.json --out timings.json``)."""
    import importlib

    for module, name in fmt.runner_files:
        source = importlib.import_module(module).__file__
        assert source is not None
        shutil.copyfile(source, out_dir / name)


def load_manifest(path: str | Path) -> dict[str, Any]:
    data = read_json(path, "manifest", "; write one with: nas lut build --device DEVICE (one `nas devices` lists "
                                       "as ingested)")
    if not isinstance(data, dict) or not isinstance(data.get("header"), dict) \
            or data["header"].get("schema") not in (MANIFEST_SCHEMA, *OLD_MANIFEST_SCHEMAS) \
            or not isinstance(data.get("packages"), list):
        raise UsageError(f"manifest {path} is not a {MANIFEST_SCHEMA} file")
    return check(data, "manifest", str(path))

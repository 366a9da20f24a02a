"""Core ML tables, measured where Core ML runs: convert here, measure on Apple hardware, ingest here.

1. ``nas lut build --device iphone12`` (any OS): every op of the space, plus ``CALIBRATION_ARCHS`` whole archs for
   the end-to-end correction, is traced and converted to an mlprogram package (fp16, iOS 16, the device's compute
   units). ``manifest.json`` lists them. The manifest is rewritten atomically after every package, so a killed
   build resumes with ``--resume`` and converts nothing twice.
2. ``nas lut measure MANIFEST --out TIMINGS --on mac|iphone`` (macOS): times each package with coremltools, on this
   Mac or on a connected iPhone through coremltools' remote-device benchmarker. Timings are written after every
   package; ``--resume`` continues. A timings CSV (``id,median_ms[,p10_ms,p90_ms,n]``) typed in from Xcode's Core ML
   performance report is accepted by step 3 too.
3. ``nas lut ingest MANIFEST TIMINGS --out FILE`` (any OS): a measured table, with the correction fitted on the
   whole-arch timings exactly as ``nas lut build`` does for local devices.
"""
from __future__ import annotations

import contextlib
import csv
import io
import logging
import platform
import shutil
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn as nn

from nas.errors import UsageError
from nas.fileio import read_json, write_json_atomic
from nas.latency.devices import Device
from nas.latency.ops import Op, space_ops
from nas.latency.table import LatencyTable
from nas.space import Arch, SearchSpace

MANIFEST_SCHEMA = "nas-coreml-manifest/1"
TIMINGS_SCHEMA = "nas-coreml-timings/1"
COMPUTE_UNITS = ("ALL", "CPU_AND_NE", "CPU_AND_GPU", "CPU_ONLY")
CALIBRATION_ARCHS = 10   # same seeds as the local builds (nas.latency.build.CALIBRATION_SEED_BASE)
INPUT_NAME = "x"


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
                raise UsageError("Core ML conversion needs coremltools: pip install 'nas[coreml]'") from None
            yield ct
        finally:
            logging.disable(previous)


def coremltools_version() -> str:
    try:
        from importlib.metadata import version

        return version("coremltools")
    except Exception:  # noqa: BLE001 - not installed
        return "not installed"


def convert(module: nn.Module, example: torch.Tensor, compute_units: str = "ALL", output_name: str | None = None):
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


# --------------------------------------------------------------------------------------- 1. build packages


def _jobs(space: SearchSpace) -> list[dict[str, Any]]:
    from nas.latency.build import CALIBRATION_SEED_BASE

    jobs = [{"id": f"op-{i:04d}", "kind": "op", "op": op.key} for i, op in enumerate(space_ops(space))]
    for k in range(CALIBRATION_ARCHS):
        arch = space.sample(CALIBRATION_SEED_BASE + k)
        jobs.append({"id": f"arch-{k:02d}", "kind": "arch", "arch": arch.to_dict()})
    return jobs


def _module_of(job: dict[str, Any], space: SearchSpace, batch: int) -> tuple[nn.Module, torch.Tensor]:
    if job["kind"] == "op":
        return Op.from_key(job["op"]).build(batch)
    from supernet.static import EfficientFormerNet

    arch = space.arch_from_dict(job["arch"])
    return EfficientFormerNet.from_arch(arch, space).eval(), torch.randn(batch, 3, space.input_size, space.input_size)


def _manifest_header(device: Device, space: SearchSpace) -> dict[str, Any]:
    return {"schema": MANIFEST_SCHEMA, "device": device.name, "space": space.name,
            "space_source": space.source or space.name,
            "input_size": space.input_size, "batch": device.batch, "compute_units": device.compute_units,
            "precision": "float16", "minimum_deployment_target": "iOS16", "format": "mlprogram",
            "coremltools_version": coremltools_version(), "torch_version": torch.__version__,
            "host": platform.node(), "date": time.strftime("%Y-%m-%dT%H:%M:%S")}


_MANIFEST_MUST_MATCH = ("device", "space", "input_size", "batch", "compute_units", "precision")


def build_packages(device: Device, space: SearchSpace, out_dir: str | Path, resume: bool = False,
                   progress: bool = True, limit: int | None = None) -> Path:
    """Convert every op (and the calibration archs) of ``space``; returns the manifest path."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    manifest_path = out_dir / "manifest.json"
    header = _manifest_header(device, space)
    done: dict[str, dict[str, Any]] = {}
    if manifest_path.exists():
        if not resume:
            raise UsageError(f"{manifest_path} exists; add --resume to continue it or choose another --out")
        old = load_manifest(manifest_path)
        clash = [k for k in _MANIFEST_MUST_MATCH if old["header"].get(k) != header[k]]
        if clash:
            raise UsageError(f"cannot resume {manifest_path}: its {', '.join(clash)} differ from this build's")
        done = {p["id"]: p for p in old["packages"] if (out_dir / p["package"]).is_dir()}
    jobs = _jobs(space)[:limit]
    packages: list[dict[str, Any]] = [done[j["id"]] for j in jobs if j["id"] in done]
    todo = [j for j in jobs if j["id"] not in done]
    (out_dir / "packages").mkdir(parents=True, exist_ok=True)
    for job in tqdm(todo, desc=f"converting for {device.name}", unit="pkg", disable=not progress):
        module, x = _module_of(job, space, device.batch)
        mlmodel = convert(module, x, device.compute_units)
        relative = f"packages/{job['id']}.mlpackage"
        staging = out_dir / "packages" / f".{job['id']}.partial.mlpackage"
        shutil.rmtree(staging, ignore_errors=True)
        mlmodel.save(str(staging))
        shutil.rmtree(out_dir / relative, ignore_errors=True)
        staging.rename(out_dir / relative)   # a package is complete or absent, never half-written
        packages.append({**job, "package": relative, "input": {"name": INPUT_NAME, "shape": list(x.shape)}})
        write_json_atomic(manifest_path, {"header": header, "packages": packages})
    write_json_atomic(manifest_path, {"header": header, "packages": packages})
    return manifest_path


def load_manifest(path: str | Path) -> dict[str, Any]:
    data = read_json(path, "manifest", "; write one with: nas lut build --device iphone12")
    if not isinstance(data, dict) or data.get("header", {}).get("schema") != MANIFEST_SCHEMA \
            or not isinstance(data.get("packages"), list):
        raise UsageError(f"manifest {path} is not a {MANIFEST_SCHEMA} file")
    return data


# ------------------------------------------------------------------------------------ 2. measure (macOS)


def _require_macos() -> None:
    if platform.system() != "Darwin":
        raise UsageError(f"Core ML predictions run only on macOS (this is {platform.system()}); copy the package "
                         "folder to a Mac and run this command there")


def _time_on_mac(path: Path, shape: list[int], compute_units: str, policy) -> dict[str, Any]:
    import numpy as np

    from nas.latency.backends import time_until_stable

    with quiet_coremltools() as ct:
        model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, compute_units))
    feed = {INPUT_NAME: np.random.rand(*shape).astype(np.float32)}

    def run() -> float:
        start = time.perf_counter()
        model.predict(feed)
        return time.perf_counter() - start

    return time_until_stable(run, policy).to_dict()


def _time_on_iphone(path: Path, compute_units: str, iterations: int, remote) -> dict[str, Any]:
    import asyncio

    from nas.latency.backends import timing_of

    with quiet_coremltools() as ct:
        from coremltools.models.ml_program.experimental.perf_utils import MLModelBenchmarker

        model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, compute_units))
    measurement = asyncio.run(MLModelBenchmarker(model, device=remote).benchmark_predict(
        iterations=iterations, warmup=True))
    return timing_of(list(measurement.samples)).to_dict()   # the benchmarker's samples are in ms


def _connected_iphone():
    import asyncio

    with quiet_coremltools():
        from coremltools.models.ml_program.experimental.remote_device import Device as RemoteDevice, DeviceType

    phones = RemoteDevice.get_connected_devices(device_type=DeviceType.IPHONE)
    if not phones:
        raise UsageError("no iPhone is connected (coremltools' remote-device benchmarking needs one in developer "
                         "mode, paired with Xcode)")
    return asyncio.run(phones[0].prepare_for_model_debugging())


def measure_packages(manifest_path: str | Path, out: str | Path, on: str = "mac", resume: bool = False,
                     iterations: int = 100, progress: bool = True) -> Path:
    """Time every package of a manifest; writes a timings file after each one."""
    from tqdm import tqdm

    from nas.latency.backends import TimingPolicy

    if on not in ("mac", "iphone"):
        raise UsageError(f"--on {on!r} is not known; allowed: mac, iphone")
    manifest_path, out = Path(manifest_path), Path(out)
    manifest = load_manifest(manifest_path)
    _require_macos()
    timings: dict[str, Any] = {}
    if out.exists():
        if not resume:
            raise UsageError(f"{out} exists; add --resume to continue it")
        timings = load_timings(out)["timings"]
    header = {"schema": TIMINGS_SCHEMA, "device": manifest["header"]["device"], "on": on,
              "host": platform.node(), "mac": platform.mac_ver()[0], "coremltools_version": coremltools_version(),
              "compute_units": manifest["header"]["compute_units"], "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    remote = _connected_iphone() if on == "iphone" else None
    if remote is not None:
        header["remote_device"] = {"name": remote.name, "os_version": remote.os_version}
    todo = [p for p in manifest["packages"] if p["id"] not in timings]
    policy = TimingPolicy(warmup_seconds=0.2, max_seconds=3.0)
    for p in tqdm(todo, desc=f"measuring on {on}", unit="pkg", disable=not progress):
        path = manifest_path.parent / p["package"]
        if on == "mac":
            timings[p["id"]] = _time_on_mac(path, p["input"]["shape"], header["compute_units"], policy)
        else:
            timings[p["id"]] = _time_on_iphone(path, header["compute_units"], iterations, remote)
        write_json_atomic(out, {"header": header, "timings": timings})
    write_json_atomic(out, {"header": header, "timings": timings})
    return out


# --------------------------------------------------------------------------------------------- 3. ingest


def load_timings(path: str | Path) -> dict[str, Any]:
    """A timings file: the JSON ``nas lut measure`` writes, or a CSV ``id,median_ms[,p10_ms,p90_ms,n]``."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"timings file {path} does not exist")
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(path.open()))
        if not rows or not {"id", "median_ms"} <= set(rows[0]):
            raise UsageError(f"timings CSV {path} needs the columns id,median_ms (optional p10_ms, p90_ms, n)")
        timings = {}
        for i, r in enumerate(rows, start=2):
            try:
                m = float(r["median_ms"])
                timings[r["id"]] = {"median_ms": m, "p10_ms": float(r.get("p10_ms") or m),
                                    "p90_ms": float(r.get("p90_ms") or m), "n": int(r.get("n") or 1)}
            except ValueError:
                raise UsageError(f"timings CSV {path} line {i}: median_ms {r['median_ms']!r} is not a number") from None
        return {"header": {"schema": TIMINGS_SCHEMA, "source": f"csv {path.name}"}, "timings": timings}
    data = read_json(path, "timings file")
    if not isinstance(data, dict) or data.get("header", {}).get("schema") != TIMINGS_SCHEMA \
            or not isinstance(data.get("timings"), dict):
        raise UsageError(f"timings file {path} is not a {TIMINGS_SCHEMA} file (or a CSV id,median_ms)")
    return data


def ingest(manifest_path: str | Path, timings_path: str | Path, out: str | Path) -> LatencyTable:
    """A measured table from a manifest and the timings of its packages."""
    from nas.latency.predict import LutPredictor, fit_correction
    from nas.space import load_space

    manifest = load_manifest(manifest_path)
    timings_file = load_timings(timings_path)
    timings = timings_file["timings"]
    missing = [p["id"] for p in manifest["packages"] if p["id"] not in timings]
    if missing:
        raise UsageError(f"timings {timings_path} lack {len(missing)} of the manifest's packages "
                         f"(first: {', '.join(missing[:3])}); finish them with: nas lut measure {manifest_path} "
                         f"--out {timings_path} --resume")
    for pid, t in timings.items():
        v = t.get("median_ms") if isinstance(t, dict) else None
        if not isinstance(v, (int, float)) or not v >= 0:
            raise UsageError(f"timings {timings_path}: {pid} has median_ms {v!r}; expected a non-negative number")
    mh = manifest["header"]
    header = {
        "device": mh["device"], "backend": "coreml", "backend_version": mh["coremltools_version"],
        "torch_version": mh["torch_version"], "threads": 0, "dtype": mh["precision"], "batch": mh["batch"],
        "input_size": mh["input_size"], "space": mh["space"], "host": timings_file["header"].get("host", "unknown"),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "kind": "measured",
        "produced_by": f"nas lut ingest {Path(manifest_path).name} {Path(timings_path).name}",
        "compute_units": mh["compute_units"], "measured_on": timings_file["header"],
    }
    table = LatencyTable(header)
    for p in manifest["packages"]:
        if p["kind"] == "op":
            t = timings[p["id"]]
            table.entries[p["op"]] = {k: t.get(k, t["median_ms"]) for k in ("median_ms", "p10_ms", "p90_ms")} | \
                {"n": int(t.get("n", 1))}
    space = load_space(mh.get("space_source", mh["space"]))
    predictor = LutPredictor(table, space)
    raw, measured = [], []
    for p in manifest["packages"]:
        if p["kind"] == "arch":
            arch: Arch = space.arch_from_dict(p["arch"])
            raw.append(predictor.raw_ms(arch))
            measured.append(timings[p["id"]]["median_ms"])
            table.calibration.append({"arch_json": arch.to_json(), "measured_ms": measured[-1],
                                      "timing": timings[p["id"]]})
    if raw:
        table.header["correction"] = {**fit_correction(raw, measured),
                                      "fitted_on": f"end-to-end Core ML timings of {len(raw)} archs of the manifest"}
    table.save(out)
    return table

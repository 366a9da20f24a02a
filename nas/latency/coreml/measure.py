"""Step 2 of a Core ML table (macOS only): time each package of a manifest with coremltools, on this Mac or on
a connected iPhone through coremltools' remote-device benchmarker. Timings are written after every package;
``--resume`` continues. A timings CSV (``id,median_ms[,p10_ms,p90_ms,n]``) typed in from Xcode's Core ML
performance report is accepted by step 3 too."""
from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

from nas.errors import UsageError
from nas.fileio import write_json_atomic
from nas.latency.coreml.convert import coremltools_version, quiet_coremltools
from nas.latency.remote import INPUT_NAME
from nas.latency.remote.ingest import TIMINGS_SCHEMA, load_timings
from nas.latency.remote.manifest import load_manifest
from nas.latency.timing import TimingPolicy, time_until_stable, timing_of


def _require_macos() -> None:
    if platform.system() != "Darwin":
        raise UsageError(f"Core ML predictions run only on macOS (this is {platform.system()}); copy the package "
                         "folder to a Mac and run this command there")


def _time_on_mac(path: Path, shape: list[int], compute_units: str, policy: TimingPolicy) -> dict[str, Any]:
    import numpy as np

    with quiet_coremltools() as ct:
        model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, compute_units))
    feed = {INPUT_NAME: np.random.rand(*shape).astype(np.float32)}

    def run() -> float:
        start = time.perf_counter()
        model.predict(feed)
        return time.perf_counter() - start

    return time_until_stable(run, policy).to_dict()


def _time_on_iphone(path: Path, compute_units: str, iterations: int, remote: Any) -> dict[str, Any]:
    import asyncio

    with quiet_coremltools() as ct:
        from coremltools.models.ml_program.experimental.perf_utils import MLModelBenchmarker

        model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, compute_units))
    measurement = asyncio.run(MLModelBenchmarker(model, device=remote).benchmark_predict(
        iterations=iterations, warmup=True))
    return timing_of(list(measurement.samples)).to_dict()   # the benchmarker's samples are in ms


def _connected_iphone() -> Any:
    import asyncio

    with quiet_coremltools():
        from coremltools.models.ml_program.experimental.remote_device import Device as RemoteDevice
        from coremltools.models.ml_program.experimental.remote_device import DeviceType

    phones = RemoteDevice.get_connected_devices(device_type=DeviceType.IPHONE)
    if not phones:
        raise UsageError("no iPhone is connected (coremltools' remote-device benchmarking needs one in developer "
                         "mode, paired with Xcode)")
    return asyncio.run(phones[0].prepare_for_model_debugging())


def measure_packages(manifest_path: str | Path, out: str | Path, on: str = "mac", resume: bool = False,
                     iterations: int = 100, progress: bool = True) -> Path:
    """Time every package of a manifest; writes a timings file after each one."""
    from tqdm import tqdm

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

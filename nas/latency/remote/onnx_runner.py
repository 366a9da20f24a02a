"""The ``onnx`` package format: ops exported to ONNX here, timed by ONNX Runtime on another machine (an ARM board,
another server), ingested here.

``nas lut build --device D`` (a device registered with ``package_format="onnx"``) writes the packages, the
manifest and, beside them, a copy of this file (``measure_onnx.py``) and of ``nas/latency/timing.py``
(``nas_timing.py``). On the other machine, with only ``numpy`` and ``onnxruntime`` installed:

    python3 measure_onnx.py manifest.json --out timings.json [--resume]

or ``nas lut measure manifest.json --out timings.json`` where nas is installed. Then, here:
``nas lut ingest manifest.json timings.json``.

Everything above ``write_package`` runs without nas (and without torch): keep it to the standard library, numpy
and onnxruntime. The timing rule is nas's own (warm-up, repeat until the median is stable), the same one every
local backend uses.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    from nas.latency.timing import TimingPolicy, time_until_stable
except ImportError:     # stand-alone beside the packages: the copy of nas/latency/timing.py the build put there
    from nas_timing import TimingPolicy, time_until_stable  # type: ignore[no-redef]

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from nas.latency.devices import Device

TIMINGS_SCHEMA = "nas-timings/1"           # nas.latency.remote.ingest reads it
POLICY = TimingPolicy(warmup_seconds=0.2, max_seconds=3.0)   # as the Core ML runner: a package per call


def _write_json_atomic(path: Path, data: Any) -> None:
    """As nas.fileio's: a staging file renamed over the target, so a kill leaves the old file or the new one."""
    fd, staging = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(staging, path)


def _time_package(path: Path, shape: list[int], threads: int) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.random.rand(*shape).astype(np.float32)}

    def run() -> float:
        start = time.perf_counter()
        session.run(None, feed)
        return time.perf_counter() - start

    return time_until_stable(run, POLICY).to_dict()


def measure_packages(manifest_path: str | Path, out: str | Path, resume: bool = False, progress: bool = True,
                     **options: Any) -> Path:
    """Time every package of a manifest with ONNX Runtime here; the timings file is rewritten after each one."""
    import onnxruntime as ort

    if options:
        raise ValueError(f"the onnx runner takes no options; got {', '.join(options)}")
    manifest_path, out = Path(manifest_path), Path(out)
    manifest = json.loads(manifest_path.read_text())
    mh = manifest["header"]
    if mh.get("package_format") != "onnx":
        raise ValueError(f"{manifest_path} lists {mh.get('package_format', 'coreml')} packages, not onnx ones")
    timings: dict[str, Any] = {}
    if out.exists():
        if not resume:
            raise FileExistsError(f"{out} exists; add --resume to continue it")
        timings = json.loads(out.read_text())["timings"]
    header = {"schema": TIMINGS_SCHEMA, "device": mh["device"], "host": platform.node(),
              "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
              "system": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
              "runtime": "onnxruntime", "runtime_version": ort.__version__, "threads": mh.get("threads", 1),
              "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    todo = [p for p in manifest["packages"] if p["id"] not in timings]
    started = time.perf_counter()
    for k, p in enumerate(todo, start=1):
        timings[p["id"]] = _time_package(manifest_path.parent / p["package"], p["input"]["shape"],
                                         int(mh.get("threads", 1)))
        _write_json_atomic(out, {"header": header, "timings": timings})
        if progress and sys.stderr.isatty():     # one line rewritten in place; none in a log
            left = (time.perf_counter() - started) / k * (len(todo) - k)
            print(f"\rmeasuring on {platform.node()}: {k}/{len(todo)} packages, ~{left:.0f} s left",
                  end="", file=sys.stderr, flush=True)
    if progress and todo and sys.stderr.isatty():
        print(file=sys.stderr)
    _write_json_atomic(out, {"header": header, "timings": timings})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Time the ONNX packages of a nas manifest with ONNX Runtime here.")
    p.add_argument("manifest", help="manifest.json beside the packages")
    p.add_argument("--out", required=True, help="timings JSON (rewritten after every package)")
    p.add_argument("--resume", action="store_true", help="continue a timings file")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    try:
        out = measure_packages(args.manifest, args.out, args.resume, not args.no_progress)
    except (OSError, ValueError, KeyError) as exc:     # one line, as nas's own refusals
        print(f"measure_onnx: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"measure_onnx: error: {exc}; install: pip install numpy onnxruntime", file=sys.stderr)
        return 2
    print(f"wrote {out}; turn it into a table where nas is installed: nas lut ingest {args.manifest} {out}")
    return 0


# ------------------------------------------------------------------ the nas side (needs torch; not run there)


def write_package(module: nn.Module, example: torch.Tensor, device: Device, path: Path) -> None:
    """``module`` exported to ONNX at ``path``, as the local ``onnxruntime`` backend exports it."""
    import torch

    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["y"])


def describe(device: Device) -> dict[str, Any]:
    """What a manifest of ONNX packages records of their export."""
    import torch

    return {"precision": device.dtype, "format": "onnx opset 17", "converter": "torch.onnx (TorchScript-based)",
            "converter_version": torch.__version__}


if __name__ == "__main__":
    sys.exit(main())

"""Step 3 of a table measured elsewhere (any OS): a measured table from a manifest and the timings of its
packages, with the end-to-end correction fitted on the whole-arch timings exactly as ``nas lut build`` does for
local devices."""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from nas.errors import UsageError
from nas.fileio import read_json
from nas.latency.correction import make_point, new_session
from nas.latency.remote.manifest import load_manifest, package_format_of
from nas.latency.table import LatencyTable, attach_correction, new_header
from nas.schemas import check
from nas.space import Arch, load_space

TIMINGS_SCHEMA = "nas-timings/1"                  # written by every format's runner
OLD_TIMINGS_SCHEMAS = ("nas-coreml-timings/1",)   # still read


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
    if not isinstance(data, dict) or not isinstance(data.get("header"), dict) \
            or data["header"].get("schema") not in (TIMINGS_SCHEMA, *OLD_TIMINGS_SCHEMAS) \
            or not isinstance(data.get("timings"), dict):
        raise UsageError(f"timings file {path} is not a {TIMINGS_SCHEMA} file (or a CSV id,median_ms)")
    return check(data, "timings file", str(path))


def ingest(manifest_path: str | Path, timings_path: str | Path, out: str | Path) -> LatencyTable:
    """A measured table from a manifest and the timings of its packages."""
    from nas.latency.devices import get_device

    manifest = load_manifest(manifest_path)
    timings_file = load_timings(timings_path)
    timings = timings_file["timings"]
    missing = [p["id"] for p in manifest["packages"] if p["id"] not in timings]
    if missing:
        raise UsageError(f"timings {timings_path} lack {len(missing)} of the manifest's packages "
                         f"(first: {', '.join(missing[:3])}); finish them with: nas lut measure {manifest_path} "
                         f"--out {timings_path} --resume")
    known = {p["id"] for p in manifest["packages"]}
    strangers = [pid for pid in timings if pid not in known]
    if strangers:   # timings of another manifest (or another build of it) would be priced as this one's
        raise UsageError(f"timings {timings_path} hold {len(strangers)} ids that are not in {manifest_path} "
                         f"(first: {', '.join(map(str, strangers[:3]))}); measure this manifest's packages")
    for pid, t in timings.items():
        for key in ("median_ms", "p10_ms", "p90_ms"):
            v = t.get(key) if isinstance(t, dict) else None
            if (v is None and key != "median_ms") or (isinstance(v, (int, float)) and not isinstance(v, bool)
                                                       and math.isfinite(v) and v > 0):
                continue
            raise UsageError(f"timings {timings_path}: {pid} has {key} {v!r}; expected a positive, finite number "
                             "of milliseconds")
    mh = manifest["header"]
    space = load_space(mh.get("space_source", mh["space"]))
    device = get_device(mh["device"])
    fmt = package_format_of(manifest)
    runtime = timings_file["header"].get("runtime_version")    # the runner's (onnxruntime), else the converter's
    header = new_header(
        device, space, kind="measured", backend=device.backend,
        backend_version=runtime or mh.get("converter_version") or mh.get("coremltools_version", "unknown"),
        produced_by=f"nas lut ingest {Path(manifest_path).name} {Path(timings_path).name}",
        torch_version=mh["torch_version"], threads=mh.get("threads", 0) if fmt.name != "coreml" else 0,
        dtype=mh["precision"], batch=mh["batch"], host=timings_file["header"].get("host", "unknown"),
        package_format=fmt.name, measured_on=timings_file["header"],
        **({"compute_units": mh["compute_units"]} if "compute_units" in mh else {}))
    header.pop("cpu")   # this machine's processor says nothing of the other machine's
    table = LatencyTable(header)
    session = new_session()
    for p in manifest["packages"]:
        t = timings[p["id"]]
        if p["kind"] == "op":
            table.entries[p["op"]] = {k: t.get(k, t["median_ms"]) for k in ("median_ms", "p10_ms", "p90_ms")} | \
                {"n": int(t.get("n", 1))}
        elif p["kind"] == "arch":
            arch: Arch = space.arch_from_dict(p["arch"])
            table.calibration.append(make_point(arch, t["median_ms"], "ingest", session, t))
    attach_correction(table, space, f"end-to-end {fmt.name} timings of {len(table.calibration)} archs of the "
                                    "manifest")
    table.save(out)
    return table

"""``nas lut build``: measure every distinct op of a space on a device, then fit the end-to-end correction.

The table file is the checkpoint: it is rewritten atomically after every measurement, so a killed build loses
nothing it measured, and ``--resume`` measures only what the file lacks. With Ray, each measurement is a task that
asks for the custom resource ``device:<name>`` (1 unit): the node started with that resource runs them, one at a
time per unit, and the driver writes results as they arrive.
"""
from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from nas import install_hint
from nas.errors import UsageError
from nas.latency.backends import Backend
from nas.latency.correction import make_point, new_session
from nas.latency.devices import Device, get_device
from nas.latency.fidelity import FLOOR_ARCHS
from nas.latency.ops import Op, space_ops
from nas.latency.paths import local_table_path
from nas.latency.precision import get_precision
from nas.latency.reference import reference_op, reference_summary
from nas.latency.table import CALIBRATION_SEED_BASE, LatencyTable, attach_correction, new_header, trust_warnings
from nas.latency.timing import Timing, TimingPolicy
from nas.latency.weights import pooled_init
from nas.machine import LOAD_SAMPLE_S, load_now
from nas.space import DEFAULT_SPACE, Arch, SearchSpace, load_space

REFERENCE_EVERY = 100      # jobs between two timings of the reference workload

# Which header fields must agree for --resume to continue a table rather than mix two measurement setups.
_RESUME_MUST_MATCH = ("device", "backend", "threads", "batch", "dtype", "precision", "space", "input_size",
                      "torch_version")


# ---------------------------------------------------------------------------------------------- measuring


def _backend(device: Device, space: SearchSpace, recipe: dict[str, Any] | None) -> Backend:
    """The device's backend; a quantised precision's backend with the recipe given, else its table's (the
    recipe the table was measured with is the one every later int8 model of this device uses)."""
    backend = device.make_backend()
    if get_precision(device.precision).quantized:
        from nas.latency.quantize import Int8Recipe
        from nas.latency.table import table_recipe

        backend.recipe = Int8Recipe.from_dict(recipe) if recipe is not None else table_recipe(device.name, space)
    return backend


def measure_op(device: Device, op_key: str, space: SearchSpace | None = None,
               recipe: dict[str, Any] | None = None) -> Timing:
    with pooled_init():      # timing only: no random-initialisation cost (nas.latency.weights)
        module, x = Op.from_key(op_key).build(device.batch)
    return _backend(device, space or load_space(DEFAULT_SPACE), recipe).measure(module, x)


def measure_arch(device: Device, arch: Arch, space: SearchSpace, policy: TimingPolicy | None = None,
                 recipe: dict[str, Any] | None = None) -> Timing:
    """End to end: the whole plain model of ``arch`` with the same backend as the ops (and its timing policy,
    unless ``policy`` says otherwise; its int8 recipe, unless ``recipe`` says otherwise)."""
    from supernet.static import EfficientFormerNet

    with pooled_init():
        model = EfficientFormerNet.from_arch(arch, space)
    x = torch.randn(device.batch, 3, space.input_size, space.input_size)
    backend = _backend(device, space, recipe)
    if policy is not None:
        backend.policy = policy
    return backend.measure(model, x)


def _run_job(device_name: str, job: tuple[str, str], space: SearchSpace,
             recipe: dict[str, Any] | None = None) -> tuple[tuple[str, str], dict]:
    """One measurement (an op signature, or an arch's JSON for end to end); also what a Ray task runs."""
    device = get_device(device_name)
    kind, payload = job
    if kind == "op":
        timing = measure_op(device, payload, space, recipe)
    else:
        timing = measure_arch(device, Arch.from_json(payload, space), space, recipe=recipe)
    return job, timing.to_dict()


def _serial(device: Device, jobs: list[tuple[str, str]], space: SearchSpace,
            recipe: dict[str, Any] | None) -> Iterable[tuple[tuple[str, str], dict]]:
    for job in jobs:
        yield _run_job(device.name, job, space, recipe)


def _on_ray(device: Device, jobs: list[tuple[str, str]], space: SearchSpace, recipe: dict[str, Any] | None,
            address: str | None, workers: int) -> Iterable[tuple[tuple[str, str], dict]]:
    try:
        import ray
    except ImportError:
        raise UsageError(f"--ray-address/--workers need Ray: {install_hint('ray')}") from None
    resource = f"device:{device.name}"
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            from nas.ray_cluster import join
            join(ray, address, log_to_driver=False)
        else:   # a local Ray whose `workers` units of the device resource allow that many measurements at once
            ray.init(num_cpus=workers, resources={resource: workers}, include_dashboard=False, log_to_driver=False,
                     _node_ip_address="127.0.0.1")
    try:
        if not ray.cluster_resources().get(resource):
            raise UsageError(f"no node of the Ray cluster has the resource {resource!r}; start the node that owns "
                             f"the device with: ray start --address=HEAD --resources='{{\"{resource}\": 1}}'")
        task = ray.remote(_run_job).options(resources={resource: 1}, num_cpus=1, max_retries=3)
        pending = [task.remote(device.name, job, space, recipe) for job in jobs]   # the space travels as itself
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        if started_here:
            ray.shutdown()


# ---------------------------------------------------------------------------------------------- the build


def interleave(ops: list[tuple[str, str]], archs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """One round's jobs: the calibration archs spread evenly among the ops, the last at the end. The correction
    relates the archs' timings to their op sums, so both must see the same states of the machine: timed after
    every op, the archs would carry the state of the build's last minute into the scale (a machine whose speed
    wanders by ±10% over minutes would shift every prediction by that), where spread they sample the states the
    op entries were measured in."""
    if not archs:
        return list(ops)
    out: list[tuple[str, str]] = []
    per = len(ops) / len(archs)
    for i, arch in enumerate(archs):
        out += ops[round(i * per):round((i + 1) * per)]
        out.append(arch)
    return out


def _merge_round(entry: dict[str, Any] | None, timing: dict[str, Any], stamp: str) -> dict[str, Any]:
    """An entry with one more round: the median of its round medians, the widest p10..p90, all samples counted."""
    if entry is None:
        return {**timing, "rounds_ms": [timing["median_ms"]], "measured_at": stamp}
    rounds = list(entry.get("rounds_ms", [entry["median_ms"]])) + [timing["median_ms"]]
    return {"median_ms": statistics.median(rounds), "p10_ms": min(entry["p10_ms"], timing["p10_ms"]),
            "p90_ms": max(entry["p90_ms"], timing["p90_ms"]), "n": entry["n"] + timing["n"], "rounds_ms": rounds,
            "measured_at": stamp}


def _int8_recipe(device: Device, space: SearchSpace, table: LatencyTable, progress: bool) -> dict[str, Any] | None:
    """A quantised precision's recipe: the resumed table's, else chosen now by measurement on the space's largest
    arch (it holds every kind of block) and written into the header, with the evidence."""
    if not get_precision(device.precision).quantized:
        return None
    if not table.header.get("quantization"):
        from nas.latency.quantize import recipe_for_space

        table.header["quantization"] = recipe_for_space(space, device.batch, device.threads, progress=progress)
    return dict(table.header["quantization"])


def build_table(device_name: str, space_source: str = DEFAULT_SPACE, out: str | Path | None = None,
                resume: bool = False, calibrate: int = 10, ray_address: str | None = None, workers: int = 0,
                progress: bool = True, produced_by: str = "",
                on_measured: Callable[[int], None] | None = None, rounds: int = 1) -> tuple[LatencyTable, Path]:
    """Measure every op of the space and ``calibrate`` random archs end to end, each ``rounds`` times in separate
    passes (all of round 1, then all of round 2: interleaved in time, not back to back); an entry is the median of
    its round medians (``benchmarks/timing_statistics.py``: on this shared machine that statistic repeats ~3x better
    than one back-to-back measurement, and better than the minimum of round medians)."""
    device = get_device(device_name)
    ok, why = device.measurable_here()
    if not ok:
        raise UsageError(f"device {device.name!r} cannot be measured here: {why}")
    space = load_space(space_source)
    out = Path(out) if out is not None else local_table_path(device.name, space.name)
    backend = device.make_backend()
    header = new_header(device, space, kind="measured", backend=backend.name, backend_version=backend.version,
                        produced_by=produced_by or " ".join(["nas"] + sys.argv[1:]), rounds=rounds)
    if out.exists():
        if not resume:
            raise UsageError(f"{out} exists; pass --resume to continue it, or choose another --out")
        table = LatencyTable.load(out)
        for f in _RESUME_MUST_MATCH:
            if table.header.get(f) != header[f]:
                raise UsageError(f"cannot resume {out}: it was measured with {f} = {table.header.get(f)!r}, "
                                 f"this run has {header[f]!r}; use another --out")
        table.header["rounds"] = max(rounds, table.header.get("rounds", 1))
    else:
        table = LatencyTable(header)
    recipe = _int8_recipe(device, space, table, progress)     # None for a float precision

    ops = [op.key for op in space_ops(space)]
    calib = [space.sample(seed=CALIBRATION_SEED_BASE + i) for i in range(calibrate)]
    points = {c["arch_json"]: c for c in table.calibration}
    done = {**{k: len(e.get("rounds_ms", [0])) for k, e in table.entries.items()},
            **{k: len(c.get("rounds_ms", [0])) for k, c in points.items()}}
    jobs = [(kind, key) for r in range(rounds)             # round-major: every op once, then every op again
            for kind, key in interleave([("op", k) for k in ops], [("arch", a.to_json()) for a in calib])
            if done.get(key, 0) <= r]
    # the machine's floor on the day (nas.latency.fidelity): with one round, a few calibration archs once more, in
    # a pass of their own at the end; their points become the median of both passes
    floor_archs = [a.to_json() for a in calib[:FLOOR_ARCHS]] if rounds < 2 else []
    jobs += [("arch", key) for key in floor_archs if done.get(key, 0) < 2]
    session = new_session()
    total = rounds * (len(ops) + len(calib)) + len(floor_archs)

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, initial=total - len(jobs), unit="job", desc=f"lut {device.name}",
                   file=sys.stderr, dynamic_ncols=True)
    results = (_on_ray(device, jobs, space, recipe, ray_address, workers or 1) if (ray_address or workers)
               else _serial(device, jobs, space, recipe))
    # the reference workload, timed before, every REFERENCE_EVERY jobs and after (serial builds: the jobs run here),
    # so the header says how much the machine itself moved while the table was measured
    reference: list[dict[str, Any]] = list((table.header.get("reference") or {}).get("samples", []))
    timed_here = not (ray_address or workers)

    def time_reference_now(done: int) -> None:
        if timed_here and jobs:
            reference.append({"after_jobs": done, "median_ms": measure_op(device, reference_key, space,
                                                                          recipe).median_ms,
                              "at": time.strftime("%Y-%m-%dT%H:%M:%S")})
            table.header["reference"] = {"op": reference_key, **reference_summary(reference)}

    reference_key = reference_op(space)
    table.header["load"] = load_now(LOAD_SAMPLE_S)          # before any measuring: what else this machine was running
    time_reference_now(0)
    try:
        for k, ((kind, payload), timing) in enumerate(results, start=1):
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            if kind == "op":
                table.entries[payload] = _merge_round(table.entries.get(payload), timing, stamp)
            elif payload in points:
                merged = _merge_round(points[payload].get("timing"), timing, stamp)
                points[payload].update(timing=merged, measured_ms=merged["median_ms"])
            else:
                points[payload] = make_point(Arch.from_json(payload, space), timing["median_ms"], "build", session,
                                             _merge_round(None, timing, stamp))
                table.calibration.append(points[payload])
            if k % REFERENCE_EVERY == 0:
                time_reference_now(k)
            table.save(out)
            if bar:
                bar.update(1)
            if on_measured:
                on_measured(len(table.entries))
    finally:
        if bar:
            bar.close()

    time_reference_now(len(jobs))
    n = len(table.calibration)
    attach_correction(table, space, f"end-to-end measurements of {n} random archs "
                                    f"(seeds {CALIBRATION_SEED_BASE}..{CALIBRATION_SEED_BASE + n - 1})")
    table.header["warnings"] = trust_warnings(table.header)
    for warning in table.header["warnings"]:
        print(f"nas: warning: {out}: {warning}", file=sys.stderr)
    table.save(out)
    return table, out

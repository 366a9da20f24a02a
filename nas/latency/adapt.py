"""``nas lut adapt``: a table for a new device from an existing table and N archs measured end to end on it.

A full build measures every op of the space (763 on ``efficientformer``, minutes); a device that can be measured end
to end but has no table yet is often close to one that has: another thread count, another runtime, a sibling CPU.
Adaptation measures N random archs on the new device and fits a transfer of the source table: one scale per op
kind (stem, downsampling, MB4D, MB3D, flat, head) and an offset,

    measured(arch) ~ offset + sum_k scale_k * (sum of the arch's kind-k entries in the source table),

by non-negative least squares, shrunk toward one common scale (ridge, its strength the largest whose leave-one-out
error is within one standard error of the best) so that a few archs cannot send one kind's scale astray. The new
table holds the source's entries times their kind's scale, ``kind: adapted``, the N archs as calibration points,
and the fit's leave-one-out error: its held-out error on those archs, which ``nas lut validate`` can confirm on
others.

``adapt_table`` is the Python entry for devices a user registered (``nas.latency.devices.register_device``).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import nnls

from nas.errors import UsageError
from nas.latency.correction import make_point, new_session
from nas.latency.devices import get_device
from nas.latency.ops import arch_ops
from nas.latency.table import LatencyTable, new_header, trust_warnings
from nas.latency.timing import TimingPolicy
from nas.machine import LOAD_SAMPLE_S, load_now
from nas.space import Arch, SearchSpace, load_space

ADAPT_SEED_BASE = 30_000
# Few-shot means few seconds: one warm-up run and the median of a few (3 by default), not the build's >= 20. For a
# fixed time, more archs beat more repeats: the fit averages the per-arch noise over N archs (its leave-one-out
# error shows what is left), and each arch's building and warm-up cost is paid once (benchmarks/adapt.py compares).
DEFAULT_REPEATS = 3


def quick_policy(repeats: int = DEFAULT_REPEATS) -> TimingPolicy:
    return TimingPolicy(warmup_seconds=0.0, min_warmup=1, round_size=repeats, min_repeats=repeats,
                        max_repeats=repeats, max_seconds=0.0)


RIDGE_GRID = (0.0, 0.01, 0.1, 1.0, 10.0, 100.0)    # x the mean squared feature: from free scales to one scale


def _kind(op_key: str) -> str:
    return op_key.split("|")[0]


def kind_sums(table: LatencyTable, archs: Sequence[Arch], space: SearchSpace, kinds: Sequence[str]) -> np.ndarray:
    """``[arch, kind]``: the sum of each arch's source entries of each op kind."""
    out = np.zeros((len(archs), len(kinds)))
    for i, arch in enumerate(archs):
        for op in arch_ops(arch, space):
            out[i, kinds.index(_kind(op.key))] += table.entries[op.key]["median_ms"]
    return out


def _fit(x: np.ndarray, y: np.ndarray, ridge: float) -> tuple[np.ndarray, float]:
    """Non-negative (scale per kind, offset) minimising the squared error plus ``ridge`` x the squared distance of
    each scale to the common scale of a one-scale fit; both sides in relative terms (rows divided by y), so that a
    large arch does not outweigh small ones."""
    w = 1.0 / y
    common = float(np.sum(w * w * x.sum(1) * y) / np.sum(w * w * x.sum(1) ** 2))
    a = np.hstack([x * w[:, None], w[:, None]])
    b = np.ones_like(y)
    if ridge > 0:
        k = x.shape[1]
        penalty = np.sqrt(ridge * np.mean((x * w[:, None]) ** 2)) * np.hstack([np.eye(k), np.zeros((k, 1))])
        a = np.vstack([a, penalty])
        b = np.concatenate([b, penalty[:, :k] @ np.full(k, common)])
    coef, _ = nnls(a, b)
    return coef[:-1], float(coef[-1])


def _loo_relative(x: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    out = np.zeros(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        scales, offset = _fit(x[keep], y[keep], ridge)
        out[i] = y[i] / (x[i] @ scales + offset) - 1
    return out


def one_standard_error_choice(loo: dict[float, np.ndarray]) -> float:
    """The strongest shrinkage whose mean absolute leave-one-out error is within one standard error of the best
    (the one-standard-error rule): with few noisy archs the minimum itself is noise, and picking it let 10 archs
    zero out whole op kinds (benchmarks/adapt.py)."""
    errors = {r: np.abs(v) for r, v in loo.items()}
    best = min(errors, key=lambda r: (float(errors[r].mean()), -r))
    limit = errors[best].mean() + errors[best].std(ddof=1) / np.sqrt(len(errors[best]))
    return max(r for r, e in errors.items() if e.mean() <= limit)


def _recipe_for(device: Any, space: Any, source: LatencyTable, progress: bool) -> dict[str, Any] | None:
    """A quantised device's recipe: the source table's when it is of that precision, else chosen now on this
    machine (``nas.latency.quantize.choose_recipe`` on the space's largest arch, 3 rounds: ~1 min on the paper's
    space), and recorded in the adapted table as a build records it."""
    from nas.latency.precision import get_precision

    if not get_precision(device.precision).quantized:
        return None
    if source.header.get("precision") == device.precision and source.header.get("quantization"):
        return dict(source.header["quantization"])
    from nas.latency.quantize import recipe_for_space

    return recipe_for_space(space, device.batch, device.threads, rounds=3, progress=progress)


def adapt_table(device_name: str, source: str | Path, n: int, out: str | Path,
                seed_base: int = ADAPT_SEED_BASE, progress: bool = True,
                measured_ms: Sequence[float] | None = None,
                repeats: int = DEFAULT_REPEATS) -> tuple[LatencyTable, dict[str, Any]]:
    """Adapt the table at ``source`` to ``device_name`` from ``n`` archs measured there end to end, each the median
    of ``repeats`` runs after one warm-up (``measured_ms`` supplies their latencies instead, for archs measured
    elsewhere: seeds ``seed_base..``)."""
    from nas.latency.validate import measure_rounds

    device = get_device(device_name)
    if repeats < 1:
        raise UsageError(f"--repeats {repeats}: each arch needs at least one timed run (accepted: 1 or more; "
                         f"default {DEFAULT_REPEATS})")
    if n < 3:
        raise UsageError(f"--n {n}: adaptation needs at least 3 archs measured end to end (accepted: 3 or more; "
                         "20 is a good start)")
    src = LatencyTable.load(source)
    if src.header["kind"] == "estimated":
        raise UsageError(f"--from {source} is an estimated table; adapt a measured one (nas lut build)")
    space = load_space(src.header["space"])
    started, load = time.perf_counter(), load_now(LOAD_SAMPLE_S)     # the load before this command measures anything
    archs = [space.sample(seed=seed_base + i) for i in range(n)]
    measured_here = measured_ms is None
    quantization = None
    if measured_ms is None:
        ok, why = device.measurable_here()
        if not ok:
            raise UsageError(f"device {device.name!r} cannot be measured here: {why}")
        quantization = _recipe_for(device, space, src, progress)
        measured_ms = measure_rounds(device.name, archs, space, 1, progress, "adapt", quick_policy(repeats),
                                     recipe=quantization)[0]
    y = np.asarray(measured_ms, float)
    kinds = sorted({_kind(k) for k in src.entries})
    x = kind_sums(src, archs, space, kinds)
    # fewer than two archs per fitted parameter: the data cannot choose; keep the scales near the common one
    grid = RIDGE_GRID if n >= 2 * (len(kinds) + 1) else tuple(r for r in RIDGE_GRID if r >= 10.0)
    loo = {ridge: _loo_relative(x, y, ridge) for ridge in grid}
    ridge = one_standard_error_choice(loo)
    scales, offset = _fit(x, y, ridge)
    by_kind = dict(zip(kinds, (float(s) for s in scales)))

    backend = device.make_backend()
    header = new_header(device, space, kind="adapted", backend=backend.name, backend_version=backend.version,
                        produced_by=" ".join(["nas"] + sys.argv[1:]) or "nas.latency.adapt.adapt_table")
    session = new_session()
    table = LatencyTable(header)
    for key, entry in src.entries.items():
        s = by_kind[_kind(key)]
        table.entries[key] = {**{f: entry[f] * s for f in ("median_ms", "p10_ms", "p90_ms")}, "n": 0}
    table.calibration = [make_point(a, m, "adapt", session) for a, m in zip(archs, y)]
    residuals = loo[ridge]
    table.header["correction"] = {
        "scale": 1.0, "offset_ms": offset, "n": n, "residuals": sorted(float(r) for r in residuals),
        "fitted_on": f"end-to-end measurements of {n} random archs on {device.name} (seeds {seed_base}..)",
        "drift": 1.0, "drift_session": session}
    report = {"device": device.name, "from": str(source), "from_device": src.header["device"], "n": n,
              "repeats": repeats if measured_here else None,
              "scales": by_kind, "offset_ms": offset, "ridge": ridge,
              "loo_mape": float(100 * np.mean(np.abs(residuals))),
              "loo_within_10pct": float(np.mean(np.abs(residuals) <= 0.10)),
              "seconds": time.perf_counter() - started}
    table.header["adapted"] = {k: v for k, v in report.items() if k not in ("device", "seconds")}
    if quantization is not None:
        table.header["quantization"] = quantization
    table.header["load"] = load
    table.header["warnings"] = trust_warnings({**table.header, "correction": {"mape_after": report["loo_mape"]}})
    for warning in table.header["warnings"]:       # e.g. 149.5% held-out error at load 7, written without a word
        print(f"nas: warning: {out}: {warning}", file=sys.stderr)
    report["warnings"] = table.header["warnings"]
    table.save(out)
    return table, {**report, "out": str(out)}

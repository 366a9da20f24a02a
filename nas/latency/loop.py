"""The closed loop around a measured table: end-to-end measurements made after the build (``--verify`` winners,
``nas lut validate``, ``nas lut check``) are kept with the table as calibration points, ``refit_table`` refits the
correction from all of them (seconds, no op is measured again), and ``check_table`` says whether the table still
holds on this machine today: it times the reference workload the build timed, and a few new archs against their
prediction intervals.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from nas.latency.correction import DEFAULT_COVERAGE, CorrectionFit, make_point, new_session, refit
from nas.latency.reference import reference_op
from nas.latency.table import LatencyTable, add_points
from nas.space import SearchSpace, load_space

CHECK_SEED_BASE = 20_000     # archs `nas lut check` measures: seeds no build or validation uses
CHECK_TOLERANCE = 0.05       # the table holds while the median error of the checked archs is within this


def refit_table(path: str | Path, space: SearchSpace | None = None) -> tuple[LatencyTable, CorrectionFit | None]:
    table = LatencyTable.load(path)
    space = space or load_space(table.header["space"])
    sources: dict[str, int] = {}
    for p in table.calibration:
        sources[p.get("source", "build")] = sources.get(p.get("source", "build"), 0) + 1
    what = ", ".join(f"{n} {s}" for s, n in sources.items())
    fit = refit(table, space, f"end-to-end measurements of {len(table.calibration)} archs ({what}), refitted "
                              f"{time.strftime('%Y-%m-%dT%H:%M:%S')}")
    table.save(path)
    return table, fit


def time_reference(device_name: str, space: SearchSpace, recipe: dict[str, Any] | None = None) -> float:
    from nas.latency.build import measure_op
    from nas.latency.devices import get_device

    return measure_op(get_device(device_name), reference_op(space), space, recipe).median_ms


# ---------------------------------------------------------------------------------------------------- check


def check_table(path: str | Path, device_name: str, n: int = 5, coverage: float = DEFAULT_COVERAGE,
                tolerance: float = CHECK_TOLERANCE, refit_after: bool = False,
                progress: bool = True) -> dict[str, Any]:
    """Time the reference workload and ``n`` new random archs; the table holds when the archs' median relative error
    is within ``tolerance``. The archs are kept as calibration points (one session, so their drift factor is
    fitted on its own); ``refit_after`` refits the correction from every point, this check's included."""
    from nas.latency.predict import LutPredictor
    from nas.latency.validate import coverage_of, measure_rounds, next_seed_base

    predictor = LutPredictor.from_file(path)
    space = predictor.space
    seed_base = next_seed_base(predictor.table.calibration, "check", CHECK_SEED_BASE)
    archs = [space.sample(seed=seed_base + i) for i in range(n)]
    predicted = [predictor.predict(a) for a in archs]
    session = new_session()
    recipe = predictor.table.header.get("quantization")       # an int8 table's: what it priced
    reference_now = time_reference(device_name, space, recipe)
    measured = measure_rounds(device_name, archs, space, 1, progress, "check", recipe=recipe)[0]
    errors = [p / m - 1 for p, m in zip(predicted, measured)]
    median_error = statistics.median(errors)
    holds = abs(median_error) <= tolerance
    built = (predictor.table.header.get("reference") or {}).get("median_ms")
    report: dict[str, Any] = {
        "table": str(path), "device": device_name, "space": space.name, "n": n, "tolerance": tolerance,
        "holds": holds, "median_error": median_error,
        "reference": {"op": reference_op(space), "now_ms": reference_now, "at_build_ms": built,
                      "ratio": reference_now / built if built else None},
        "intervals": coverage_of(predictor, archs, measured, coverage),
        "rows": [{"arch": a.to_dict(), "predicted_ms": p, "measured_ms": m} for a, p, m in
                 zip(archs, predicted, measured)],
    }
    add_points(path, [make_point(a, m, "check", session) for a, m in zip(archs, measured)])
    if refit_after:
        table, fit = refit_table(path, space)
        assert fit is not None
        after = LutPredictor(table, space, path)
        report["refit"] = {"drift": fit.current_drift, "scale": table.header["correction"]["scale"],
                           "offset_ms": table.header["correction"]["offset_ms"], "points": fit.n,
                           "median_error_after": statistics.median(after.predict(a) / m - 1
                                                                   for a, m in zip(archs, measured))}
    return report

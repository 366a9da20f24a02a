"""How far a measured table can be trusted on the day it was built: its held-out error beside the machine's floor.

Two figures, both from the build's own end-to-end measurements, so they cost no extra table time beyond a few
archs timed twice:

- **held out**: the leave-one-out errors of the correction on its calibration archs (each arch predicted by the
  correction fitted without it; ``nas.latency.correction``), as prediction errors ``predicted / measured - 1``:
  signed bias (median), MAPE, and the half-width that 90% of archs fall within.
- **floor**: the machine's own repeatability on the same day: calibration archs measured in two separate passes,
  the second against the first (what ``nas lut validate`` calls the floor). A table cannot predict a measurement
  better than the measurement repeats.

Written to the header as ``fidelity`` (``nas lut build``, ``refit``) and shown by ``nas predict``, ``nas devices``
and the search summary ("within ±x% on this machine") instead of a figure from another day.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# calibration archs a build with one round measures a second time, in a pass of their own at the end: the floor
FLOOR_ARCHS = 4
COVERAGE = 0.9        # "90% of archs within ±x%"


def _errors(errors: Sequence[float]) -> dict[str, float]:
    import numpy as np  # here, not above: the CLI imports this module (for words) at start-up

    e = np.asarray(errors, float)
    return {"n": int(e.size), "bias_pct": float(100 * np.median(e)), "mape": float(100 * np.mean(np.abs(e))),
            "within_10pct": float(np.mean(np.abs(e) <= 0.10)),
            "within_pct_at_90": float(100 * np.quantile(np.abs(e), COVERAGE, method="higher"))}


def held_out(residuals: Sequence[float]) -> dict[str, float] | None:
    """Prediction errors from leave-one-out residuals ``measured / predicted - 1`` (what the header keeps)."""
    if len(residuals) < 2:
        return None
    return _errors([1 / (1 + r) - 1 for r in residuals])


def floor(points: Sequence[dict[str, Any]]) -> dict[str, float] | None:
    """Round 2 against round 1 of the calibration points measured in at least two passes (``None`` under 2)."""
    pairs = [p["timing"]["rounds_ms"][:2] for p in points if len((p.get("timing") or {}).get("rounds_ms", [])) >= 2]
    if len(pairs) < 2:
        return None
    return _errors([second / first - 1 for first, second in pairs])


def fidelity(header: dict[str, Any], points: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The header's ``fidelity`` block, from its correction's residuals and the points; ``None`` without them.

    Where no correction was kept (it made its own points worse), the residuals are the raw op sums' errors on the
    points, which nothing was fitted to: held out as they stand, and what the table's predictions are, so the
    table still says how far it holds (``uncorrected``)."""
    correction = header.get("correction") or {}
    if not correction.get("residuals"):
        return None
    out: dict[str, Any] = {"held_out": held_out(correction["residuals"]), "floor": floor(points),
                           "date": header.get("date"), "load_1m": (header.get("load") or {}).get("load_1m"),
                           **({"uncorrected": True} if correction.get("note") else {})}
    return out if out["held_out"] else None


def words(block: dict[str, Any] | None) -> str | None:
    """One line for people: ``within ±3.1% on this machine (90% of 10 held-out archs; ...)``."""
    if not block or not block.get("held_out"):
        return None
    h, f = block["held_out"], block.get("floor")
    line = (f"within ±{h['within_pct_at_90']:.1f}% on this machine ({COVERAGE:.0%} of {h['n']} held-out archs; "
            f"MAPE {h['mape']:.1f}%, bias {h['bias_pct']:+.1f}%")
    if f:
        line += f"; the machine repeats to MAPE {f['mape']:.1f}% on {f['n']} archs timed twice"
    when = " ".join(x for x in (f"built {str(block['date'])[:16].replace('T', ' ')}" if block.get("date") else "",
                                f"at load {block['load_1m']:.1f}" if block.get("load_1m") is not None else "") if x)
    if block.get("uncorrected"):
        line += "; no correction kept"
    return line + (f"; {when})" if when else ")")


"""``nas devices``: every registered device and the table a prediction for it would use today: where it comes
from (measured here, ingested from a phone, adapted, or estimated by a cost model), where it lies, how old it is,
and its held-out error (the median |measured / predicted - 1| over the points its prediction intervals use)."""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from nas.latency.devices import DEVICES
from nas.latency.paths import default_table_path, shipped_table_path
from nas.space import DEFAULT_SPACE


def _source(header: dict[str, Any]) -> str:
    kind = header.get("kind", "?")
    if kind == "measured" and "ingest" in str(header.get("produced_by", "")):
        return "ingested"
    return str(kind)          # measured (by nas lut build, on the host its header names), adapted, estimated


def _written(header: dict[str, Any], path: Path) -> float:
    """When the table was made: its header's date, else the file's modification time."""
    try:
        return time.mktime(time.strptime(str(header["date"]), "%Y-%m-%dT%H:%M:%S"))
    except (KeyError, ValueError):
        return Path(path).stat().st_mtime


def device_inventory(space: str = DEFAULT_SPACE) -> list[dict[str, Any]]:
    from nas.errors import UsageError
    from nas.latency.predict import LutPredictor

    rows = []
    for name, device in DEVICES.items():
        row: dict[str, Any] = {"device": name, "backend": device.backend, "precision": device.precision,
                               "description": device.description,
                               "table": None, "source": "none", "shipped": False, "age_days": None,
                               "held_out_error_pct": None, "held_out_points": 0}
        path = default_table_path(name, space)
        if path.exists():
            try:
                predictor = LutPredictor.from_file(path)
            except UsageError as exc:              # a broken table is a finding, not a crash of the listing
                row.update(table=str(path), source=f"unreadable: {exc}")
                rows.append(row)
                continue
            header = predictor.table.header
            row.update(table=str(path), source=_source(header), shipped=path == shipped_table_path(name, space),
                       date=header.get("date"), host=header.get("host"))
            row["age_days"] = round((time.time() - _written(header, path)) / 86400, 1)
            residuals = predictor.residuals
            if residuals is not None and residuals.n:
                row["held_out_error_pct"] = round(100 * statistics.median(abs(r) for r in residuals.values), 2)
                row["held_out_points"] = residuals.n
                row["held_out_source"] = residuals.source
            row["fidelity"] = header.get("fidelity")
        rows.append(row)
    return rows

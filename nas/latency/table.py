"""Latency lookup table files: JSON with a schema version, a header saying how the table was made, and one entry
per op signature. Written atomically (temp file + rename), loaded with a schema check that names the file and the
problem. Never pickle.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.errors import UsageError
from nas.fileio import write_json_atomic

SCHEMA_VERSION = 1
HEADER_FIELDS = ("device", "backend", "backend_version", "torch_version", "threads", "dtype", "batch",
                 "input_size", "space", "host", "date", "kind", "produced_by")
ENTRY_FIELDS = ("median_ms", "p10_ms", "p90_ms", "n")
KINDS = ("measured", "estimated")


class TableError(UsageError):
    """A table file that cannot be used: missing, unreadable, or not of the schema."""


@dataclass
class LatencyTable:
    header: dict[str, Any]
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    # End-to-end measurements of whole archs, used to fit the correction: {"arch": {...}, "measured_ms": ...}
    calibration: list[dict[str, Any]] = field(default_factory=list)

    @property
    def correction(self) -> dict[str, Any] | None:
        return self.header.get("correction")

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "header": self.header, "entries": self.entries,
                "calibration": self.calibration}

    def save(self, path: str | Path) -> None:
        """Atomic: readers see the old file or the new one, never half of one (also after a kill -9)."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise TableError(f"latency table {path} does not exist") from None
        except OSError as exc:
            raise TableError(f"latency table {path} cannot be read: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TableError(f"latency table {path} is not valid JSON (truncated or corrupted?): "
                             f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: Any, where: str = "<table>") -> "LatencyTable":
        def bad(problem: str) -> TableError:
            return TableError(f"latency table {where}: {problem}")

        if not isinstance(data, dict):
            raise bad("top level must be a JSON object")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise bad(f"schema_version is {data.get('schema_version')!r}; this version of nas reads {SCHEMA_VERSION}")
        header, entries = data.get("header"), data.get("entries")
        if not isinstance(header, dict):
            raise bad("'header' is missing or not an object")
        missing = [f for f in HEADER_FIELDS if f not in header]
        if missing:
            raise bad(f"header lacks {', '.join(missing)}")
        if header["kind"] not in KINDS:
            raise bad(f"header kind = {header['kind']!r}; allowed: {', '.join(KINDS)}")
        if not isinstance(entries, dict):
            raise bad("'entries' is missing or not an object")
        for key, entry in entries.items():
            if not isinstance(entry, dict) or any(f not in entry for f in ENTRY_FIELDS):
                raise bad(f"entry {key!r} must have {', '.join(ENTRY_FIELDS)}")
            values = [entry[f] for f in ENTRY_FIELDS[:3]]
            if not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in values):
                raise bad(f"entry {key!r} has a latency that is not a finite non-negative number: {values}")
        correction = header.get("correction")
        if correction is not None and not {"scale", "offset_ms"} <= set(correction):
            raise bad("header correction must have scale and offset_ms")
        calibration = data.get("calibration", [])
        if not isinstance(calibration, list):
            raise bad("'calibration' must be a list")
        return cls(header, entries, calibration)

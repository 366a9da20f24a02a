"""Latency lookup table files: JSON with a schema version, a header saying how the table was made, and one entry
per op signature. Written atomically (temp file + rename), loaded with a schema check that names the file and the
problem. Never pickle.
"""
from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.errors import UsageError
from nas.fileio import DuplicateKeyError, loads_strict, write_json_atomic
from nas.machine import busy_words, is_busy
from nas.schemas import TABLE_KINDS, TABLE_VERSION, check
from nas.space import SearchSpace

if TYPE_CHECKING:
    from nas.latency.devices import Device
    from nas.latency.quantize import Int8Recipe


# Whole archs timed end to end to fit a table's correction are seeds 0..K-1 of the space; `nas lut validate`
# measures others (seeds 10000..), so its report is held-out error.
CALIBRATION_SEED_BASE = 0
CALIBRATION_ARCHS = 10
VALIDATION_SEED_BASE = 10_000


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

    def ops_by_kind(self) -> dict[str, dict[str, float]]:
        """Per op kind (``mb4d``, ``mb3d``, ...): how many entries and their fastest and slowest median."""
        by_kind: dict[str, list[float]] = {}
        for key, e in self.entries.items():
            by_kind.setdefault(key.split("|")[0], []).append(e["median_ms"])
        return {k: {"ops": len(v), "min_ms": min(v), "max_ms": max(v)} for k, v in by_kind.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": TABLE_VERSION, "header": self.header, "entries": self.entries,
                "calibration": self.calibration}

    def digest(self) -> str:
        """sha256 over what the table claims and measured: its kind, device, backend, int8 recipe and every
        entry. Written into the header on save and checked on load, so that a hand edit (an estimate relabelled
        ``measured``, an entry changed, another recipe) is seen, not trusted."""
        claim = {k: self.header.get(k) for k in ("kind", "device", "backend", "space")}
        if self.header.get("quantization"):       # which op types ran in int8: what every int8 model follows
            claim["int8_op_types"] = self.header["quantization"].get("op_types")
        text = json.dumps({"claim": claim, "entries": self.entries}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def save(self, path: str | Path) -> None:
        """Atomic: readers see the old file or the new one, never half of one (also after a kill -9)."""
        self.header["digest"] = self.digest()
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise TableError(f"latency table {path} does not exist") from None
        except OSError as exc:
            raise TableError(f"latency table {path} cannot be read: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise TableError(f"latency table {path} is not UTF-8 text (binary, or another encoding); expected the "
                             "JSON of nas lut build / estimate / ingest") from None
        try:
            data = loads_strict(text)
        except json.JSONDecodeError as exc:
            raise TableError(f"latency table {path} is not valid JSON (truncated or corrupted?): "
                             f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
        except DuplicateKeyError as exc:
            raise TableError(f"latency table {path}: {exc}; keep one") from None
        table = cls.from_dict(data, str(path))
        table.warn_if_edited(path)
        return table

    def warn_if_edited(self, path: Path) -> None:
        """One line on stderr when the table's content does not match the digest it was written with (or a table
        that claims to be measured carries none): its kind and numbers are then not vouched for."""
        import sys

        stored = self.header.get("digest")
        if stored == self.digest() or (stored is None and self.header.get("kind") == "estimated"):
            return
        why = "has no content digest" if stored is None else "does not match the digest it was written with"
        print(f"nas: warning: latency table {path} {why} (edited by hand, or written before digests existed): its "
              f"kind {self.header.get('kind')!r} and its entries are not vouched for; rebuild it to be sure",
              file=sys.stderr)

    @classmethod
    def from_dict(cls, data: Any, where: str = "<table>") -> LatencyTable:
        """The table ``data`` holds, once it has the shape of the ``latency table`` schema (``nas.schemas``)."""
        check(data, "latency table", where, error=TableError)
        header = data["header"]
        if "precision" not in header:        # written before precisions were part of a table's identity
            from nas.latency.devices import DEVICES

            known = DEVICES.get(header["device"])
            header["precision"] = known.precision if known else "fp32"
        from nas.latency.precision import PRECISIONS

        if header["precision"] not in PRECISIONS:
            raise TableError(f"{where}: field 'header.precision' is {header['precision']!r}; accepted: "
                             f"{', '.join(PRECISIONS)}")
        return cls(header, data["entries"], data.get("calibration", []))


# ------------------------------------------------------------------------------- making a table (one way for all)


def _torch_version() -> str:
    import torch  # torch's own version string (with its build tag, e.g. +cu130), as every table has recorded it

    return str(torch.__version__)


def new_header(device: Device, space: SearchSpace, *, kind: str, produced_by: str, backend: str,
               backend_version: str, **extra: Any) -> dict[str, Any]:
    """The header every table starts with, whichever way it is made (built here, ingested, estimated);
    ``extra`` adds or overrides fields (an ingested table's host is the Mac's, not this machine's)."""
    if kind not in TABLE_KINDS:
        raise ValueError(f"table kind {kind!r}; allowed: {', '.join(TABLE_KINDS)}")
    header = {
        "device": device.name, "backend": backend, "backend_version": backend_version,
        "torch_version": _torch_version(), "threads": device.threads, "dtype": device.dtype,
        "precision": device.precision,
        "batch": device.batch, "input_size": space.input_size, "space": space.name,
        "host": platform.node(), "cpu": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "kind": kind, "produced_by": produced_by,
    }
    header.update(extra)
    return header


def extrapolation_note(header: dict[str, Any]) -> str | None:
    """What an estimated table's header says of mixers its cost model was never calibrated on, in one phrase
    (``None`` when there are none): every command that prints an estimate from such a table shows it."""
    mixers = (header.get("estimate") or {}).get("extrapolated_mixers") or []
    if not mixers:
        return None
    return (f"ops of mixer(s) {', '.join(mixers)} are extrapolated by the cost model (no published "
            f"{header['device']} latency of those papers' networks to calibrate on)")


def add_points(path: str | Path, points: Sequence[dict[str, Any]]) -> None:
    """Append end-to-end calibration points (``nas.latency.correction.make_point``) to the table at ``path``,
    re-read first and written atomically; the correction is unchanged until it is refitted (``nas lut refit``)."""
    table = LatencyTable.load(path)
    table.calibration.extend(points)
    table.save(path)


def attach_correction(table: LatencyTable, space: SearchSpace, fitted_on: str) -> None:
    """Fit the end-to-end correction on the table's calibration points and put it in the header (with the
    residuals its prediction intervals come from: ``nas.latency.correction``); nothing to do without points."""
    from nas.latency.correction import refit

    refit(table, space, fitted_on)


# A correction that leaves its own calibration archs this far off (MAPE, %) says the ops were timed in conditions
# the whole archs were not (quiet: 2.5-8% on this project's 2-core machines; at load 7: 40.4%)
POOR_CALIBRATION_MAPE = 15.0
# the reference workload moving this much (max-min over median, %) during a build: the machine changed under it
UNSTEADY_REFERENCE_PCT = 25.0


def trust_warnings(header: dict[str, Any]) -> list[str]:
    """What a table's own figures say against trusting it (empty when nothing does); printed and kept in the
    header, so ``nas lut show``, ``validate`` and ``check`` repeat it."""
    warnings = []
    load = header.get("load")
    if load and is_busy(load):
        warnings.append(f"built on a busy machine ({busy_words(load)} before measuring): its latencies price that "
                        "load; rebuild when the machine is quiet for tables that hold on a quiet one")
    spread = (header.get("reference") or {}).get("spread_pct")
    if spread is not None and spread > UNSTEADY_REFERENCE_PCT:
        remedy = ("rebuild when it is steady, or with --rounds 2 (each entry the median of two passes, which repeats "
                  "~3x better than one pass on a shared machine), and `nas lut check --refit` it before setting a "
                  "budget" if header.get("rounds", 1) < 2 else
                  "`nas lut check --refit` it before setting a budget")
        warnings.append(f"the reference workload moved {spread:.0f}% during the build: the machine's speed changed "
                        f"under it (other work, thermal or frequency changes); {remedy}")
    mape = (header.get("correction") or {}).get("mape_after")
    if mape is not None and mape > POOR_CALIBRATION_MAPE:
        warnings.append(f"its own calibration archs are predicted with MAPE {mape:.1f}% after correction "
                        f"(above {POOR_CALIBRATION_MAPE:.0f}%; a quiet machine gives 2.5-8%): do not set budgets "
                        "from it before `nas lut validate` agrees")
    return warnings


def table_recipe(device: str, space: Any) -> Int8Recipe:
    """The recipe the device's table for ``space`` was measured with: what every later int8 model of the device
    (an end-to-end check, a verified winner, an export) is quantised by, so they time and ship what the table
    priced."""
    from nas.latency.paths import default_table_path
    from nas.latency.quantize import Int8Recipe
    from nas.space import space_flag

    path = default_table_path(device, space.name)
    if not path.exists():
        raise UsageError(f"no latency table for device {device!r} and space {space.name!r} at {path}: its int8 recipe "
                         f"(which op types run in int8 on this machine) comes from it; build one with: nas lut build "
                         f"--device {device}{space_flag(space.name)}")
    quantization = LatencyTable.load(path).header.get("quantization")
    if not quantization:
        raise UsageError(f"{path} has no int8 recipe (header field 'quantization'); rebuild it with: nas lut build "
                         f"--device {device}{space_flag(space.name)}")
    return Int8Recipe.from_dict(quantization)

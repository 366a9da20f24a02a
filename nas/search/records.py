"""What a search produces, as data: one ``TrialRecord`` per trial (or slimming step), the best feasible one, the
Pareto front, and ``trials.csv``. Strategies make records; everything downstream (verification, the run directory,
the plot, the export) reads only records."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from nas.errors import UsageError
from nas.fileio import atomic_output, read_json, write_json_atomic
from nas.schemas import check
from nas.space import Arch, SearchSpace

RECORD_LOG_SCHEMA = "nas-strategy-records/1"


@dataclass
class TrialRecord:
    number: int
    objective: float
    arch: Arch                                 # JSON (Arch.to_dict()) only where a record is written
    latency_ms: dict[str, float]               # predicted, per budget device
    feasible: bool                             # every budget met (by prediction)
    details: dict[str, float] = field(default_factory=dict)    # the objective's extra figures (params_m, gmacs)
    worker_pid: int | None = None
    action: str | None = None                  # slimming: the step taken
    measured_ms: dict[str, float] | None = None   # --verify: measured end to end

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, leaving out what this record does not have."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        return {**data, "arch": self.arch.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], space: SearchSpace) -> TrialRecord:
        """What ``to_dict`` wrote, its arch checked against ``space``."""
        return cls(**{**data, "arch": space.arch_from_dict(data["arch"])})


class RecordLog:
    """A strategy's records, kept in the run directory as they are made, so that a killed search resumes with
    nothing lost: ``{schema, strategy, config, records}``, checked against the schema ``strategy records`` and
    refused when it records another search (other settings: another ``--out`` is needed)."""

    def __init__(self, path: Path, strategy: str, config: dict[str, Any], space: SearchSpace):
        self.path, self.strategy, self.config = path, strategy, config
        self.records: list[TrialRecord] = []
        if path.exists():
            saved = check(read_json(path, f"{strategy} record"), "strategy records", str(path))
            if saved["schema"] != RECORD_LOG_SCHEMA or saved["strategy"] != strategy or saved["config"] != config:
                raise UsageError(f"{path} records a {saved['strategy']} search with other settings "
                                 f"({saved['config']}); use another --out")
            self.records = [TrialRecord.from_dict(r, space) for r in saved["records"]]

    def append(self, record: TrialRecord) -> None:
        """Add ``record`` (written at the next ``save``)."""
        self.records.append(record)

    def save(self) -> None:
        write_json_atomic(self.path, {"schema": RECORD_LOG_SCHEMA, "strategy": self.strategy, "config": self.config,
                                      "records": [r.to_dict() for r in self.records]})


def best_record(records: Sequence[TrialRecord]) -> TrialRecord | None:
    """The feasible record with the highest objective (ties: lower first-device latency, then earlier)."""
    feasible = [r for r in records if r.feasible]
    if not feasible:
        return None
    first = next(iter(feasible[0].latency_ms))
    return max(feasible, key=lambda r: (r.objective, -r.latency_ms[first], -r.number))


def pareto_front(records: Sequence[TrialRecord], device: str) -> list[TrialRecord]:
    """Feasible records no other feasible record beats on both objective (higher) and latency (lower)."""
    front, best_so_far = [], float("-inf")
    for r in sorted((r for r in records if r.feasible), key=lambda r: (r.latency_ms[device], -r.objective)):
        if r.objective > best_so_far:
            front.append(r)
            best_so_far = r.objective
    return front


def pareto_front_nd(records: Sequence[TrialRecord], device: str) -> list[TrialRecord]:
    """Feasible records that no other feasible record beats on objective (higher), latency and parameters (lower)
    at once, in order of latency."""
    def key(r: TrialRecord) -> tuple[float, float, float]:
        return -r.objective, r.latency_ms[device], r.details["params_m"]

    feasible = [r for r in records if r.feasible]
    front = [r for r in feasible
             if not any(all(a <= b for a, b in zip(key(o), key(r))) and key(o) != key(r) for o in feasible)]
    return sorted(front, key=lambda r: (r.latency_ms[device], -r.objective))


def write_trials_csv(path: Path, records: Sequence[TrialRecord], devices: Sequence[str],
                     precisions: Callable[[Arch], dict[str, str]] | None = None) -> None:
    """One row per record; ``precisions`` (--precision auto) adds the precision each arch ships in per device."""
    detail_keys = sorted({k for r in records for k in r.details})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    extra = ["action"] if any(r.action is not None for r in records) else []
    writer.writerow(["number", *extra, "objective", *[f"latency_ms_{d}" for d in devices], "feasible",
                     *detail_keys, *([f"precision_{d}" for d in devices] if precisions else []), "worker_pid",
                     "arch"])
    for r in records:
        writer.writerow([r.number, *[r.action or "" for _ in extra], f"{r.objective:.6g}",
                         *[f"{r.latency_ms[d]:.4f}" for d in devices], int(r.feasible),
                         *[f"{r.details.get(k, float('nan')):.6g}" for k in detail_keys],
                         *(precisions(r.arch)[d] for d in devices if precisions),
                         r.worker_pid or "", json.dumps(r.arch.to_dict(), separators=(",", ":"))])
    with atomic_output(path) as staging:
        staging.write_text(buffer.getvalue())

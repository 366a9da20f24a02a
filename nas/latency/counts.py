"""Parameters and MACs of an arch, summed over its ops (the same ops the latency tables price): the size side of
an op beside its latency, read by the capacity objectives, the size budgets, the ranking check and model cards.

Each op is built and traced once (``nas.latency.trace``: MACs as deployed, BatchNorm folded) and its counts are
cached in memory and in ``~/.cache/nas/op_counts/<space>.json`` (``$NAS_LUT_DIR/../op_counts``), so a search
pays ~10 ms per distinct op the first time only. Sums are exact: L1 gives timm's 12.29 M parameters, 1.291 GMACs.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from nas.fileio import write_json_atomic
from nas.latency.ops import Op, arch_ops
from nas.latency.paths import local_table_dir
from nas.space import Arch, SearchSpace

COUNTS_SCHEMA = "nas-op-counts/1"


def counts_cache_path(space: SearchSpace) -> Path:
    return local_table_dir().parent / "op_counts" / f"{space.name}.json"


class OpCounts:
    """``params(arch)`` and ``macs(arch)``, from per-op counts computed on first use."""

    def __init__(self, space: SearchSpace, cache: Path | None = None):
        self.space = space
        self.cache = cache if cache is not None else counts_cache_path(space)
        self._counts: dict[str, tuple[int, float]] = {}
        self._dirty = False
        try:
            data = json.loads(self.cache.read_text())
            if data.get("schema") == COUNTS_SCHEMA:
                self._counts = {k: (int(p), float(m)) for k, (p, m) in data["ops"].items()}
        except (OSError, ValueError, KeyError, TypeError):
            pass   # a missing or unreadable cache is rebuilt

    def _op(self, op: Op) -> tuple[int, float]:
        found = self._counts.get(op.key)
        if found is None:
            from nas.latency.trace import trace_ops

            module, x = op.build(1)
            with torch.no_grad():
                macs = sum(r.flops for r in trace_ops(module, x)) / 2
            found = self._counts[op.key] = (sum(p.numel() for p in module.parameters()), float(macs))
            self._dirty = True
        return found

    def counts(self, arch: Arch) -> tuple[int, float]:
        """(parameters, MACs) of ``arch``."""
        params, macs = 0, 0.0
        for op in arch_ops(arch, self.space):
            p, m = self._op(op)
            params += p
            macs += m
        return params, macs

    def save(self) -> None:
        if self._dirty:
            self._dirty = False
            try:
                write_json_atomic(self.cache, {"schema": COUNTS_SCHEMA, "space": self.space.name,
                                               "ops": {k: list(v) for k, v in sorted(self._counts.items())}},
                                  indent=None)
            except OSError as exc:      # a cache: the next run counts again, nothing is lost
                print(f"nas: note: the op-count cache {self.cache} cannot be written ({exc.strerror}); going on "
                      "without it", file=sys.stderr)

    def __getstate__(self) -> dict[str, object]:   # shipped to Ray workers without the cache's contents
        return {"space": self.space, "cache": self.cache}

    def __setstate__(self, state: dict[str, object]) -> None:
        fresh = OpCounts(state["space"], state["cache"])  # type: ignore[arg-type]
        self.__dict__.update(fresh.__dict__)

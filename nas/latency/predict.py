"""Latency prediction from a table: the sum of an arch's op entries, then the table's end-to-end correction.

Two paths, one answer:
- ``LutPredictor.predict(arch)`` walks ``arch_ops`` and looks the signatures up (exact, explains what is missing);
- ``LutPredictor.predict_batch(batch)`` predicts many archs at once from an ``ArchBatch`` (arrays of choice indices,
  as a vectorised search or a random baseline produces them) with numpy gathers, for >100k archs/s.
A test checks that both agree on random archs.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.errors import UsageError
from nas.latency.correction import DEFAULT_COVERAGE, Residuals, table_residuals
from nas.latency.devices import DEVICES, get_device
from nas.latency.ops import arch_ops, down_op, flat_op, head_op, mb3d_op, mb4d_op, stem_op
from nas.latency.paths import default_table_path
from nas.latency.table import LatencyTable, extrapolation_note
from nas.space import DEFAULT_SPACE, Arch, SearchSpace, first_3d_index, load_space, space_flag

if TYPE_CHECKING:
    import torch.nn as nn

    from nas.latency.trace import OpRecord


class MissingEntriesError(UsageError):
    pass


@dataclass
class ArchBatch:
    """N archs as arrays of indices into the space's choice lists (ragged parts padded, masked by depth/n3d)."""

    widths: np.ndarray      # [N, S]   index into stages[s].widths
    depths: np.ndarray      # [N, S]   actual depth
    n3d: np.ndarray         # [N]
    ratios: np.ndarray      # [N, S, maxD] index into mlp_ratios
    variants: np.ndarray    # [N, max n3d] index into space.mixer_variants(): (mixer, heads, key dim) of MB3D block j

    def __len__(self) -> int:
        return len(self.n3d)

    def arch(self, space: SearchSpace, i: int) -> Arch:
        depths = [int(d) for d in self.depths[i]]
        n3d = int(self.n3d[i])
        return Arch(space.name,
                    tuple(space.stages[s].widths[w] for s, w in enumerate(self.widths[i])), tuple(depths), n3d,
                    tuple(tuple(space.mlp_ratios[e] for e in self.ratios[i, s, :d]) for s, d in enumerate(depths)),
                    *_knob_columns([space.mixer_variants()[v] for v in self.variants[i, :n3d]]))


def _knob_columns(variants: Sequence[tuple[str, int, int]]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[str, ...]]:
    """(heads, key_dims, mixers) of an arch from its blocks' (mixer, heads, key dim)."""
    return (tuple(h for _, h, _ in variants), tuple(kd for _, _, kd in variants), tuple(m for m, _, _ in variants))


def _shape(space: SearchSpace) -> tuple[int, int, int]:
    return space.num_stages, max(space.max_depths), max(max(space.n3d), 1)


def encode_archs(archs: Sequence[Arch], space: SearchSpace) -> ArchBatch:
    S, D, J = _shape(space)
    n = len(archs)
    b = ArchBatch(np.zeros((n, S), np.int64), np.zeros((n, S), np.int64), np.zeros(n, np.int64),
                  np.zeros((n, S, D), np.int64), np.zeros((n, J), np.int64))
    variant_index = {v: k for k, v in enumerate(space.mixer_variants())}
    for i, a in enumerate(archs):
        b.widths[i] = [space.stages[s].widths.index(w) for s, w in enumerate(a.widths)]
        b.depths[i] = a.depths
        b.n3d[i] = a.n3d
        for s, stage in enumerate(a.mlp_ratios):
            b.ratios[i, s, :len(stage)] = [space.mlp_ratios.index(e) for e in stage]
        b.variants[i, :a.n3d] = [variant_index[v] for v in zip(a.mixers, a.heads, a.key_dims)]
    return b


def sample_batch(space: SearchSpace, n: int, seed: int | None = None) -> ArchBatch:
    """``n`` uniformly random archs (same distribution as ``SearchSpace.sample``), drawn directly as arrays."""
    rng = np.random.default_rng(seed)
    S, D, J = _shape(space)
    widths = np.stack([rng.integers(0, len(st.widths), n) for st in space.stages], 1)
    depths = np.stack([np.asarray(st.depths)[rng.integers(0, len(st.depths), n)] for st in space.stages], 1)
    n3d_choices = np.asarray(space.n3d)
    # uniform over the n3d values allowed for the drawn last-stage depth
    allowed = n3d_choices[None, :] <= depths[:, -1:]
    pick = (rng.random(n) * allowed.sum(1)).astype(np.int64)
    n3d = n3d_choices[np.argmax(np.cumsum(allowed, 1) > pick[:, None], axis=1)]
    # as SearchSpace.sample: the mixer uniformly, then each of its knobs uniformly
    choices = [space.knobs(m) for m in space.mixers]
    H = max(len(c.allowed_heads) for c in choices)
    K = max(len(c.allowed_key_dims) for c in choices)
    index = np.zeros((len(choices), H, K), np.int64)     # (mixer, heads index, key dim index) -> variant index
    k = 0
    for m, c in enumerate(choices):
        for hi in range(len(c.allowed_heads)):
            for ki in range(len(c.allowed_key_dims)):
                index[m, hi, ki] = k
                k += 1
    mixer = rng.integers(0, len(choices), (n, J))
    n_heads = np.array([len(c.allowed_heads) for c in choices])[mixer]
    n_kds = np.array([len(c.allowed_key_dims) for c in choices])[mixer]
    heads = (rng.random((n, J)) * n_heads).astype(np.int64)
    kds = (rng.random((n, J)) * n_kds).astype(np.int64)
    return ArchBatch(widths, depths, n3d, rng.integers(0, len(space.mlp_ratios), (n, S, D)), index[mixer, heads, kds])


class LutPredictor:
    def __init__(self, table: LatencyTable, space: SearchSpace | None = None, path: str | Path | None = None):
        self.table = table
        self.space = space or load_space(table.header["space"])
        self.path = str(path) if path else None
        if table.header["space"] != self.space.name:
            raise UsageError(f"latency table {self.path or ''} was built for space {table.header['space']!r}, "
                             f"not {self.space.name!r}")
        corr = table.correction or {"scale": 1.0, "offset_ms": 0.0}
        # the correction as of the latest measuring session (drift included: nas.latency.correction)
        self.scale, self.offset = float(corr["scale"]), float(corr["offset_ms"])
        self._arrays: dict[str, np.ndarray] | None = None
        self._residuals: Residuals | None | bool = False    # False: not looked up yet

    @classmethod
    def from_file(cls, path: str | Path, space: SearchSpace | None = None) -> LutPredictor:
        return cls(LatencyTable.load(path), space, path)

    @property
    def kind(self) -> str:
        return self.table.header["kind"]

    @property
    def precision(self) -> str:
        """The precision the table was measured at (its header's; a table older than the field reads as its
        device's, ``LatencyTable.load``)."""
        return str(self.table.header["precision"])

    # ---------------------------------------------------------------------------------------- one arch
    def _missing_error(self, missing: list[str]) -> MissingEntriesError:
        h = self.table.header
        where = f" --out {self.path}" if self.path else ""
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        return MissingEntriesError(
            f"latency table {self.path or ''} lacks {len(missing)} op(s) this arch needs: {shown}; fill them with: "
            f"nas lut build --device {h['device']} --space {h['space']}{where} --resume")

    def raw_ms(self, arch: Arch) -> float:
        """Sum of the arch's op entries, before the end-to-end correction."""
        entries = self.table.entries
        ops = arch_ops(arch, self.space)
        missing = sorted({op.key for op in ops if op.key not in entries})
        if missing:
            raise self._missing_error(missing)
        return float(sum(entries[op.key]["median_ms"] for op in ops))

    def predict(self, arch: Arch) -> float:
        return self.scale * self.raw_ms(arch) + self.offset

    # ---------------------------------------------------------------------------------------- intervals
    @property
    def residuals(self) -> Residuals | None:
        """What this table's prediction intervals come from (``None``: the table has no end-to-end points)."""
        if self._residuals is False:
            self._residuals = table_residuals(self.table, self.space)
        return self._residuals  # type: ignore[return-value]

    def interval(self, arch: Arch, coverage: float = DEFAULT_COVERAGE) -> dict[str, Any]:
        """``latency_ms`` and, where the table allows, ``latency_low_ms``/``latency_high_ms`` at ``coverage``
        (two-sided), ``latency_upper_ms`` (one-sided, what ``--guarantee`` holds), and how they were made."""
        ms = self.predict(arch)
        out: dict[str, Any] = {"latency_ms": ms, "coverage": coverage}
        res = self.residuals
        if res is None:
            out.update(latency_low_ms=None, latency_high_ms=None, latency_upper_ms=None,
                       interval_source="none: the table has no end-to-end points (rebuild or nas lut check it)")
            return out
        lo, hi, exact = res.bounds(ms, coverage)
        upper, upper_exact = res.upper(ms, coverage)
        out.update(latency_low_ms=lo, latency_high_ms=hi, latency_upper_ms=upper, interval_exact=exact,
                   upper_exact=upper_exact, interval_source=res.describe(coverage))
        return out

    def upper_factor(self, coverage: float) -> float:
        """``upper(arch) / predict(arch)``: the same for every arch (relative residuals), so a vectorised search
        bounds a whole batch with one product."""
        return self.residuals.upper(1.0, coverage)[0] if self.residuals is not None else 1.0

    def breakdown(self, arch: Arch) -> list[tuple[str, float]]:
        return [(op.key, self.table.entries[op.key]["median_ms"]) for op in arch_ops(arch, self.space)]

    # ---------------------------------------------------------------------------------------- many archs
    def _lookup(self) -> dict[str, np.ndarray]:
        """Dense arrays of entries indexed by choice indices (NaN where the table has no entry)."""
        if self._arrays is not None:
            return self._arrays
        sp, e = self.space, self.table.entries

        def get(op: Any) -> float:
            entry = e.get(op.key)
            return entry["median_ms"] if entry else np.nan

        last = sp.stages[-1].widths
        arrays = {
            "stem": np.array([get(stem_op(sp, c)) for c in sp.stages[0].widths]),
            "flat": np.array([get(flat_op(sp, c)) for c in last]),
            "head": np.array([get(head_op(sp, c)) for c in last]),
            "mb3d": np.array([[[get(mb3d_op(sp, c, r, h, k, m)) for m, h, k in sp.mixer_variants()]
                               for r in sp.mlp_ratios] for c in last]),
        }
        for s, stage in enumerate(sp.stages):
            arrays[f"mb4d{s}"] = np.array([[get(mb4d_op(sp, s, c, r)) for r in sp.mlp_ratios] for c in stage.widths])
            if s > 0:
                arrays[f"down{s}"] = np.array([[get(down_op(sp, s, cin, c)) for c in stage.widths]
                                               for cin in sp.stages[s - 1].widths])
        self._arrays = arrays
        return arrays

    def predict_batch(self, batch: ArchBatch) -> np.ndarray:
        """Corrected latency of every arch of the batch (ms); NaN where the table lacks an op."""
        a = self._lookup()
        S = self.space.num_stages
        W, D, n3d = batch.widths, batch.depths, batch.n3d
        total = a["stem"][W[:, 0]] + a["flat"][W[:, -1]] + a["head"][W[:, -1]]
        for s in range(1, S):
            total = total + a[f"down{s}"][W[:, s - 1], W[:, s]]
        for s in range(S):
            mb4d = a[f"mb4d{s}"]
            first_3d = first_3d_index(D.T, n3d, s)   # the layout rule, on a column of depths
            for i in range(max(self.space.stages[s].depths)):
                is4d = i < first_3d
                total = total + np.where(is4d, mb4d[W[:, s], batch.ratios[:, s, i]], 0.0)
                if s == S - 1 and max(self.space.n3d) > 0:
                    j = np.clip(i - first_3d, 0, batch.variants.shape[1] - 1)
                    rows = np.arange(len(n3d))
                    t3 = a["mb3d"][W[:, s], batch.ratios[:, s, i], batch.variants[rows, j]]
                    total = total + np.where((i >= first_3d) & (i < D[:, s]), t3, 0.0)
        return self.scale * total + self.offset


# ------------------------------------------------------------------------------------------ entry points


def load_predictor(device: str, space: str | SearchSpace = DEFAULT_SPACE,
                   lut: str | Path | None = None) -> LutPredictor:
    """The predictor of ``device`` from ``lut`` or from the device's default table, over ``space`` (the object a
    caller holds, or a name to load)."""
    get_device(device)
    given = space if isinstance(space, SearchSpace) else None
    name = given.name if given is not None else str(space)
    path = Path(lut) if lut else default_table_path(device, name)
    if not path.exists() and not lut:
        raise UsageError(f"no latency table for device {device!r} and space {name!r} at {path}; "
                         f"build one with: nas lut build --device {device}{space_flag(name)}")
    table = LatencyTable.load(path)
    built_for, table_space = table.header.get("device"), table.header["space"]
    if lut and table_space != name:       # it would price another space's ops (or miss them)
        raise UsageError(f"--lut {path} is a table of space {table_space!r} (device {built_for!r}), the "
                         f"arch is of space {name!r}; use a table of {name!r} (nas lut build --device {device}"
                         f"{space_flag(name)})")
    table_precision, precision = table.header.get("precision"), get_device(device).precision
    same_family = built_for in DEVICES and DEVICES[built_for].base == get_device(device).base
    if lut and built_for and built_for != device and same_family:   # the device at another precision
        raise UsageError(f"--lut {path} is a table at precision {table_precision} (device {built_for!r}), --device "
                         f"{device} runs {precision}; use --device {built_for}, or a table at {precision} (nas lut "
                         f"build --device {device}{space_flag(name)})")
    if lut and built_for and built_for != device:   # its numbers would be printed as another device's
        raise UsageError(f"--lut {path} is a table of device {built_for!r} (space {table_space!r}), not "
                         f"of {device!r}; use --device {built_for}, or a table of {device} (nas lut build --device "
                         f"{device})")
    return LutPredictor(table, given, path)


def estimate_notice(predictor: LutPredictor) -> str | None:
    """One line for a user reading latencies from an estimated table: what it is and how to measure a real one."""
    header = predictor.table.header
    if header["kind"] != "estimated":
        return None
    est = header.get("estimate", {})
    lofo = ((est.get("cross_validation") or {}).get("lofo") or {}).get("mape")
    error = f", leave-one-family-out MAPE {lofo:.1f}%" if lofo is not None else ""
    extrapolated = extrapolation_note(header)
    beyond = f"; {extrapolated}" if extrapolated else ""
    return (f"note: {header['device']} latencies are estimated (cost model fitted to published {est.get('protocol')} "
            f"figures{error}), not measured{beyond}; measure a table with: "
            f"{header.get('measure_with', 'nas lut build --device ' + header['device'])}")


def predict_model(module: nn.Module, input_size: int = 224, device: str = "cpu",
                  lut: str | Path | None = None) -> float:
    """Predicted latency (ms) of a model on ``device``.

    A model of a search space (what ``Supernet.extract`` returns) is looked up in the device's table. Any other
    module is traced and priced by the device's cost model (``nas.latency.costmodel``); devices without one (local
    devices are measured, not modelled) refuse it.
    """
    config = getattr(module, "arch_config", None)
    if not config:
        from nas.latency.costmodel.model import load_cost_model

        get_device(device)
        return load_cost_model(device).predict_module(module, input_size)
    space = load_space(config["space"])
    if input_size != space.input_size:
        raise UsageError(f"input_size {input_size} differs from the space's {space.input_size}; tables are per "
                         f"input size")
    fields = {k: config[k] for k in ("widths", "depths", "n3d", "mlp_ratios", "heads", "key_dims", "mixers")}
    arch = space.arch_from_dict({"space": space.name, **fields})
    return load_predictor(device, space.name, lut).predict(arch)


def predict_timm(name: str, device: str, input_size: int | None = None,
                 breakdown: bool = False) -> dict[str, Any]:
    """Estimated latency of any timm model (random weights, re-parameterised) by ``device``'s cost model."""
    from nas.latency.costmodel.model import example_input, load_cost_model
    from nas.latency.costmodel.published import timm_input_size, timm_model
    from nas.latency.trace import summarize, trace_ops

    get_device(device)
    model = load_cost_model(device)
    net = timm_model(name)   # re-parameterised, as it runs on the device
    size = input_size or timm_input_size(name)
    try:
        records = trace_ops(net, example_input(size))
    except RuntimeError as exc:   # e.g. attention biases sized for the model's native resolution
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"timm model {name!r} does not run at --input-size {size} ({first}); "
                         f"its default is {timm_input_size(name)}") from None
    totals = summarize(records)
    result: dict[str, Any] = {
        "latency_ms": model.predict_records(records), "device": device, "model": name, "input_size": size,
        "method": "cost model (estimated)", "macs_g": totals["macs_g"], "kernels": int(totals["kernels"]),
        "cost_model_protocol": model.fit.get("protocol"),
        "cost_model_lofo_mape": (model.fit.get("cv") or {}).get("lofo", {}).get("mape")}
    if breakdown:
        result["breakdown_ms"] = _category_breakdown(model, records)
    return result


def _category_breakdown(model: Any, records: Sequence[OpRecord]) -> dict[str, float]:
    from nas.latency.trace import CATEGORIES

    out = {"fixed": model.fixed_ms}
    for cat in CATEGORIES:
        out[cat] = model.op_ms(r for r in records if r.category == cat)
    return out

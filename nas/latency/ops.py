"""The ops of an arch: what a latency table measures and what a prediction sums.

One op is one module of the network with its input shape, named by an explicit signature such as
``mb4d|r=56|c=48|e=4`` (kind, then its shape and knobs). ``arch_ops`` lists an arch's ops in forward order,
``space_ops`` every distinct op of a space; both call the same constructors below, so a table built from the space
covers every arch of it. ``Op.build`` makes the real module (the same classes ``Supernet.extract`` returns) and an
input, so the builder, the predictor and the cost model all agree on what an op is.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from nas.errors import UsageError
from nas.space import Arch, SearchSpace

OP_KINDS = ("stem", "down", "mb4d", "flat", "mb3d", "head")


@dataclass(frozen=True)
class Op:
    kind: str
    params: tuple[tuple[str, Any], ...]

    @property
    def key(self) -> str:
        return "|".join([self.kind] + [f"{k}={v}" for k, v in self.params])

    @classmethod
    def from_key(cls, key: str) -> Op:
        kind, *fields = key.split("|")
        if kind not in OP_KINDS:
            raise UsageError(f"op signature {key!r} has unknown kind {kind!r}; known: {', '.join(OP_KINDS)}")
        params = []
        for f in fields:
            name, _, value = f.partition("=")
            params.append((name, int(value) if value.lstrip("-").isdigit() else value))
        return cls(kind, tuple(params))

    def __getitem__(self, name: str) -> Any:
        return dict(self.params)[name]

    def build(self, batch: int = 1) -> tuple[nn.Module, torch.Tensor]:
        """The op's module (eval mode, random weights) and an input of its shape."""
        from supernet import static

        p = dict(self.params)
        if self.kind == "stem":
            return static.Stem4(3, p["c"]).eval(), torch.randn(batch, 3, p["in"], p["in"])
        if self.kind == "down":
            return static.Downsample(p["cin"], p["c"]).eval(), torch.randn(batch, p["cin"], p["r"], p["r"])
        if self.kind == "mb4d":
            return static.MetaBlock2d(p["c"], p["e"]).eval(), torch.randn(batch, p["c"], p["r"], p["r"])
        if self.kind == "flat":
            return static.Flat().eval(), torch.randn(batch, p["c"], p["r"], p["r"])
        if self.kind == "mb3d":
            side = int(round(p["n"] ** 0.5))
            block = static.MetaBlock1d(p["c"], p["e"], p.get("h", 0), p.get("kd", 0), p["mixer"], p.get("ar", 0), side)
            return block.eval(), torch.randn(batch, p["n"], p["c"])
        if self.kind == "head":
            return static.Head(p["c"], p["classes"]).eval(), torch.randn(batch, p["n"], p["c"])
        raise AssertionError(self.kind)  # pragma: no cover - from_key checks kinds


# ------------------------------------------------------------------------------------------ op constructors


def stem_op(space: SearchSpace, c: int) -> Op:
    return Op("stem", (("in", space.input_size), ("c", c)))


def down_op(space: SearchSpace, s: int, cin: int, c: int) -> Op:
    return Op("down", (("r", space.resolutions()[s - 1]), ("cin", cin), ("c", c)))


def mb4d_op(space: SearchSpace, s: int, c: int, e: int) -> Op:
    return Op("mb4d", (("r", space.resolutions()[s]), ("c", c), ("e", e)))


def flat_op(space: SearchSpace, c: int) -> Op:
    return Op("flat", (("r", space.resolutions()[-1]), ("c", c)))


def mb3d_op(space: SearchSpace, c: int, e: int, h: int, kd: int, mixer: str) -> Op:
    """An MB3D block; only the knobs its mixer has appear (``mb3d|n=49|c=448|e=4|mixer=ssa``), so a space's op
    list holds no combination that cannot exist. MHSA's signature is the one tables have always used."""
    knobs = space.knobs(mixer)
    params: list[tuple[str, Any]] = [("n", space.resolutions()[-1] ** 2), ("c", c), ("e", e)]
    params += [("h", h)] if knobs.heads else []
    params += [("kd", kd)] if knobs.key_dims else []
    params += [("mixer", mixer)]
    params += [("ar", knobs.attn_ratio)] if knobs.attn_ratio else []
    return Op("mb3d", tuple(params))


def head_op(space: SearchSpace, c: int) -> Op:
    return Op("head", (("n", space.resolutions()[-1] ** 2), ("c", c), ("classes", space.num_classes)))


def arch_ops(arch: Arch, space: SearchSpace) -> list[Op]:
    """The ops of ``arch`` in forward order (the flatten before the first MB3D block, or before the head)."""
    ops = [stem_op(space, arch.widths[0])]
    flattened = False
    for b in arch.blocks():
        if b.index == 0 and b.stage > 0:
            ops.append(down_op(space, b.stage, arch.widths[b.stage - 1], b.width))
        if b.kind == "4d":
            ops.append(mb4d_op(space, b.stage, b.width, b.mlp_ratio))
        else:
            if not flattened:
                ops.append(flat_op(space, b.width))
                flattened = True
            ops.append(mb3d_op(space, b.width, b.mlp_ratio, b.heads, b.key_dim, b.mixer))
    if not flattened:
        ops.append(flat_op(space, arch.widths[-1]))
    ops.append(head_op(space, arch.widths[-1]))
    return ops


def space_ops(space: SearchSpace) -> list[Op]:
    """Every distinct op that some arch of ``space`` contains, in a stable order (after checking the space's
    mixers against their registrations: a table is never built for a knob a mixer does not take)."""
    from supernet.mixers import check_space

    check_space(space)
    ops: list[Op] = [stem_op(space, c) for c in space.stages[0].widths]
    for s in range(1, space.num_stages):
        ops += [down_op(space, s, cin, c) for cin in space.stages[s - 1].widths for c in space.stages[s].widths]
    for s, stage in enumerate(space.stages):
        ops += [mb4d_op(space, s, c, e) for c in stage.widths for e in space.mlp_ratios]
    last = space.stages[-1].widths
    ops += [flat_op(space, c) for c in last]
    if max(space.n3d) > 0:
        ops += [mb3d_op(space, c, e, h, kd, m) for c, e, (m, h, kd) in
                itertools.product(last, space.mlp_ratios, space.mixer_variants())]
    ops += [head_op(space, c) for c in last]
    return ops

"""Search spaces (data, in ``search_spaces/*.yaml``) and their points, ``Arch``.

A space is EfficientFormer's 4D/3D partition: four stages of MB4D blocks, the last ``n3d`` blocks of the last
stage being MB3D blocks behind exactly one flatten. An ``Arch`` is one point: plain, JSON-able data that names
its space and is validated against it, so a wrong value is reported with its field name and the allowed values.

Everything downstream (supernet, latency tables, search, export) reads an arch through ``Arch.blocks()`` and the
layout functions below (``block_layout``, ``stage_sides``), so a new knob is added here once.

Why one module of ~600 lines, over the project's 400: an arch names its space and is validated by it, and a space
is loaded by the name an arch gives; splitting ``Arch``, ``SearchSpace`` and the loader apart would make them
import each other, which ``tests/test_layers.py`` forbids (issue #27 weighed it and kept one concept, one room).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from nas.errors import ArchError, SpaceError
from nas.schemas import ARCH_FIELDS, check

DEFAULT_SPACE = "efficientformer"   # the space every command and table uses unless told otherwise


# --------------------------------------------------------------------------------------------------- the layout
# The one description of EfficientFormer's 4D/3D partition. Every consumer (Arch.blocks, the plain model, the
# supernet, the vectorised predictor, slimming, the model card) derives block kinds and feature-map sides here.


def conv_out(side: int) -> int:
    """Side of a 3x3, stride-2, padding-1 convolution's output."""
    return (side - 1) // 2 + 1


def stage_sides(input_size: int, num_stages: int) -> tuple[int, ...]:
    """Feature-map side of each stage: the stem has stride 4 (two stride-2 convs), each embedding stride 2."""
    side = conv_out(conv_out(input_size))
    sides = [side]
    for _ in range(num_stages - 1):
        side = conv_out(side)
        sides.append(side)
    return tuple(sides)


def first_3d_index(depths: Any, n3d: Any, stage: int) -> Any:
    """Index of the first MB3D block of ``stage`` (its depth when the stage has none): only the last stage's
    last ``n3d`` blocks are MB3D. Works on numpy columns too (``depths`` as ``[S, N]``, ``n3d`` as ``[N]``)."""
    return depths[stage] - n3d if stage == len(depths) - 1 else depths[stage]


def block_layout(depths: Sequence[int], n3d: int) -> list[tuple[int, int, str]]:
    """``(stage, index, kind)`` of every block in forward order, kind ``"4d"`` or ``"3d"``; the one flatten of the
    network sits just before the first ``"3d"`` block (or before the head when there is none)."""
    return [(s, i, "4d" if i < first_3d_index(depths, n3d, s) else "3d")
            for s, depth in enumerate(depths) for i in range(depth)]


@dataclass(frozen=True)
class BlockSpec:
    """One block of an arch, as the supernet, the latency tables and the cost model see it."""

    stage: int
    index: int          # position inside its stage
    kind: str           # "4d" (MB4D) or "3d" (MB3D)
    width: int
    mlp_ratio: int
    heads: int = 0      # 3D blocks only
    key_dim: int = 0    # 3D blocks only
    mixer: str = ""     # 3D blocks only
    slot: int = 0       # which of its stage's supernet slots holds its weights (``Arch.slots``); shapes ignore it


@dataclass(frozen=True)
class MixerChoices:
    """What a space lets the MB3D blocks using one token mixer choose. An empty tuple means the mixer has no such
    knob (SSA has neither heads nor key dim; an arch then holds 0 there); which knobs a mixer accepts is declared by
    its registration (``supernet.mixers``), which checks a space against it."""

    heads: tuple[int, ...] = ()
    key_dims: tuple[int, ...] = ()
    attn_ratio: int = 0         # MHSA: value dim per head = attn_ratio * key dim; 0: not a setting of this mixer

    @property
    def allowed_heads(self) -> tuple[int, ...]:
        return self.heads or (0,)

    @property
    def allowed_key_dims(self) -> tuple[int, ...]:
        return self.key_dims or (0,)

    def variants(self) -> list[tuple[int, int]]:
        """Every (heads, key_dim) a block with this mixer can take."""
        return [(h, kd) for h in self.allowed_heads for kd in self.allowed_key_dims]

    def knob_names(self) -> tuple[str, ...]:
        return tuple(n for n, v in (("heads", self.heads), ("key_dims", self.key_dims), ("attn_ratio",
                                                                                           self.attn_ratio)) if v)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.heads:
            out["heads"] = list(self.heads)
        if self.key_dims:
            out["key_dims"] = list(self.key_dims)
        if self.attn_ratio:
            out["attn_ratio"] = self.attn_ratio
        return out


@dataclass(frozen=True)
class Arch:
    """One point of a search space.

    ``mlp_ratios[s][i]`` is the MLP ratio of block ``i`` of stage ``s``; ``heads``, ``key_dims`` and ``mixers``
    have one entry per MB3D block (the last ``n3d`` blocks of the last stage, in order).

    ``slots[s]`` says which of stage ``s``'s supernet slots its blocks use, increasing (EfficientFormer's
    MetaPath identity: slimming a middle block away keeps the later blocks on their own weights). Empty means
    every stage uses its first ``depths[s]`` slots, which is what an arch without the field means; the
    constructor paths (``SearchSpace.arch_from_dict``) store that case as empty, so equal archs compare equal.
    Latency and size never depend on slots, only on shapes.
    """

    space: str
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    n3d: int
    mlp_ratios: tuple[tuple[int, ...], ...]
    heads: tuple[int, ...]
    key_dims: tuple[int, ...]
    mixers: tuple[str, ...]
    slots: tuple[tuple[int, ...], ...] = ()

    def stage_slots(self, stage: int) -> tuple[int, ...]:
        """The supernet slot of each block of ``stage``, in order."""
        return self.slots[stage] if self.slots else tuple(range(self.depths[stage]))

    def to_dict(self) -> dict[str, Any]:
        out = {
            "space": self.space,
            "widths": list(self.widths),
            "depths": list(self.depths),
            "n3d": self.n3d,
            "mlp_ratios": [list(r) for r in self.mlp_ratios],
            "heads": list(self.heads),
            "key_dims": list(self.key_dims),
            "mixers": list(self.mixers),
        }
        if self.slots:   # only when some stage skips a slot: prefix archs keep the form every file has
            out["slots"] = [list(s) for s in self.slots]
        return out

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Any, space: SearchSpace | None = None) -> Arch:
        """Validated construction; the space is loaded by the name the data gives unless passed."""
        if not isinstance(data, dict):
            raise ArchError(f"an arch must be a JSON object with fields {', '.join(ARCH_FIELDS)}; got "
                            f"{type(data).__name__}")
        if space is None:
            name = data.get("space")
            if not isinstance(name, str):
                raise ArchError(f"arch field 'space' is missing or not a string; known spaces: "
                                f"{', '.join(known_spaces())}")
            space = load_space(name)
        return space.arch_from_dict(data)

    @classmethod
    def from_json(cls, text: str, space: SearchSpace | None = None) -> Arch:
        from nas.fileio import DuplicateKeyError, loads_strict

        try:
            data = loads_strict(text)
        except DuplicateKeyError as exc:
            raise ArchError(f"arch: {exc}; keep one") from None
        except json.JSONDecodeError as exc:
            raise ArchError(f"arch is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
        return cls.from_dict(data, space)

    def blocks(self) -> list[BlockSpec]:
        """Every block in forward order (``block_layout``); the flatten sits before the first "3d" block."""
        out = []
        for s, i, kind in block_layout(self.depths, self.n3d):
            e, slot = self.mlp_ratios[s][i], self.stage_slots(s)[i]
            if kind == "4d":
                out.append(BlockSpec(s, i, "4d", self.widths[s], e, slot=slot))
            else:
                j = i - first_3d_index(self.depths, self.n3d, s)
                out.append(BlockSpec(s, i, "3d", self.widths[s], e, self.heads[j], self.key_dims[j], self.mixers[j],
                                     slot))
        return out


# --------------------------------------------------------------------------------------------------- the space


def _choices(spec: Any, where: str, field: str) -> tuple[int, ...]:
    """A choice list written either as a YAML list or as ``{min, max, step}`` (its shape checked by the schema)."""
    if isinstance(spec, list):
        return tuple(sorted(set(spec)))
    values = tuple(range(spec["min"], spec["max"] + 1, spec.get("step", 1)))
    if not values:
        raise SpaceError(f"search space {where}: field {field!r} = {spec!r} holds no value; expected min <= max")
    return values


def format_choices(values: Sequence[Any]) -> str:
    """'448, 464, ..., 768 (step 16)' for long arithmetic runs, else the plain list."""
    values = list(values)
    if len(values) > 5 and all(isinstance(v, int) for v in values):
        step = values[1] - values[0]
        if all(b - a == step for a, b in zip(values, values[1:])):
            return f"{values[0]}, {values[1]}, ..., {values[-1]} (step {step})"
    return ", ".join(str(v) for v in values)


@dataclass(frozen=True)
class StageChoices:
    widths: tuple[int, ...]
    depths: tuple[int, ...]


@dataclass(frozen=True)
class SearchSpace:
    name: str
    description: str
    input_size: int
    num_classes: int
    stages: tuple[StageChoices, ...]
    mlp_ratios: tuple[int, ...]
    n3d: tuple[int, ...]
    mixer_choices: tuple[tuple[str, MixerChoices], ...]   # (name, knobs) of each token mixer, in the YAML's order
    presets: dict[str, dict[str, Any]] = dataclasses.field(hash=False, compare=False)
    source: str = ""

    # ---- token mixers of the MB3D blocks
    @property
    def mixers(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.mixer_choices)

    def knobs(self, mixer: str) -> MixerChoices:
        for name, choices in self.mixer_choices:
            if name == mixer:
                return choices
        raise ArchError(f"token mixer {mixer!r} is not in space {self.name!r}; allowed: {', '.join(self.mixers)}")

    def mixer_variants(self) -> list[tuple[str, int, int]]:
        """Every (mixer, heads, key_dim) an MB3D block of this space can be: no combination that cannot exist."""
        return [(m, h, kd) for m, c in self.mixer_choices for h, kd in c.variants()]

    @property
    def attn_ratio(self) -> int:
        """MHSA's value ratio (the plain model's ``attn_ratio`` argument); 4, EfficientFormer's, without MHSA."""
        return next((c.attn_ratio for _, c in self.mixer_choices if c.attn_ratio), 4)

    # ---- shapes every consumer agrees on
    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def resolutions(self, input_size: int | None = None) -> tuple[int, ...]:
        """Feature-map side of each stage (``stage_sides``)."""
        return stage_sides(input_size or self.input_size, self.num_stages)

    @property
    def max_widths(self) -> tuple[int, ...]:
        return tuple(max(s.widths) for s in self.stages)

    @property
    def max_depths(self) -> tuple[int, ...]:
        return tuple(max(s.depths) for s in self.stages)

    def positions_3d(self) -> range:
        """Positions in the last stage at which some arch of the space has an MB3D block."""
        last = self.stages[-1]
        first = max(0, min(last.depths) - max(self.n3d))
        return range(first, max(last.depths))

    # ---- points
    def preset_names(self) -> list[str]:
        return sorted(self.presets)

    def preset(self, name: str) -> Arch:
        if name not in self.presets:
            raise ArchError(f"unknown preset {name!r} of space {self.name!r}; known: "
                            f"{', '.join(self.preset_names()) or 'none'}")
        p = self.presets[name]
        n3d = p["n3d"]
        return self.arch_from_dict({
            "space": self.name,
            "widths": p["widths"],
            "depths": p["depths"],
            "n3d": n3d,
            "mlp_ratios": [[p["mlp_ratio"]] * d for d in p["depths"]],
            "heads": [p.get("heads", 0)] * n3d,
            "key_dims": [p.get("key_dim", 0)] * n3d,
            "mixers": [p["mixer"]] * n3d,
        })

    def sample(self, seed: int | None = None, rng: random.Random | None = None) -> Arch:
        """A uniformly drawn arch: each choice independently, deterministic for a seed."""
        rng = rng or random.Random(seed)
        widths = [rng.choice(s.widths) for s in self.stages]
        depths = [rng.choice(s.depths) for s in self.stages]
        n3d = rng.choice([n for n in self.n3d if n <= depths[-1]])
        ratios = tuple(tuple(rng.choice(self.mlp_ratios) for _ in range(d)) for d in depths)
        if len(self.mixers) == 1:
            # one mixer: heads, then key dims, then mixers, the order seeded samples had before spaces could hold
            # several mixers, so a seed still draws the same archs
            knobs = self.knobs(self.mixers[0])
            heads = [rng.choice(knobs.allowed_heads) for _ in range(n3d)]
            key_dims = [rng.choice(knobs.allowed_key_dims) for _ in range(n3d)]
            mixers = [rng.choice(self.mixers) for _ in range(n3d)]
        else:   # the mixer first: which knobs follow depends on it
            mixers = [rng.choice(self.mixers) for _ in range(n3d)]
            heads = [rng.choice(self.knobs(m).allowed_heads) for m in mixers]
            key_dims = [rng.choice(self.knobs(m).allowed_key_dims) for m in mixers]
        return Arch(self.name, tuple(widths), tuple(depths), n3d, ratios, tuple(heads), tuple(key_dims),
                    tuple(mixers))

    def _uniform(self, widths: tuple[int, ...], depths: tuple[int, ...], n3d: int, mlp_ratio: int, mixer: str,
                 pick: Any) -> Arch:
        knobs = self.knobs(mixer)
        return Arch(self.name, widths, depths, n3d, tuple((mlp_ratio,) * d for d in depths),
                    (pick(knobs.allowed_heads),) * n3d, (pick(knobs.allowed_key_dims),) * n3d, (mixer,) * n3d)

    def largest(self, mixer: str | None = None) -> Arch:
        """Every knob at its maximum (the supernet's full size; the slimming search starts here), every MB3D block
        using ``mixer`` (default: the space's first)."""
        depths = self.max_depths
        return self._uniform(self.max_widths, depths, min(max(self.n3d), depths[-1]), max(self.mlp_ratios),
                             mixer or self.mixers[0], max)

    def smallest(self, mixer: str | None = None) -> Arch:
        depths = tuple(min(s.depths) for s in self.stages)
        return self._uniform(tuple(min(s.widths) for s in self.stages), depths, min(self.n3d), min(self.mlp_ratios),
                             mixer or self.mixers[0], min)

    # ---- validation
    def arch_from_dict(self, data: dict[str, Any]) -> Arch:
        """The arch ``data`` describes: its shape checked by the ``arch`` schema (``nas.schemas``), its values here,
        against this space."""
        check(data, "arch", error=ArchError)
        return self._arch_from_fields(data)

    def _arch_from_fields(self, data: dict[str, Any]) -> Arch:
        """The values of an arch whose shape is known to be right, checked against this space."""
        if data["space"] != self.name:
            raise ArchError(f"arch field 'space' = {data['space']!r} does not match the space {self.name!r}")
        ns = self.num_stages
        widths = _int_list(data["widths"], "widths", ns)
        depths = _int_list(data["depths"], "depths", ns)
        for s in range(ns):
            _check(widths[s], self.stages[s].widths, f"widths[{s}]")
            _check(depths[s], self.stages[s].depths, f"depths[{s}]")
        n3d = data["n3d"]
        allowed_n3d = [n for n in self.n3d if n <= depths[-1]]
        _check(n3d, allowed_n3d, "n3d", note=f" (at most depths[{ns - 1}] = {depths[-1]})")
        mlp_ratios = []
        for s, stage in enumerate(_stage_lists(data["mlp_ratios"], "mlp_ratios", depths)):
            for i, e in enumerate(stage):
                _check(e, self.mlp_ratios, f"mlp_ratios[{s}][{i}]")
            mlp_ratios.append(tuple(stage))
        heads = _int_list(data["heads"], "heads", n3d)
        key_dims = _int_list(data["key_dims"], "key_dims", n3d)
        mixers = data["mixers"]
        if not isinstance(mixers, list) or len(mixers) != n3d:
            raise ArchError(f"arch field 'mixers' must be a list of {n3d} names (one per 3D block), got {mixers!r}")
        for j in range(n3d):
            _check(mixers[j], self.mixers, f"mixers[{j}]")
            knobs = self.knobs(mixers[j])
            none = f" (mixer {mixers[j]!r} has no such knob)"
            _check(heads[j], knobs.allowed_heads, f"heads[{j}]", note="" if knobs.heads else none)
            _check(key_dims[j], knobs.allowed_key_dims, f"key_dims[{j}]", note="" if knobs.key_dims else none)
        slots = self._slots(data.get("slots"), depths)
        return Arch(self.name, tuple(widths), tuple(depths), n3d, tuple(mlp_ratios),
                    tuple(heads), tuple(key_dims), tuple(mixers), slots)

    def _slots(self, value: Any, depths: list[int]) -> tuple[tuple[int, ...], ...]:
        """``slots`` checked against the supernet's slots: per stage, ``depths[s]`` increasing indices below the
        stage's largest depth. Stored empty when every stage uses its first slots. (The last ``n3d`` blocks then
        always sit at positions with MB3D slots: increasing slots put them at >= min depth - max n3d.)"""
        if value is None:
            return ()
        slots = []
        for s, stage in enumerate(_stage_lists(value, "slots", depths)):
            for i, slot in enumerate(stage):
                _check(slot, range(self.max_depths[s]), f"slots[{s}][{i}]", note=" (a slot of the stage's "
                       "supernet)")
                if i and slot <= stage[i - 1]:
                    raise ArchError(f"arch field 'slots[{s}]' = {stage!r} is not increasing; blocks keep the "
                                    "order of their slots")
            slots.append(tuple(stage))
        if all(stage == tuple(range(len(stage))) for stage in slots):
            return ()
        return tuple(slots)

    def arch_from_json(self, text: str) -> Arch:
        return Arch.from_json(text, self)

    def validate(self, arch: Arch) -> Arch:
        """``arch`` if it is a point of this space (an ``Arch`` has the schema's shape by construction: only its
        values are checked, on every supernet step)."""
        return self._arch_from_fields(arch.to_dict())

    # ---- description
    def size(self) -> dict[str, int]:
        """Number of distinct archs: ``fine`` counts every knob, ``macro`` widths, depths and n3d only."""
        e = len(self.mlp_ratios)
        per_3d = len(self.mixer_variants())
        widths = math.prod(len(s.widths) for s in self.stages)
        fine = widths * math.prod(sum(e ** d for d in s.depths) for s in self.stages[:-1])
        fine *= sum(e ** d * sum(per_3d ** n for n in self.n3d if n <= d) for d in self.stages[-1].depths)
        macro = widths * math.prod(len(s.depths) for s in self.stages[:-1])
        macro *= sum(len([n for n in self.n3d if n <= d]) for d in self.stages[-1].depths)
        return {"fine": fine, "macro": macro}

    def describe(self) -> dict[str, Any]:
        size = self.size()
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "input_size": self.input_size,
            "num_classes": self.num_classes,
            "resolutions": list(self.resolutions()),
            "stages": [{"widths": list(s.widths), "depths": list(s.depths)} for s in self.stages],
            "mlp_ratios": list(self.mlp_ratios),
            "n3d": list(self.n3d),
            "attention": {"mixers": {name: c.to_dict() for name, c in self.mixer_choices}},
            "size": {"fine": size["fine"], "fine_sci": f"{size['fine']:.3e}", "macro": size["macro"]},
            "presets": {name: self.preset(name).to_dict() for name in self.preset_names()},
        }


def _int_list(value: Any, field: str, length: int) -> list[int]:
    if not isinstance(value, list) or any(not isinstance(v, int) or isinstance(v, bool) for v in value):
        raise ArchError(f"arch field {field!r} must be a list of {length} integers, got {value!r}")
    if len(value) != length:
        raise ArchError(f"arch field {field!r} must have {length} entries, got {len(value)}: {value!r}")
    return value


def _stage_lists(value: Any, field: str, depths: Sequence[int]) -> list[list[int]]:
    """A per-block field: one list of ``depths[s]`` integers per stage."""
    if not isinstance(value, list) or len(value) != len(depths):
        raise ArchError(f"arch field {field!r} must be a list of {len(depths)} per-stage lists, got {value!r}")
    return [_int_list(stage, f"{field}[{s}]", depths[s]) for s, stage in enumerate(value)]


def _check(value: Any, allowed: Iterable[Any], field: str, note: str = "") -> None:
    allowed = list(allowed)
    if value not in allowed or isinstance(value, bool):
        raise ArchError(f"arch field {field!r} = {value!r} is not allowed; allowed: {format_choices(allowed)}{note}")


# --------------------------------------------------------------------------------------------------- loading

_SPACES_PACKAGE = "search_spaces"


def known_spaces() -> list[str]:
    folder = resources.files(_SPACES_PACKAGE)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


@functools.cache
def _load_file(path: str) -> SearchSpace:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise SpaceError(f"cannot read search space {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SpaceError(f"search space {path} is not UTF-8 text (binary, or another encoding); expected a YAML "
                         "file") from None
    except yaml.YAMLError as exc:   # one line: the problem and where, not PyYAML's multi-line excerpt
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc
        raise SpaceError(f"search space {path} is not valid YAML: {problem}{where}") from None
    return _parse_space(raw, path)


def load_space(name_or_path: str | Path = DEFAULT_SPACE) -> SearchSpace:
    """A space by name (``search_spaces/NAME.yaml``, shipped with the package) or by path to a YAML file.

    A space loaded from a file is also remembered under its name, so archs naming it load afterwards.
    """
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        space = _load_file(str(Path(text).resolve()))
        _BY_NAME[space.name] = space
        return space
    if text in _BY_NAME:
        return _BY_NAME[text]
    if text not in known_spaces():
        raise SpaceError(f"unknown search space {text!r}; known: {', '.join(known_spaces())} (or a path to a "
                         f".yaml file)")
    with resources.as_file(resources.files(_SPACES_PACKAGE) / f"{text}.yaml") as path:
        return _load_file(str(path))


_BY_NAME: dict[str, SearchSpace] = {}


def _parse_mixers(att: Any, where: str) -> tuple[tuple[str, MixerChoices], ...]:
    """``attention.mixers`` as a mapping ``{name: {heads, key_dims, attn_ratio}}`` (each mixer its own knobs), or
    the older form ``mixers: [names]`` with ``heads``, ``key_dims``, ``attn_ratio`` beside it, shared by all of
    them (``attn_ratio`` going to MHSA, the one mixer with a value ratio)."""
    mixers = att["mixers"]
    if isinstance(mixers, list):
        shared = {k: att[k] for k in ("heads", "key_dims") if k in att}
        mixers = {m: dict(shared, **({"attn_ratio": att.get("attn_ratio", 4)} if m == "mhsa" else {}))
                  for m in mixers}
    out = []
    for name, knobs in mixers.items():
        knobs = knobs or {}
        out.append((str(name), MixerChoices(
            heads=_choices(knobs["heads"], where, f"attention.mixers.{name}.heads") if "heads" in knobs else (),
            key_dims=(_choices(knobs["key_dims"], where, f"attention.mixers.{name}.key_dims")
                      if "key_dims" in knobs else ()),
            attn_ratio=int(knobs.get("attn_ratio", 0)))))
    return tuple(out)


def _parse_space(raw: Any, where: str) -> SearchSpace:
    check(raw, "search space", where, error=SpaceError)   # the shape; what depends on the values is below
    try:
        att = raw["attention"]
        stages = tuple(
            StageChoices(_choices(s["widths"], where, f"stages[{i}].widths"),
                         _choices(s["depths"], where, f"stages[{i}].depths"))
            for i, s in enumerate(raw["stages"]))
        space = SearchSpace(
            name=str(raw["name"]),
            description=str(raw.get("description", "")),
            input_size=int(raw.get("input_size", 224)),
            num_classes=int(raw.get("num_classes", 1000)),
            stages=stages,
            mlp_ratios=_choices(raw["mlp_ratios"], where, "mlp_ratios"),
            n3d=_choices(raw["n3d"], where, "n3d"),
            mixer_choices=_parse_mixers(att, where),
            presets=dict(raw.get("presets") or {}),
            source=where,
        )
    except (KeyError, TypeError) as exc:
        raise SpaceError(f"search space {where} lacks or misformats {exc}") from None
    if len(space.stages) < 2:
        raise SpaceError(f"search space {where}: needs at least 2 stages")
    if not _SAFE_SPACE_NAME.fullmatch(space.name) or ".." in space.name:   # it names table and cache files
        raise SpaceError(f"search space {where}: name {space.name!r} is not usable as a file name; accepted: up to "
                         "128 letters, digits and ._+- (not starting with a dot, no '..' and no '/')")
    for name in space.presets:   # a preset that is not a point of its space is a bug in the YAML
        try:
            space.preset(name)
        except ArchError as exc:
            raise SpaceError(f"search space {where}: preset {name!r}: {exc}") from None
    return space


_SAFE_SPACE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def space_flag(name: str) -> str:
    """`` --space NAME`` for a command a user is told to run, or nothing for the default space."""
    return "" if name == DEFAULT_SPACE else f" --space {name}"


def resolve_arch(value: str, space_name: str, flag: str = "--arch") -> Arch:
    """An arch from a preset name of the space, an arch JSON file, a run directory (its best_arch.json) or an
    export folder (its arch.json): what every command taking an arch accepts; ``flag`` names the argument in the
    refusal."""
    space = load_space(space_name)
    path = Path(value)
    if path.is_dir():
        found = next((path / n for n in ("best_arch.json", "arch.json") if (path / n).is_file()), None)
        if found is None:
            raise ArchError(f"{flag} {value!r} is a folder without best_arch.json or arch.json; expected a run "
                            "directory of nas search, an export folder, an arch JSON file or a preset name")
        path = found
    if path.is_file():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            raise ArchError(f"{flag} {value!r} is not UTF-8 text (binary, or another encoding); expected an arch "
                            "JSON file, a run directory or a preset name") from None
        try:
            return Arch.from_json(text)
        except ArchError as exc:     # name the file: "arch is not valid JSON" alone does not say which
            raise ArchError(f"{flag} {str(path)!r}: {exc}") from None
    if value in space.presets:
        return space.preset(value)
    raise ArchError(f"{flag} {value!r} is neither a preset of space {space.name!r} "
                    f"({', '.join(space.preset_names())}) nor an arch JSON file or run directory")

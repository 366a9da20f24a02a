"""Datasets that ship as code (``--data builtin:NAME[:key=value,...]``): one record each, registered below.

A record names its dataset, says what it is in one line, declares its settings as a frozen dataclass (each field a
``key=value`` of the spelling, with its default and an inclusive range in ``LIMITS``), its splits, its number of
classes, and builds a split as a torch dataset. A new built-in dataset is one module plus one ``register`` call.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nas import registry
from nas.errors import UsageError

PREFIX = "builtin:"


@dataclass(frozen=True)
class BuiltinDataset:
    name: str
    summary: str
    spec_type: type                     # a frozen dataclass: its fields are the accepted keys
    splits: tuple[str, ...]
    num_classes: Callable[[Any], int]   # spec -> classes
    build: Callable[..., Any]           # (spec, split, input_size, training) -> torch Dataset


_REGISTRY: dict[str, BuiltinDataset] = {}


def register(record: BuiltinDataset) -> BuiltinDataset:
    return registry.add(_REGISTRY, record.name, record, "built-in dataset")


def names() -> list[str]:
    return [PREFIX + name for name in _REGISTRY]


def is_builtin(data: object) -> bool:
    return str(data).startswith(PREFIX)


def parse(text: str) -> tuple[BuiltinDataset, Any]:
    """The record and the settings ``builtin:NAME[:key=value,...]`` names; anything else is one ``UsageError``
    naming the bad part and what is accepted."""
    name, _, settings = text[len(PREFIX):].partition(":")
    if name not in _REGISTRY:
        raise UsageError(f"--data {text}: unknown built-in dataset {name!r}; available: {', '.join(names())}")
    record = _REGISTRY[name]
    fields = {f.name: f for f in dataclasses.fields(record.spec_type)}
    values: dict[str, Any] = {}
    for item in filter(None, settings.split(",")):
        key, eq, raw = item.partition("=")
        if key not in fields or not eq:
            accepted = ", ".join(f"{k}=" for k in fields) or "none"
            raise UsageError(f"--data {text}: {item!r} is not a setting of {PREFIX}{name}; accepted: {accepted} "
                             f"(e.g. {PREFIX}{name}:{_example(record)})")
        if key in values:
            raise UsageError(f"--data {text}: {key} is given twice; give each setting once")
        values[key] = _value(text, key, raw, fields[key].type, getattr(record.spec_type, "LIMITS", {}).get(key))
    return record, record.spec_type(**values)


def canonical(text: str) -> str:
    """One spelling per dataset (settings sorted, defaults dropped), so that a checkpoint trained on
    ``builtin:objects:classes=30`` and a search given ``builtin:objects`` agree they read the same data."""
    record, spec = parse(text)
    default = record.spec_type()
    changed = [f"{f.name}={getattr(spec, f.name)}" for f in dataclasses.fields(spec)
               if getattr(spec, f.name) != getattr(default, f.name)]
    return PREFIX + record.name + (":" + ",".join(changed) if changed else "")


def _example(record: BuiltinDataset) -> str:
    first = next(iter(dataclasses.fields(record.spec_type)), None)
    return f"{first.name}={getattr(record.spec_type(), first.name)}" if first else ""


def _value(text: str, key: str, raw: str, kind: Any, limits: tuple[float, float] | None) -> Any:
    cast = float if kind in (float, "float") else int
    try:
        value = cast(raw)
    except ValueError:
        raise UsageError(f"--data {text}: {key}={raw!r} is not {'a number' if cast is float else 'an integer'}"
                         ) from None
    if limits is not None and not limits[0] <= value <= limits[1]:
        raise UsageError(f"--data {text}: {key}={raw} is out of range; accepted: {limits[0]} to {limits[1]}")
    return value

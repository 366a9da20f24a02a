"""The one rule every plug-in registry keeps (devices, backends, mixers, strategies, objectives, export and package
formats, datasets, proxies, samplers, distillations): as in timm's registry, a name is registered once; a second
registration is an error naming what holds the name, never a silent replacement of the first."""
from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def add(table: dict[str, T], name: str, value: T, what: str) -> T:
    """``table[name] = value`` where ``name`` is free; a ValueError naming ``what`` it is and the holder if not."""
    if name in table:
        raise ValueError(f"{what} {name!r} is already registered ({_shown(table[name])}); a name is registered once")
    table[name] = value
    return value


def _shown(value: object) -> str:
    return getattr(value, "__qualname__", None) or type(value).__name__

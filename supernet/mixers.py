"""Token mixers of MB3D blocks: one registry of (static module, elastic twin) pairs, by the name an arch gives them.

A new mixer is one file with its two classes plus one ``register_mixer`` call. The static class is what
``Supernet.extract`` returns and export writes; the elastic class is the supernet's slot, which runs any active
size by slicing its largest weights and hands back its static twin. Both take the block's width first and the
mixer's knobs as keywords (``key_dim``, ``num_heads``, ``attn_ratio``, ``resolution``), so ``MetaBlock1d`` and
``ElasticMB3D`` build any of them the same way.
"""
from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass

import torch
import torch.nn as nn

from nas.errors import ArchError


class ElasticMixer(nn.Module, metaclass=abc.ABCMeta):
    """The seam every elastic token mixer implements (Once-for-All's dynamic layer, with one signature)."""

    @abc.abstractmethod
    def forward(self, x: torch.Tensor, heads: int, key_dim: int) -> torch.Tensor:
        """Run on ``[B, N, C]`` tokens with the active knobs; C is the active width."""

    @abc.abstractmethod
    def to_static(self, dim: int, heads: int, key_dim: int) -> nn.Module:
        """The static twin of the active slice, with its weights copied in."""

    @abc.abstractmethod
    def absorb(self, static: nn.Module) -> None:
        """Write a static twin's weights into the leading slice (the inverse of ``to_static``)."""


@dataclass(frozen=True)
class MixerEntry:
    name: str
    static_cls: type[nn.Module]
    elastic_cls: type[ElasticMixer]


_MIXERS: dict[str, MixerEntry] = {}
# Modules that register the built-in mixers, imported on first lookup (they import this module, not the reverse).
_BUILTINS = ("supernet.attention",)


def _load_builtins() -> None:
    for module in _BUILTINS:
        importlib.import_module(module)


def register_mixer(name: str, static_cls: type[nn.Module], elastic_cls: type[ElasticMixer]) -> MixerEntry:
    """Make ``name`` a token mixer every layer knows: spaces may list it, the supernet gets a slot for it."""
    if not issubclass(elastic_cls, ElasticMixer):
        raise TypeError(f"mixer {name!r}: {elastic_cls.__name__} must subclass supernet.mixers.ElasticMixer")
    entry = _MIXERS[name] = MixerEntry(name, static_cls, elastic_cls)
    return entry


def get_mixer(name: str) -> MixerEntry:
    _load_builtins()
    if name not in _MIXERS:
        raise ArchError(f"token mixer {name!r} is not registered; known: {', '.join(mixer_names())}")
    return _MIXERS[name]


def mixer_names() -> list[str]:
    _load_builtins()
    return sorted(_MIXERS)

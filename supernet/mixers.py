"""Token mixers of MB3D blocks: one registry of (static module, elastic twin) pairs, by the name an arch gives them.

A new mixer is one file with its two classes plus one ``register_mixer`` call (``supernet/attention.py`` MHSA,
``supernet/cga.py`` cascaded group attention, ``supernet/ssa.py`` separable self-attention). The static class is
what ``Supernet.extract`` returns and export writes; the elastic class is the supernet's slot, which runs any active
size by slicing its largest weights and hands back its static twin. One signature for all of them:

- static: ``cls(dim, *, num_heads, key_dim, attn_ratio, resolution)``; a knob the mixer does not have comes as 0;
- elastic: ``cls(max_dim, *, choices, resolution)`` with the space's ``MixerChoices`` for this mixer.

The registration says which knobs a mixer takes (``knobs``); ``check_space`` holds a space's YAML to that.
"""
from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass

import torch
import torch.nn as nn

from nas import registry
from nas.errors import ArchError, SpaceError
from nas.space import SearchSpace

KNOBS = ("heads", "key_dims", "attn_ratio")


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
    knobs: tuple[str, ...]           # which of KNOBS a space must give this mixer (and no others)
    heads_split_width: bool = False  # each head takes width / heads channels: every width divisible by every head count
    paper: str = ""                  # where the design comes from (model card, docs)
    timm_family: str = ""            # prefix of timm's names for the paper's networks, e.g. "efficientvit_m": the
                                     # cost model's ops of this mixer are calibrated only if such a network is in its
                                     # published calibration set (otherwise extrapolated, and tables say so)


_MIXERS: dict[str, MixerEntry] = {}
# Modules that register the built-in mixers, imported on first lookup (they import this module, not the reverse).
_BUILTINS = ("supernet.attention", "supernet.cga", "supernet.ssa")


def _load_builtins() -> None:
    for module in _BUILTINS:
        importlib.import_module(module)


def register_mixer(name: str, static_cls: type[nn.Module], elastic_cls: type[ElasticMixer], *,
                   knobs: tuple[str, ...], heads_split_width: bool = False, paper: str = "",
                   timm_family: str = "") -> MixerEntry:
    """Make ``name`` a token mixer every layer knows: spaces may list it, the supernet gets a slot for it.

    ``knobs``: which of ``heads``, ``key_dims``, ``attn_ratio`` the mixer takes (its space entry must give exactly
    these; an arch holds 0 for a knob the mixer lacks, and latency ops carry only the knobs it has)."""
    if not issubclass(elastic_cls, ElasticMixer):
        raise TypeError(f"mixer {name!r}: {elastic_cls.__name__} must subclass supernet.mixers.ElasticMixer")
    unknown = sorted(set(knobs) - set(KNOBS))
    if unknown:
        raise TypeError(f"mixer {name!r}: unknown knob {unknown[0]!r}; known: {', '.join(KNOBS)}")
    return registry.add(_MIXERS, name, MixerEntry(name, static_cls, elastic_cls, tuple(knobs), heads_split_width,
                                                  paper, timm_family), "mixer")


def get_mixer(name: str) -> MixerEntry:
    _load_builtins()
    if name not in _MIXERS:
        raise ArchError(f"token mixer {name!r} is not registered; known: {', '.join(mixer_names())}")
    return _MIXERS[name]


def mixer_names() -> list[str]:
    _load_builtins()
    return sorted(_MIXERS)


def build_static(mixer: str, dim: int, heads: int, key_dim: int, attn_ratio: int, resolution: int) -> nn.Module:
    """The static module of ``mixer`` for one block (knobs it lacks are 0)."""
    return get_mixer(mixer).static_cls(dim, num_heads=heads, key_dim=key_dim, attn_ratio=attn_ratio,
                                       resolution=resolution)


def check_space(space: SearchSpace) -> None:
    """Refuse a space whose ``attention.mixers`` give a mixer knobs it does not take (or lack ones it needs), or
    widths its heads cannot split; one line naming the space, the mixer and what would be accepted."""
    for name, choices in space.mixer_choices:
        entry = get_mixer(name)
        given = choices.knob_names()
        if set(given) != set(entry.knobs):
            want = "{" + ", ".join(f"{k}: ..." for k in entry.knobs) + "}"
            raise SpaceError(f"search space {space.source or space.name}: mixer {name!r} takes knobs "
                             f"{', '.join(entry.knobs) or 'none'}; got {', '.join(given) or 'none'} (write "
                             f"{name}: {want})")
        if entry.heads_split_width:
            bad = [(w, h) for w in space.stages[-1].widths for h in choices.heads if w % h]
            if bad:
                raise SpaceError(f"search space {space.source or space.name}: mixer {name!r} splits the width "
                                 f"across heads, but width {bad[0][0]} is not divisible by {bad[0][1]} heads; "
                                 "accepted: last-stage widths divisible by every head count")

"""nas: latency-driven neural architecture search for efficient vision transformers."""
import os as _os
from collections.abc import Iterable as _Iterable
from typing import Any as _Any

__version__ = "0.1.0"
# The distribution's name (what pip installs; the command and the import package stay `nas`). PyPI's `nas` is an
# unrelated project, so every hint names this one.
DISTRIBUTION = "vit-latency-nas"


def load_reference(reference: str) -> _Any:
    """What a plug-in record names as ``"module:attribute"``, imported on first use (records stay torch-free)."""
    import importlib

    module, name = reference.split(":")
    return getattr(importlib.import_module(module), name)


def not_installed(modules: _Iterable[str]) -> list[str]:
    """Which of ``modules`` cannot be imported here (found without importing them)."""
    from importlib.util import find_spec

    return [m for m in modules if find_spec(m) is None]


def install_hint(extra: str) -> str:
    """How to add an optional part: ``pip install 'vit-latency-nas[onnx]'`` (or ``-e '.[onnx]'`` in a clone)."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"

# Ray reports usage statistics to its developers unless told not to; a tool that starts Ray for its users does not
# opt them in. Set RAY_USAGE_STATS_ENABLED=1 to share them. (Ray reads it when a cluster starts.)
_os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

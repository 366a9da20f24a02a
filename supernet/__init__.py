"""The weight-sharing supernet (elastic layers) and the plain models it extracts.

``from supernet import Supernet, EfficientFormerNet`` imports torch on first use only, so the torch-free modules
(``supernet.config``, ``supernet.mixers``' names) stay cheap for the command line.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from supernet.static import EfficientFormerNet
    from supernet.supernet import Supernet

_LAZY = {"Supernet": "supernet.supernet", "EfficientFormerNet": "supernet.static"}
__all__ = ["EfficientFormerNet", "Supernet"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'supernet' has no attribute {name!r}")

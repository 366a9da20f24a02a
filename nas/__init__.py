"""nas: latency-driven neural architecture search for efficient vision transformers."""
import os as _os

__version__ = "0.1.0"
# The distribution's name (what pip installs; the command and the import package stay `nas`). PyPI's `nas` is an
# unrelated project, so every hint names this one.
DISTRIBUTION = "vit-latency-nas"


def install_hint(extra: str) -> str:
    """How to add an optional part: ``pip install 'vit-latency-nas[onnx]'`` (or ``-e '.[onnx]'`` in a clone)."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"

# Ray reports usage statistics to its developers unless told not to; a tool that starts Ray for its users does not
# opt them in. Set RAY_USAGE_STATS_ENABLED=1 to share them. (Ray reads it when a cluster starts.)
_os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

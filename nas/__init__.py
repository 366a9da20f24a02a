"""nas: latency-driven neural architecture search for efficient vision transformers."""
import os as _os

__version__ = "0.1.0"

# Ray reports usage statistics to its developers unless told not to; a tool that starts Ray for its users does not
# opt them in. Set RAY_USAGE_STATS_ENABLED=1 to share them. (Ray reads it when a cluster starts.)
_os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

"""How busy this machine is, in one place: training commands use it to let idle threads sleep, table builds to
say (and record) that their numbers price a loaded machine, ``validate`` and ``check`` to report it beside their
errors."""
from __future__ import annotations

import os
from typing import Any


def load_now() -> dict[str, Any]:
    """The 1-minute load average and the number of cores (load 0 where the platform has no load average)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return {"load_1m": round(load, 2), "cores": os.cpu_count() or 1}


def is_busy(load: dict[str, Any]) -> bool:
    """Other work holds at least a core: more runnable work than all cores but one (1.0 on 2 cores). Measured on 2
    cores: a 2-thread training beside another ran 4-8x slower, and a table built at load 7 priced archs 2.5x high."""
    return load["cores"] > 1 and load["load_1m"] > load["cores"] - 1


def busy_words(load: dict[str, Any]) -> str:
    return f"load {load['load_1m']:.1f} on {load['cores']} cores"

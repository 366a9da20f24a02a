"""How busy this machine is, in one place: training commands use it to let idle threads sleep, table builds to
say (and record) that their numbers price a loaded machine, ``validate`` and ``check`` to report it beside their
errors."""
from __future__ import annotations

import os
import time
from typing import Any


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all cores since boot, from Linux's /proc/stat; ``None`` elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]     # user nice system idle iowait irq softirq steal
    except (OSError, ValueError):
        return None
    return fields[3] + fields[4], sum(fields)


def load_now(sample_s: float = 0.0) -> dict[str, Any]:
    """The 1-minute load average and the number of cores (load 0 where the platform has no load average); with
    ``sample_s``, also how many cores other work kept busy over that many seconds (``busy_cores``; Linux), which
    the load average, a minute's decaying mean, lags behind: just after a workload ends or is paused it still
    reads ~2 on an idle 2-core machine (every table built in issue #29's quiet runs was called busy by it)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    out: dict[str, Any] = {"load_1m": round(load, 2), "cores": os.cpu_count() or 1}
    first = _cpu_times() if sample_s > 0 else None
    if first is not None:
        time.sleep(sample_s)           # this process sleeps: whatever runs meanwhile is other work
        second = _cpu_times()
        if second is not None and second[1] > first[1]:
            idle = (second[0] - first[0]) / (second[1] - first[1])
            out["busy_cores"] = round(out["cores"] * max(0.0, 1 - idle), 2)
    return out


def is_busy(load: dict[str, Any]) -> bool:
    """Other work holds at least a core: more runnable work than all cores but one (1.0 on 2 cores), by the
    sampled busy cores where there are some, else by the load average. Measured on 2 cores: a 2-thread training
    beside another ran 4-8x slower, and a table built at load 7 priced archs 2.5x high."""
    busy = load.get("busy_cores", load["load_1m"])
    return load["cores"] > 1 and busy > load["cores"] - 1


def busy_words(load: dict[str, Any]) -> str:
    words = f"load {load['load_1m']:.1f} on {load['cores']} cores"
    if "busy_cores" in load:
        words += f", {load['busy_cores']:.1f} of them busy with other work just before"
    return words


# how long the long timing commands (lut build, validate, check, adapt) watch the machine before they measure
LOAD_SAMPLE_S = 0.5

"""Published latencies to calibrate on, and the timm models they name (random weights, re-parameterised as they run
on the device; nothing is downloaded)."""
from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch.nn as nn

from nas.errors import UsageError
from nas.latency.costmodel.model import example_input
from nas.latency.trace import OpRecord, trace_ops

FIGURE_WEIGHT = 0.5    # rows read off a plot count half (the calibration README asks for less weight)
PROTOCOLS = ("P1", "P2")


def timm_model(name: str) -> nn.Module:
    """A timm model by name, random weights (nothing is downloaded), re-parameterised as it runs on the phone."""
    import timm
    from timm.utils.model import reparameterize_model

    if name not in timm.list_models():
        import difflib

        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
        raise UsageError(f"unknown timm model {name!r}{hint}")
    model = timm.create_model(name, pretrained=False).eval()
    return reparameterize_model(model)


def timm_input_size(name: str) -> int:
    import timm

    cfg = timm.get_pretrained_cfg(name)
    size = getattr(cfg, "input_size", None) if cfg is not None else None
    return int(size[-1]) if size else 224


@dataclass(frozen=True)
class Published:
    model: str
    timm_name: str
    input_size: int
    latency_ms: float
    protocol: str
    kind: str
    source: str

    @property
    def weight(self) -> float:
        return FIGURE_WEIGHT if self.kind.startswith("figure") else 1.0

    @property
    def family(self) -> str:
        """Model family for leave-one-family-out: the name up to its size suffix (efficientformerv2, repvit, ...)."""
        found = re.match(r"[a-z]+(v\d)?", self.timm_name)
        return found.group(0) if found else self.timm_name


def shipped_calibration_csv(device: str = "iphone12") -> Path:
    return Path(str(resources.files("latency_luts") / "calibration" / f"{device}_published.csv"))


def load_published(path: str | Path, protocol: str | None = None) -> list[Published]:
    path = Path(path)
    if protocol is not None and protocol not in PROTOCOLS:
        raise UsageError(f"--protocol {protocol!r} is not known; allowed: {', '.join(PROTOCOLS)}")
    try:
        rows = list(csv.DictReader(path.open(encoding="utf-8")))
    except FileNotFoundError:
        raise UsageError(f"calibration file {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"calibration file {path} is a folder; expected a CSV file") from None
    except (UnicodeDecodeError, csv.Error):
        raise UsageError(f"calibration file {path} is not CSV text (binary, or another encoding)") from None
    need = ("model", "timm_name", "input_size", "latency_ms", "protocol", "kind", "source")
    if not rows or any(c not in rows[0] for c in need):
        raise UsageError(f"calibration file {path} must have the columns {', '.join(need)}")
    out = []
    for i, r in enumerate(rows, start=2):
        try:
            item = Published(r["model"], r["timm_name"], int(r["input_size"]), float(r["latency_ms"]),
                             r["protocol"], r["kind"], r["source"])
        except ValueError:
            raise UsageError(f"calibration file {path} line {i}: input_size and latency_ms must be numbers") from None
        if protocol is None or item.protocol == protocol:
            out.append(item)
    if not out:
        raise UsageError(f"calibration file {path} has no rows of protocol {protocol}")
    return out


def trace_published(rows: Sequence[Published], progress: bool = False) -> list[list[OpRecord]]:
    from tqdm import tqdm

    traces: dict[tuple[str, int], list[OpRecord]] = {}
    for r in tqdm(rows, desc="tracing", unit="model", disable=not progress):
        if (r.timm_name, r.input_size) not in traces:
            traces[(r.timm_name, r.input_size)] = trace_ops(timm_model(r.timm_name), example_input(r.input_size))
    return [traces[(r.timm_name, r.input_size)] for r in rows]

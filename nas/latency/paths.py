"""Where latency tables and cost models live: shipped with the package (``latency_luts/``) or made on this machine
(``~/.cache/nas/latency_luts/``, or ``$NAS_LUT_DIR``), the local one first. Torch-free."""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from nas.space import DEFAULT_SPACE


def local_table_dir() -> Path:
    return Path(os.environ.get("NAS_LUT_DIR", Path.home() / ".cache" / "nas" / "latency_luts"))


def table_filename(device: str, space: str = DEFAULT_SPACE) -> str:
    """``DEVICE[-SPACE].json``; both names are checked to be plain file names, so that a space named ``../x`` in a
    YAML or a manifest header cannot put a table outside the table folder."""
    from nas.fileio import check_name

    check_name(device, "device")
    check_name(space, "space")
    return f"{device}.json" if space == DEFAULT_SPACE else f"{device}-{space}.json"


def local_table_path(device: str, space: str = DEFAULT_SPACE) -> Path:
    """Where tables built, ingested or estimated on this machine go (looked up before the shipped ones)."""
    return local_table_dir() / table_filename(device, space)


def shipped_table_path(device: str, space: str = DEFAULT_SPACE) -> Path | None:
    shipped = resources.files("latency_luts") / table_filename(device, space)
    return Path(str(shipped)) if shipped.is_file() else None


def default_table_path(device: str, space: str = DEFAULT_SPACE) -> Path:
    """Where ``nas lut build`` writes and ``nas predict`` looks: a local table first, then a shipped one."""
    local = local_table_path(device, space)
    if local.exists():
        return local
    return shipped_table_path(device, space) or local

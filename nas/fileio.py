"""Atomic JSON files: readers see the old file or the new one, never half of one (also after a kill -9)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def read_json(path: str | Path, what: str, missing_hint: str = "") -> Any:
    """A JSON file's content; a missing or malformed file is a ``UsageError`` naming ``what`` and the path."""
    from nas.errors import UsageError

    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist{missing_hint}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None


def write_json_atomic(path: str | Path, data: Any, indent: int | None = 1) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=indent)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # mkstemp makes 0600; the result should be an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

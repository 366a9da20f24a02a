"""Atomic outputs: readers see the old file or the new one, never half of one (also after a kill -9)."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class DuplicateKeyError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(f"key {key!r} is given twice in one object")
        out[key] = value
    return out


def loads_strict(text: str) -> Any:
    """``json.loads`` that refuses an object with a key given twice (plain JSON keeps the last one silently, so
    a hand edit that adds a second "kind" would win unseen)."""
    return json.loads(text, object_pairs_hook=_no_duplicates)


def read_json(path: str | Path, what: str, missing_hint: str = "") -> Any:
    """A JSON file's content; a missing or malformed file (or one with a key given twice) is a ``UsageError``
    naming ``what`` and the path."""
    from nas.errors import UsageError

    path = Path(path)
    try:
        return loads_strict(path.read_text())
    except DuplicateKeyError as exc:
        raise UsageError(f"{what} {path}: {exc}; keep one") from None
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist{missing_hint}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except UnicodeDecodeError:   # binary, or UTF-16 from a Windows editor
        raise UsageError(f"{what} {path} is not UTF-8 text (binary, or another encoding); expected a JSON file"
                         ) from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path} is a folder; expected a JSON file") from None


def finite_json(data: Any) -> Any:
    """``data`` with every non-finite float (inf, nan) as ``None``: JSON has no such numbers, and Python's
    ``Infinity``/``NaN`` tokens break every other JSON reader."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite_json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_json(v) for v in data]
    return data


def json_text(data: Any, indent: int | None = None) -> str:
    """Strict JSON of ``data`` (non-finite numbers written as null)."""
    return json.dumps(finite_json(data), indent=indent, allow_nan=False, default=_fallback)


def _fallback(value: Any) -> Any:
    """numpy scalars and paths, which results carry now and then, as plain JSON values."""
    if hasattr(value, "item"):
        return finite_json(value.item())
    return str(value)


def write_json_atomic(path: str | Path, data: Any, indent: int | None = 1) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json_text(data, indent))
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # mkstemp makes 0600; the result should be an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """A staging path next to ``path`` to write a file or a folder into; it replaces ``path`` only on success.

    For writers that take a path rather than a file object (``torch.save``, ``torch.onnx.export``, Core ML's
    ``save``, timm's ``save_for_hf``): a kill mid-write leaves the previous ``path`` (or none), never half of one.
    The staging name is this process's own, so two writers of one ``path`` each end with a whole result in place
    (the later one stays), never a mix and never one deleting the other's staging. ``path`` must not be a
    folder unless the caller replaces folders (exports): a PNG asked for at an existing folder's path is refused by
    ``replace_into``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    staging.rmdir()                  # the unique name is the point: the writer creates the file or folder itself
    staging = staging.with_name(staging.name + "".join(path.suffixes[-1:]))
    try:
        yield staging
        _usual_modes(staging)
        replace_into(staging, path)
    except BaseException:
        _remove(staging)
        raise


def _usual_modes(staged: Path) -> None:
    """Files 0666 and folders 0777 less the umask (0644/0755 as usual), as ``open`` makes them: some writers
    (safetensors, coremltools) make theirs 0600/0700, which other users of a shared model folder cannot read."""
    umask = os.umask(0)
    os.umask(umask)
    for item in [staged, *staged.rglob("*")] if staged.is_dir() else [staged]:
        if not item.is_symlink() and item.exists():
            item.chmod((0o777 if item.is_dir() else 0o666) & ~umask)


def replace_into(staging: Path, path: Path) -> None:
    """Move ``staging`` to ``path`` atomically: a file replaces a file; a folder replaces a folder (the old one is
    first renamed aside under a name of this process's, then removed, so a concurrent writer's finished folder is
    never merged with ours). A folder where a file is to go is refused."""
    if staging.is_file() and path.is_dir() and not path.is_symlink():
        from nas.errors import UsageError

        raise UsageError(f"{path} is a folder; expected a file path there (nothing was replaced)")
    last: OSError | None = None
    for _ in range(10):
        try:
            os.replace(staging, path)
            return
        except OSError as exc:          # a folder in the way (ENOTEMPTY, EEXIST, EISDIR): set it aside, retry
            if not path.is_dir():
                raise
            aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            try:
                os.replace(path, aside / "x")
            except FileNotFoundError:   # another writer moved it first: try again
                pass
            finally:
                _remove(aside)
            last = exc
    assert last is not None
    raise last


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def check_name(value: str, what: str) -> str:
    """``value`` if it is safe as a file name (letters, digits, ``._+-``, not starting with a dot, at most 128
    characters): names that become file names (a study's, a space's, a device's) must stay in their folder."""
    from nas.errors import UsageError

    if not _SAFE_NAME.fullmatch(value or "") or ".." in value:
        raise UsageError(f"{what} {value!r}: not usable as a file name; accepted: up to 128 letters, digits and "
                         "._+- (not starting with a dot, no '..' and no '/'), e.g. tiny_v2")
    return value


# The mark of an output folder nas made (a run directory, an export, a ranking check's state): only such a folder
# (or an empty one) is written into or replaced, so `--out ~/Documents` can never delete or overwrite what a user
# keeps there. Folders written before the mark existed are known by the file each kind always holds.
OWNER_MARK = ".nas-output"
_WRITTEN_BEFORE_THE_MARK = ("run.json", "study.log", "export_check.json", "state.json", "manifest.json")


def mark_owned(folder: Path, command: str) -> None:
    """Mark ``folder`` as an output of ``command`` (a small JSON file; see ``OWNER_MARK``)."""
    mark = folder / OWNER_MARK
    if not mark.exists():
        mark.write_text(json.dumps({"written_by": f"nas {command}"}) + "\n")


def check_owned(path: Path, flag: str) -> None:
    """Refuse an existing folder with files in it that nas did not make: nas writes into, and replaces, only
    folders it made (or empty ones)."""
    from nas.errors import UsageError

    if not path.is_dir() or (path / OWNER_MARK).is_file():
        return
    if any(path.iterdir()) and not any((path / n).exists() for n in _WRITTEN_BEFORE_THE_MARK):
        raise UsageError(f"{flag} {path} is a folder with files that nas did not write (no {OWNER_MARK} in it); nas "
                         "writes into and replaces only folders it made: give a new or empty folder")


# The PNG text chunk every plot of nas carries (``nas.plots``), by which a later run knows the file is its own.
PNG_SOFTWARE = "nas (vit-latency-nas)"
# The CSV headers nas writes (training metrics, trials).
_NAS_CSV_STARTS = (b"epoch,", b"number,", b"trial,")


def written_by_nas(path: Path) -> bool:
    """Whether the file at ``path`` is one nas writes, by its content: a table, cost model, timings or state JSON
    (their format tags), a plot (its PNG text chunk), a supernet checkpoint (its format tag inside the zip), one of
    nas's CSVs, or nothing yet (empty)."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if not head.strip():
        return True
    if head.startswith(b"\x89PNG"):
        return b"Software\x00" + PNG_SOFTWARE.encode() in head
    if head.startswith(b"PK\x03\x04"):
        return _is_nas_checkpoint(path)
    if head.lstrip().startswith((b"{", b"[")):
        return _is_nas_json(path)
    return head.startswith(_NAS_CSV_STARTS)


def _is_nas_json(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (ValueError, OSError):
        return False
    if not isinstance(data, dict):
        return False
    header: dict[str, Any] = data["header"] if isinstance(data.get("header"), dict) else {}
    tags = (data.get("schema"), data.get("format"), header.get("schema"))
    return ("schema_version" in data and "produced_by" in header) or any(
        isinstance(t, str) and t.startswith("nas-") for t in tags)


def _is_nas_checkpoint(path: Path) -> bool:
    """A torch zip whose pickle names nas's checkpoint format (read as bytes: nothing is unpickled)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            return bool(pickles) and b"nas-supernet/" in archive.read(pickles[0])
    except (zipfile.BadZipFile, OSError, KeyError):
        return False


def check_replaceable_file(path: Path, flag: str) -> None:
    """Refuse an existing file that nas did not write (a thesis, or a figure or JSON of the user's own, given as
    --out by mistake): an output file is replaced only when it is one of nas's (``written_by_nas``)."""
    from nas.errors import UsageError

    if path.is_file() and not written_by_nas(path):
        raise UsageError(f"{flag} {path} exists and is not a file nas wrote (a table, plot, checkpoint or report of "
                         "nas carries a mark of its own); nas replaces only its own files: choose another path, or "
                         "remove it first")


def refuse_links(folder: Path, names: tuple[str, ...]) -> None:
    """Refuse a run directory in which one of the files the tool writes is a symbolic link: appending to it, or
    replacing it, would write wherever the link points."""
    from nas.errors import UsageError

    for name in names:
        if (folder / name).is_symlink():
            raise UsageError(f"{folder / name} is a symbolic link; nas writes only real files in its run folders "
                             "and does not follow links there: remove the link, or choose another --out")


# What ``check_output`` writes (and removes) to prove a folder takes data: big enough that a full disk refuses it.
_PROBE_BYTES = 64 * 1024


def check_output(path: str | Path, flag: str) -> None:
    """Refuse, before any work, an output location that cannot be written: a parent that is a file (bad input,
    ``UsageError``), or a folder that is read-only or full (``EnvironmentFailure``). Folders that do not exist yet
    are fine; they are made when the output is written."""
    from nas.errors import EnvironmentFailure, UsageError

    path = Path(path).expanduser()
    existing = path.parent if not path.exists() else (path if path.is_dir() else path.parent)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{flag} {path}: {existing} is a file, not a folder; give a path under a folder")
    try:
        with tempfile.TemporaryFile(dir=existing) as probe:
            probe.write(b"\0" * _PROBE_BYTES)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        raise EnvironmentFailure(f"{flag} {path}: cannot write in {existing}: {exc.strerror or exc}") from None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()

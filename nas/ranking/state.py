"""``OUT/state.json`` of a ranking check: the settings a resume must match, the archs, and every finished piece
(rewritten atomically after each, so ``--resume`` after a kill redoes nothing that finished)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from nas.errors import UsageError
from nas.fileio import read_json, write_json_atomic
from nas.schemas import check

STATE_FORMAT = "nas-rank-state/1"


class RankState:
    """``OUT/state.json``: the settings a resume must match, the archs, and every finished piece."""

    def __init__(self, path: Path, fingerprint: dict[str, Any]):
        self.path, self.fingerprint = path, fingerprint
        self.archs: list[dict[str, Any]] = []
        self.scores: dict[str, dict[str, float]] = {}      # arch name -> score name -> value
        self.trainings: dict[str, dict[str, Any]] = {}     # job key -> result

    @classmethod
    def open(cls, path: Path, fingerprint: dict[str, Any], resume: bool) -> RankState:
        state = cls(path, fingerprint)
        if not path.exists():
            if resume:
                print(f"nas: note: --resume: nothing to resume in {path.parent}; starting", file=sys.stderr)
            return state
        if not resume:
            raise UsageError(f"--out {path.parent} holds a ranking check already; pass --resume to finish it, or "
                             "choose another --out")
        saved = check(read_json(path, "ranking state"), "ranking state", str(path))
        theirs: dict[str, Any] = saved["fingerprint"]
        for key, mine in fingerprint.items():          # the options first, in the words the user typed
            if theirs.get(key) != mine:
                raise UsageError(_resume_mismatch(path.parent, key, theirs.get(key), mine))
        state.archs, state.scores, state.trainings = saved["archs"], saved["scores"], saved["trainings"]
        return state

    def save(self) -> None:
        write_json_atomic(self.path, {"format": STATE_FORMAT, "fingerprint": self.fingerprint, "archs": self.archs,
                                      "scores": self.scores, "trainings": self.trainings})


def _resume_mismatch(out: Path, key: str, theirs: Any, mine: Any) -> str:
    """Why a resume is refused, naming the option (or the checkpoint) and both values."""
    if key == "supernet_sha256":
        return (f"--resume: {out} was started on another checkpoint (the file's contents differ); give that "
                "checkpoint, or choose another --out")
    if key == "standalone_recipe" and isinstance(theirs, dict) and isinstance(mine, dict):
        field_name = next(k for k in mine if theirs.get(k) != mine[k])
        key, theirs, mine = field_name, theirs.get(field_name), mine[field_name]
    flag = "--" + key.replace("_", "-")

    def given(value: Any) -> str:          # an option left at its default is saved as None
        return f"without {flag}" if value is None else f"with {flag} {value}"

    asked = f"leaves {flag} out" if mine is None else f"asks for {flag} {mine}"
    return (f"--resume: {out} was started {given(theirs)}, this run {asked}; rerun {given(theirs)} or choose another "
            "--out")

"""Bad input that used to pass: non-finite numbers, and a latency table used as another device's. One line, exit 2
(issue #13's contract)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_nas

SHIPPED_IPHONE12 = Path(__file__).resolve().parents[2] / "latency_luts" / "iphone12.json"


@pytest.mark.parametrize("args, words", [
    (["search", "--budget-ms", "inf", "--device", "iphone12"], "--budget-ms inf: expected a positive, finite"),
    (["search", "--budget-ms", "1.6", "--device", "iphone12", "--max-params", "nan"], "expected a positive"),
    (["supernet", "train", "--space", "tiny", "--data", "builtin:digits", "--epochs", "1", "--lr", "inf"],
     "'inf' is not finite"),
    (["predict", "--device", "cpu", "--lut", str(SHIPPED_IPHONE12), "--arch", "l1"],
     "is a table of device 'iphone12'"),
])
def test_refused_in_one_line(tmp_path, args, words):
    proc = run_nas(*args, "--out", str(tmp_path / "out")) if args[0] != "predict" else run_nas(*args)
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "out").exists()

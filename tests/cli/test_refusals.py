"""Bad input that used to pass: non-finite numbers, and a latency table used as another device's. One line, exit 2
(issue #13's contract)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_nas

SHIPPED_IPHONE12 = Path(__file__).resolve().parents[2] / "latency_luts" / "iphone12.json"


@pytest.mark.parametrize("args, words", [
    (["search", "--budget-ms", "inf", "--device", "iphone12"],
     "--budget-ms inf: expected a positive number of milliseconds (a finite one)"),
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


@pytest.fixture
def bad_files(tmp_path):
    utf16 = tmp_path / "utf16.json"
    utf16.write_text('{"widths": [48]}', encoding="utf-16")
    binary = tmp_path / "binary.json"
    binary.write_bytes(bytes(range(256)))
    folder = tmp_path / "folder.json"
    folder.mkdir()
    return {"utf16": utf16, "binary": binary, "folder": folder}


@pytest.mark.parametrize("kind", ["utf16", "binary"])
@pytest.mark.parametrize("command, words", [
    (["predict", "--device", "iphone12", "--arch", "{f}"], "is not UTF-8 text"),
    (["predict", "--device", "iphone12", "--arch", "l1", "--lut", "{f}"], "latency table"),
    (["lut", "show", "{f}"], "latency table"),
    (["lut", "ingest", "{f}", "{f}"], "not UTF-8 text"),
])
def test_files_that_are_not_utf8_text_are_refused_in_one_line(bad_files, kind, command, words):
    proc = run_nas(*[part.replace("{f}", str(bad_files[kind])) for part in command])
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_folder_where_a_table_is_expected_is_refused(bad_files):
    proc = run_nas("predict", "--device", "iphone12", "--arch", "l1", "--lut", str(bad_files["folder"]))
    assert proc.returncode == 2 and "folder.json" in proc.stderr and "Traceback" not in proc.stderr

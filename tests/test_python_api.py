"""docs/python-api.md's search-then-export block, run as written (in a temporary folder): the documented API is
kept working, not just described."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


@pytest.mark.slow
def test_the_documented_search_then_export_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], str(DOC), "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert " ms, objective " in printed[0] and printed[1] == "{'pt': True, 'onnx': True}"
    assert (tmp_path / "runs" / "api" / "best_arch.json").is_file()
    assert (tmp_path / "export" / "api" / "model.onnx").is_file()

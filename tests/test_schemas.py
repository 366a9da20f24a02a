"""The schemas of nas/schemas.py: every file the project ships passes its own schema, JSON Schema's blind spot
(NaN passes every bound) is closed, the docs name every kind, and a message names the field, value and what is
accepted."""
from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path

import pytest
import yaml

from nas.errors import UsageError
from nas.schemas import SCHEMAS, check

ROOT = Path(__file__).resolve().parents[1]


def test_every_shipped_file_passes_its_schema():
    luts = resources.files("latency_luts")
    tables = [p for p in luts.iterdir() if p.name.endswith(".json") and not p.name.endswith(".costmodel.json")]
    models = [p for p in luts.iterdir() if p.name.endswith(".costmodel.json")]
    spaces = [p for p in resources.files("search_spaces").iterdir() if p.name.endswith(".yaml")]
    assert tables and models and len(spaces) >= 4
    for path in tables:
        check(json.loads(path.read_text()), "latency table", path.name)
    for path in models:
        check(json.loads(path.read_text()), "cost model", path.name)
    for path in spaces:
        check(yaml.safe_load(path.read_text()), "search space", path.name)


def test_nan_and_infinity_fail_every_number_that_is_declared_finite():
    model = json.loads((ROOT / "latency_luts" / "iphone12.costmodel.json").read_text())
    for value in (math.nan, math.inf):
        bad = {**model, "multipliers": {**model["multipliers"], "norm": value}}
        with pytest.raises(UsageError, match=rf"cost model m.json: field 'multipliers.norm' = {value!r}; expected "
                                             "a positive, finite number"):
            check(bad, "cost model", "m.json")


def test_an_arch_of_the_wrong_shape_names_field_value_and_what_is_accepted(tiny):
    arch = tiny.preset("small").to_dict()
    with pytest.raises(UsageError, match=r"^arch: field 'heads\[0\]' = 'two'; expected a JSON integer$"):
        check({**arch, "heads": ["two"]}, "arch")
    with pytest.raises(UsageError, match=r"^arch: field 'mixers' is missing; required: space, widths"):
        check({k: v for k, v in arch.items() if k != "mixers"}, "arch")


def test_a_checkpoint_with_a_bool_for_its_classes_is_refused():
    with pytest.raises(UsageError, match="field 'num_classes' = True; expected a positive integer"):
        check({"format": "nas-supernet/1", "space": "tiny", "state_dict": {}, "num_classes": True}, "checkpoint")


def test_the_docs_name_every_schema():
    doc = (ROOT / "docs" / "file-formats.md").read_text()
    assert [kind for kind in SCHEMAS if f"schema `{kind}`" not in doc] == []


def test_format_tags_in_the_schemas_are_the_ones_the_writers_write():
    from nas.latency.costmodel.model import SCHEMA as COST_MODEL
    from nas.ranking.state import STATE_FORMAT
    from supernet.checkpoint import CHECKPOINT_FORMAT

    tags = {kind: SCHEMAS[kind]["properties"]["format" if "format" in SCHEMAS[kind]["properties"] else "schema"]
            ["const"] for kind in ("cost model", "ranking state", "checkpoint")}
    assert tags == {"cost model": COST_MODEL, "ranking state": STATE_FORMAT, "checkpoint": CHECKPOINT_FORMAT}

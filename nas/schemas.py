"""One JSON Schema per kind of file nas reads back (besides latency tables, which ``nas.latency.table`` checks
entry by entry): what a reader may rely on, checked before use, so that a file of the right syntax but the wrong
shape (edited by hand, cut, or written by another version) is refused in one line naming the file, the field, the
value and what is accepted, instead of failing somewhere inside.

The schemas are data (JSON Schema, draft 2020-12, checked by ``jsonschema``): ``docs/file-formats.md`` shows them,
and a new file kind is one more entry in ``SCHEMAS``. Only what readers use is required; other fields pass."""
from __future__ import annotations

from typing import Any

from nas.errors import UsageError

_NUMBER_MS = {"type": "number", "exclusiveMinimum": 0, "maximum": 1e9,
              "description": "a positive, finite number of milliseconds"}
_TEXT = {"type": "string", "minLength": 1, "description": "non-empty text"}
_ARCH = {"type": "object", "required": ["widths", "depths"], "description": "an arch (nas space show: Arch JSON)"}

SCHEMAS: dict[str, dict[str, Any]] = {
    # run.json of nas search (read by export's model card and by nas dashboard)
    "run summary": {
        "type": "object",
        "properties": {
            "storage": {"type": ["string", "null"], "minLength": 1,
                        "description": "the study's storage (a journal file or a database URL), or null (slimming)"},
            "strategy": _TEXT,
            "best": {"type": "object", "properties": {
                "objective": {"type": "number", "description": "a number"},
                "objective_name": _TEXT,
                "objective_is_accuracy": {"type": "boolean", "description": "true or false"}}},
            "budgets": {"type": "array", "description": "a list of {device, budget_ms}", "items": {
                "type": "object", "required": ["device", "budget_ms"], "description": "{device, budget_ms}",
                "properties": {"device": _TEXT, "budget_ms": _NUMBER_MS,
                               "guarantee": {"type": ["number", "null"], "minimum": 0, "maximum": 1,
                                             "description": "a coverage in [0, 1], or null"}}}},
        },
    },
    # slim.json: EfficientFormer's slimming, step by step (resumed from it)
    "slimming record": {
        "type": "object", "required": ["schema", "config", "steps", "evaluations", "evaluated"],
        "properties": {
            "schema": _TEXT, "config": {"type": "object", "description": "the settings it was started with"},
            "steps": {"type": "array", "description": "a list of steps", "items": {
                "type": "object", "required": ["arch", "objective", "latency_ms", "feasible"],
                "description": "a step {arch, objective, latency_ms, feasible, ...}",
                "properties": {"arch": _ARCH, "objective": {"type": "number", "description": "a number"},
                               "latency_ms": {"type": "object", "description": "{device: ms}",
                                              "additionalProperties": _NUMBER_MS},
                               "feasible": {"type": "boolean", "description": "true or false"}}}},
            "evaluations": {"type": "integer", "minimum": 0, "description": "a count"},
            "evaluated": {"type": "object", "description": "{arch JSON: objective}",
                          "additionalProperties": {"type": "number", "description": "a number"}},
        },
    },
    # manifest.json of a Core ML build (nas lut build --device iphone12), read by measure and ingest
    "manifest": {
        "type": "object", "required": ["header", "packages"],
        "properties": {
            "header": {"type": "object", "description": "the build's header",
                       "required": ["schema", "device", "space", "input_size", "batch", "compute_units", "precision",
                                    "coremltools_version", "torch_version"],
                       "properties": {"device": _TEXT, "space": _TEXT, "space_source": _TEXT,
                                      "input_size": {"type": "integer", "minimum": 8, "maximum": 4096,
                                                     "description": "an image side in pixels"},
                                      "batch": {"type": "integer", "minimum": 1, "maximum": 4096,
                                                "description": "a batch size"},
                                      "compute_units": _TEXT, "precision": _TEXT}},
            "packages": {"type": "array", "description": "a list of packages", "items": {
                "type": "object", "required": ["id", "kind", "package"], "description": "{id, kind, package, ...}",
                "properties": {"id": _TEXT, "kind": {"enum": ["op", "arch"], "description": "op or arch"},
                               "package": _TEXT, "op": _TEXT, "arch": _ARCH}}},
        },
    },
    # timings of a manifest's packages (nas lut measure on a Mac, or a CSV made into this)
    "timings file": {
        "type": "object", "required": ["header", "timings"],
        "properties": {
            "header": {"type": "object", "required": ["schema"], "description": "{schema, host, ...}"},
            "timings": {"type": "object", "description": "{package id: {median_ms, p10_ms, p90_ms, n}}",
                        "additionalProperties": {
                            "type": "object", "required": ["median_ms"], "description": "{median_ms, ...}",
                            "properties": {"median_ms": _NUMBER_MS, "p10_ms": _NUMBER_MS, "p90_ms": _NUMBER_MS,
                                           "n": {"type": "integer", "minimum": 1, "description": "a count"}}}},
        },
    },
    # an end-to-end calibration point of a table (nas lut build/validate/check, --verify)
    "calibration point": {
        "type": "object", "required": ["arch_json", "measured_ms"],
        "properties": {"arch_json": {**_TEXT, "description": "an arch as JSON text"}, "measured_ms": _NUMBER_MS,
                       "source": _TEXT, "session": _TEXT},
    },
}


def check(data: Any, kind: str, where: str) -> Any:
    """``data`` when it has the shape of a ``kind`` file; a ``UsageError`` naming ``where``, the field, the value and
    what is accepted otherwise."""
    from jsonschema import Draft202012Validator

    errors = sorted(Draft202012Validator(SCHEMAS[kind]).iter_errors(data), key=lambda e: (len(e.path), list(
        map(str, e.path))))
    if not errors:
        return data
    error = errors[0]
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
    expected = error.schema.get("description") if isinstance(error.schema, dict) else None
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        where_in = f" in {field}" if field else ""
        raise UsageError(f"{kind} {where}: field {missing!r} is missing{where_in}; is it a {kind} of this "
                         "version of nas?")
    if expected is None:
        expected = f"a JSON {_JSON_TYPES.get(str(error.validator_value), error.validator_value)}" \
            if error.validator == "type" else error.message
    value = repr(error.instance)
    value = value if len(value) <= 60 else value[:57] + "..."
    place = f"field {field!r}" if field else "the top level"
    raise UsageError(f"{kind} {where}: {place} = {value}; expected {expected}")


_JSON_TYPES = {"object": "object ({...})", "array": "list ([...])", "string": "string", "number": "number",
               "integer": "integer", "boolean": "true or false"}


if __name__ == "__main__":       # python -m nas.schemas: every schema, as docs/file-formats.md points to
    import json

    print(json.dumps(SCHEMAS, indent=2))

"""One JSON Schema per kind of file nas reads back: what a reader may rely on, checked before use, so that a file
of the right syntax but the wrong shape (edited by hand, cut, or written by another version) is refused in one
line naming the file, the field, the value and what is accepted, instead of failing somewhere inside.

The schemas are data (JSON Schema, draft 2020-12, checked by ``jsonschema``, plus one keyword of ours: ``finite``,
since JSON Schema lets NaN through every bound): ``docs/file-formats.md`` shows them, and a new file kind is one
more entry in ``SCHEMAS``. They check shape and ranges; what depends on another file (an arch's values against its
space, a checkpoint's tensors against the space's) stays with the code that knows both. Files nas writes require
only what readers use, so files written by later versions with more fields are still read; files people write by
hand (space YAMLs, archs) refuse unknown fields, so a typo is named rather than ignored."""
from __future__ import annotations

import functools
import math
from typing import Any

from nas.errors import UsageError

_NUMBER_MS = {"type": "number", "exclusiveMinimum": 0, "maximum": 1e9, "finite": True,
              "description": "a positive, finite number of milliseconds"}
_LATENCY_MS = {"type": "number", "minimum": 0, "maximum": 1e9, "finite": True,
               "description": "a finite non-negative number of milliseconds"}
_FINITE = {"type": "number", "finite": True, "description": "a finite number"}
_POSITIVE = {"type": "number", "exclusiveMinimum": 0, "finite": True, "description": "a positive, finite number"}
_TEXT = {"type": "string", "minLength": 1, "description": "non-empty text"}
_INTS = {"type": "array", "items": {"type": "integer"}, "description": "a list of integers"}
_ARCH = {"type": "object", "required": ["widths", "depths"], "description": "an arch (nas space show: Arch JSON)"}
_CHOICES = {"description": "a non-empty list of integers, or {min, max, step}", "anyOf": [
    {"type": "array", "minItems": 1, "items": {"type": "integer"}},
    {"type": "object", "required": ["min", "max"], "additionalProperties": False,
     "properties": {"min": {"type": "integer"}, "max": {"type": "integer"},
                    "step": {"type": "integer", "minimum": 1}}}]}
_MIXER_KNOBS = {"type": ["object", "null"], "additionalProperties": False,
                "description": "the mixer's knobs {heads, key_dims, attn_ratio} (each optional)",
                "properties": {"heads": _CHOICES, "key_dims": _CHOICES,
                               "attn_ratio": {"type": "integer", "minimum": 1, "description": "a positive integer"}}}
_CALIBRATION_POINT = {
    "type": "object", "required": ["arch_json", "measured_ms"], "description": "a calibration point {arch_json, "
    "measured_ms, ...}", "properties": {"arch_json": {**_TEXT, "description": "an arch as JSON text"},
                                       "measured_ms": _NUMBER_MS, "source": _TEXT, "session": _TEXT}}
# predicted = scale * (sum of a table's entries) + offset_ms, fitted on whole archs (nas.latency.correction)
_CORRECTION = {"type": ["object", "null"], "required": ["scale", "offset_ms"],
               "description": "a correction {scale, offset_ms, ...}",
               "properties": {"scale": _POSITIVE, "offset_ms": _FINITE, "base_scale": _POSITIVE,
                              "base_offset_ms": _FINITE, "drift": _FINITE}}
# An int8 table's recipe (nas.latency.quantize)
_INT8_RECIPE = {"type": "object", "required": ["format", "op_types"],
                "description": "an int8 recipe {format, op_types, ...}",
                "properties": {"format": {"const": "onnxruntime static QDQ", "description": "onnxruntime static QDQ"},
                               "op_types": {"type": "array", "items": {"type": "string", "minLength": 1},
                                            "description": "a list of ONNX op types"},
                               "per_channel": {"type": "boolean", "description": "true or false"},
                               "activations": {"enum": ["U8", "S8"], "description": "U8 or S8"},
                               "weights": {"enum": ["S8", "U8"], "description": "S8 or U8"},
                               "calibration": {"enum": ["minmax", "percentile", "entropy"],
                                               "description": "minmax, percentile or entropy"}}}
# What a latency table's header must carry, its kinds and each entry's fields (``nas.latency.table`` reads them).
TABLE_HEADER_FIELDS = ("device", "backend", "backend_version", "torch_version", "threads", "dtype", "batch",
                       "input_size", "space", "host", "date", "kind", "produced_by")
TABLE_KINDS = ("measured", "estimated", "adapted")   # adapted: nas lut adapt, a measured table transferred
TABLE_ENTRY_FIELDS = ("median_ms", "p10_ms", "p90_ms", "n")
TABLE_VERSION = 1
ARCH_FIELDS = ("space", "widths", "depths", "n3d", "mlp_ratios", "heads", "key_dims", "mixers", "slots")
ARCH_OPTIONAL_FIELDS = ("slots",)   # omitted: each stage's blocks sit in its first slots (what every arch meant before)

SCHEMAS: dict[str, dict[str, Any]] = {
    # run.json of nas search (read by export's model card and by nas dashboard)
    "run summary": {
        "type": "object",
        "properties": {
            "storage": {"type": ["string", "null"], "minLength": 1,
                        "description": "the study's storage (a journal file or a database URL); absent or null "
                                       "without a study"},
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
    # a strategy's records as it makes them (evolution.json; nas.search.records.RecordLog), resumed from it
    "strategy records": {
        "type": "object", "required": ["schema", "strategy", "config", "records"],
        "properties": {
            "schema": _TEXT, "strategy": _TEXT,
            "config": {"type": "object", "description": "the settings it was started with"},
            "records": {"type": "array", "description": "a list of records", "items": {
                "type": "object", "required": ["number", "objective", "arch", "latency_ms", "feasible"],
                "additionalProperties": False,
                "description": "a record {number, objective, arch, latency_ms, feasible, ...}",
                "properties": {"number": {"type": "integer", "minimum": 0, "description": "a count"},
                               "arch": _ARCH, "objective": {"type": "number", "finite": True,
                                                            "description": "a finite number"},
                               "latency_ms": {"type": "object", "description": "{device: ms}",
                                              "additionalProperties": _NUMBER_MS},
                               "feasible": {"type": "boolean", "description": "true or false"},
                               "details": {"type": "object", "description": "{name: number}",
                                           "additionalProperties": {"type": "number", "description": "a number"}},
                               "worker_pid": {"type": "integer", "description": "a process id"},
                               "action": _TEXT,
                               "measured_ms": {"type": "object", "description": "{device: ms}",
                                               "additionalProperties": _NUMBER_MS}}}},
        },
    },
    # manifest.json of a build for a device measured elsewhere (nas lut build --device iphone12 or
    # onnxruntime-remote), read by measure and ingest; a /1 manifest (Core ML only) has no package_format
    "manifest": {
        "type": "object", "required": ["header", "packages"],
        "properties": {
            "header": {"type": "object", "description": "the build's header",
                       "required": ["schema", "device", "space", "input_size", "batch", "precision",
                                    "torch_version"],
                       "properties": {"device": _TEXT, "space": _TEXT, "space_source": _TEXT,
                                      "package_format": _TEXT,
                                      "threads": {"type": "integer", "minimum": 0, "maximum": 1024,
                                                  "description": "a thread count"},
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
    "calibration point": _CALIBRATION_POINT,
    # a latency table (nas lut build / estimate / ingest / adapt); its correction lives in the header
    "latency table": {
        "type": "object", "required": ["schema_version", "header", "entries"],
        "properties": {
            "schema_version": {"const": TABLE_VERSION,
                               "description": f"{TABLE_VERSION} (the table format this version of nas reads)"},
            "header": {"type": "object", "required": list(TABLE_HEADER_FIELDS), "description": "the table's header",
                       "properties": {
                           "device": _TEXT, "space": _TEXT, "kind": {"enum": list(TABLE_KINDS),
                                                                     "description": " or ".join(TABLE_KINDS)},
                           "input_size": {"type": "integer", "minimum": 8, "maximum": 4096,
                                          "description": "an image side in pixels"},
                           "batch": {"type": "integer", "minimum": 1, "maximum": 4096, "description": "a batch size"},
                           "digest": {"type": "string", "description": "a sha256 hex digest"},
                           "precision": _TEXT,      # a registered precision, checked by the table's loader
                           "quantization": _INT8_RECIPE,
                           "correction": _CORRECTION}},
            "entries": {"type": "object", "description": "{op signature: {median_ms, p10_ms, p90_ms, n}}",
                        "additionalProperties": {
                            "type": "object", "required": list(TABLE_ENTRY_FIELDS),
                            "description": "an entry {median_ms, p10_ms, p90_ms, n}",
                            "properties": {"median_ms": _LATENCY_MS, "p10_ms": _LATENCY_MS, "p90_ms": _LATENCY_MS,
                                           "n": {"type": "integer", "minimum": 0, "description": "a count"}}}},
            "calibration": {"type": "array", "description": "a list of calibration points",
                            "items": _CALIBRATION_POINT},
        },
    },
    # a device's cost model (nas lut calibrate; shipped as latency_luts/DEVICE.costmodel.json)
    "cost model": {
        "type": "object", "required": ["schema", "device", "peak_gflop_per_ms", "bandwidth_mb_per_ms", "per_op_ms",
                                       "fixed_ms", "multipliers"],
        "properties": {
            "schema": {"const": "nas-cost-model/1", "description": "'nas-cost-model/1'"}, "device": _TEXT,
            "peak_gflop_per_ms": _POSITIVE, "bandwidth_mb_per_ms": _POSITIVE,
            "per_op_ms": {**_FINITE, "minimum": 0, "description": "a finite non-negative number"},
            "fixed_ms": {**_FINITE, "minimum": 0, "description": "a finite non-negative number"},
            "multipliers": {"type": "object", "description": "{op category: positive multiplier}",
                            "additionalProperties": _POSITIVE},
            "fit": {"type": "object", "description": "how it was fitted"},
        },
    },
    # a search space (search_spaces/NAME.yaml, --space FILE), written by hand
    "search space": {
        "type": "object", "required": ["name", "stages", "mlp_ratios", "n3d", "attention"],
        "additionalProperties": False,
        "properties": {
            "name": _TEXT, "description": {"type": "string", "description": "text"},
            "input_size": {"type": "integer", "minimum": 8, "maximum": 4096,
                           "description": "an image side in pixels (8 to 4096)"},
            "num_classes": {"type": "integer", "minimum": 1, "maximum": 100_000,
                            "description": "a number of classes (1 to 100000)"},
            "stages": {"type": "array", "minItems": 2, "description": "a list of at least 2 stages {widths, depths}",
                       "items": {"type": "object", "required": ["widths", "depths"], "additionalProperties": False,
                                 "description": "a stage {widths, depths}",
                                 "properties": {"widths": _CHOICES, "depths": _CHOICES}}},
            "mlp_ratios": _CHOICES, "n3d": _CHOICES,
            "attention": {
                "type": "object", "required": ["mixers"], "additionalProperties": False,
                "description": "{mixers: {name: {heads, key_dims, attn_ratio}}}",
                "properties": {
                    "mixers": {"description": "a mapping of mixer name to its knobs, e.g. {mhsa: {heads: [4, 8], "
                                              "key_dims: [16, 32], attn_ratio: 4}, ssa: {}}; or a list of names",
                               "anyOf": [{"type": "object", "minProperties": 1, "additionalProperties": _MIXER_KNOBS},
                                         {"type": "array", "minItems": 1, "items": {"type": "string"}}]},
                    # the older form: knobs shared by every mixer of the list
                    "heads": _CHOICES, "key_dims": _CHOICES,
                    "attn_ratio": {"type": "integer", "minimum": 1, "description": "a positive integer"}}},
            "presets": {"type": ["object", "null"], "description": "{preset name: {widths, depths, ...}}",
                        "additionalProperties": {"type": "object", "description": "a preset {widths, depths, n3d, "
                                                 "mlp_ratio, heads, key_dim, mixer}"}},
        },
    },
    # an arch (best_arch.json, arch.json, --arch FILE), written by nas or by hand: its shape here, its values
    # against its space in nas.space.SearchSpace.arch_from_dict
    "arch": {
        "type": "object", "additionalProperties": False,
        "required": [f for f in ARCH_FIELDS if f not in ARCH_OPTIONAL_FIELDS],
        "properties": {
            "space": _TEXT, "widths": _INTS, "depths": _INTS,
            "n3d": {"type": "integer", "minimum": 0, "description": "a non-negative integer"},
            "mlp_ratios": {"type": "array", "items": _INTS, "description": "a list of per-stage lists of integers"},
            "heads": _INTS, "key_dims": _INTS,
            "mixers": {"type": "array", "items": {"type": "string"}, "description": "a list of mixer names"},
            "slots": {"type": "array", "items": _INTS, "description": "a list of per-stage lists of integers"},
        },
    },
    # OUT/state.json of nas supernet rank (resumed from it)
    "ranking state": {
        "type": "object", "required": ["format", "fingerprint", "archs", "scores", "trainings"],
        "properties": {
            "format": {"const": "nas-rank-state/1", "description": "'nas-rank-state/1' (written by nas supernet rank)"},
            "fingerprint": {"type": "object", "description": "the settings it was started with"},
            "archs": {"type": "array", "description": "a list of {name, arch, latency_ms}", "items": {
                "type": "object", "required": ["name", "arch", "latency_ms"], "description": "{name, arch, latency_ms}",
                "properties": {"name": _TEXT, "arch": _ARCH, "latency_ms": _NUMBER_MS}}},
            "scores": {"type": "object", "description": "{arch name: {score name: number}}",
                       "additionalProperties": {"type": "object", "description": "{score name: number}",
                                                "additionalProperties": _FINITE}},
            "trainings": {"type": "object", "description": "{job key: {top1, ...}}", "additionalProperties": {
                "type": "object", "required": ["top1"], "description": "a training's result {top1, ...}",
                "properties": {"top1": {"type": "number", "minimum": 0, "maximum": 100, "finite": True,
                                        "description": "a top-1 accuracy in % (0 to 100)"}}}},
        },
    },
    # a supernet checkpoint's fields besides its tensors (supernet.checkpoint checks those against the space)
    "checkpoint": {
        "type": "object", "required": ["format", "space", "state_dict"],
        "properties": {
            "format": {"const": "nas-supernet/1", "description": "'nas-supernet/1' (written by nas supernet train)"},
            "space": {**_TEXT, "description": "a space name or YAML path"},
            "num_classes": {"type": ["integer", "null"], "minimum": 1, "maximum": 100_000,
                            "description": "a positive integer"},
            "state_dict": {"type": "object", "description": "a mapping of names to tensors"},
            "meta": {"type": ["object", "null"], "description": "a mapping"},
            "training": {"type": ["object", "null"], "description": "a mapping"},
        },
    },
}


@functools.cache
def _validator(kind: str) -> Any:
    from jsonschema import Draft202012Validator, ValidationError, validators

    def finite(validator: Any, wanted: bool, instance: Any, schema: Any) -> Any:
        if wanted and isinstance(instance, float) and not math.isfinite(instance):
            yield ValidationError(f"{instance!r} is not finite")

    return validators.extend(Draft202012Validator, {"finite": finite})(SCHEMAS[kind])


def check(data: Any, kind: str, where: str = "", error: type[UsageError] = UsageError) -> Any:
    """``data`` when it has the shape of a ``kind`` file; else ``error`` (a ``UsageError``) naming ``where``, the
    field, the value and what is accepted."""
    found = problem(data, kind)
    if found is None:
        return data
    raise error(f"{kind} {where}: {found}" if where else f"{kind}: {found}")


def problem(data: Any, kind: str) -> str | None:
    """What is wrong with ``data`` as a ``kind`` file (the field, the value, what is accepted), or ``None``."""
    # a wrong format tag or version first (another kind of file: the rest follows from it), then the shallowest;
    # at one level an unknown field before a missing one (a typo names both; the writer recognises their spelling)
    errors = sorted(_validator(kind).iter_errors(data), key=lambda e: (
        e.validator != "const", len(e.path), list(map(str, e.path)), e.validator != "additionalProperties"))
    return _message(errors[0]) if errors else None


def _message(error: Any) -> str:
    if error.validator == "anyOf" and error.context:
        # the branch of the instance's own type (a mapping, not the list form) says what is wrong inside it
        inside = [e for e in error.context if e.validator in ("required", "additionalProperties") or e.relative_path]
        if inside:
            return _message(sorted(inside, key=lambda e: -len(e.relative_path))[0])
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
    expected = error.schema.get("description") if isinstance(error.schema, dict) else None
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        where_in = f" in {field}" if field else ""
        return f"field {missing!r} is missing{where_in}; required: {', '.join(error.validator_value)}"
    if error.validator == "additionalProperties" and error.validator_value is False:
        unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        where_in = f" in {field}" if field else ""
        allowed = ", ".join(error.schema.get("properties", {})) or "none"
        return f"field {unknown[0]!r} is unknown{where_in}; allowed fields: {allowed}"
    if expected is None and error.validator == "type":
        expected = f"a JSON {_JSON_TYPES.get(str(error.validator_value), error.validator_value)}"
    elif expected is None:
        expected = error.message
    value = repr(error.instance)
    value = value if len(value) <= 60 else value[:57] + "..."
    place = f"field {field!r}" if field else "the top level"
    return f"{place} = {value}; expected {expected}"


_JSON_TYPES = {"object": "object ({...})", "array": "list ([...])", "string": "string", "number": "number",
               "integer": "integer", "boolean": "true or false"}


if __name__ == "__main__":       # python -m nas.schemas: every schema, as docs/file-formats.md points to
    import json

    print(json.dumps(SCHEMAS, indent=2))

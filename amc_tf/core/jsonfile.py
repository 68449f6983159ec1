"""Bounded JSON reading and schema validation for every JSON file the tool reads back:
a conversion's report.json, a bench manifest (`<name>.bench.json`), a latency LUT and the
partial file of an interrupted LUT build.

`load_json` reads a regular file of at most `max_bytes` (amc_tf.core.fileutil.read_regular:
no FIFO, no device, size checked before reading), refuses integers of more than
MAX_INT_DIGITS digits (a 400-digit integer would overflow every float conversion after it),
non-finite numbers (`NaN`, `Infinity`, `1e999`) and nesting deeper than Python can parse,
then validates the value against a JSON Schema with the `jsonschema` library. Any failure is
one JsonFileError (exit 2) naming the file and the field:
`OUTDIR/report.json: network.family: 'x' is not one of ['mobilenet_v1', 'mobilenet_v2']`.

The schemas check the shapes and ranges readers rely on; large numeric grids (a LUT's tables)
are checked for type and length here and value by value by their reader.
"""

from __future__ import annotations

import itertools
import json
import os

from amc_tf.core.errors import AmcError

MAX_INT_DIGITS = 30  # no count, size or channel number in these files comes near 10**30
MAX_REPORT_BYTES = 4 << 20  # a report.json is ~20 KB
MAX_MANIFEST_BYTES = 4 << 20  # a manifest is ~2 KB per run, and runs are at most loglines.MAX_REPEATS
MAX_LUT_BYTES = 8 << 20  # a LUT of every table kind, resolution and family is < 1 MB
MAX_PARTIAL_BYTES = 8 << 20


class JsonFileError(AmcError):
    """A JSON file is unreadable, malformed, out of bounds or of the wrong shape (exit 2)."""


def _parse_int(s: str) -> int:
    digits = len(s.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {digits} digits (at most {MAX_INT_DIGITS} are read)")
    return int(s)


def _parse_float(s: str) -> float:
    if len(s) > 400:
        raise ValueError(f"a number written with {len(s)} characters")
    v = float(s)
    if v - v != 0.0:
        raise ValueError(f"{s[:40]} overflows a float")
    return v


def _parse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json(text: str | bytes, label: str):
    """The value of a JSON text, with the bounds above; JsonFileError naming `label`."""
    try:
        return json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except RecursionError:
        raise JsonFileError(f"{label}: nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise JsonFileError(f"{label}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:  # JSONDecodeError, and the bounds above
        raise JsonFileError(f"{label}: not valid JSON ({_short(str(exc))})") from None


def load_json(path: str | os.PathLike, max_bytes: int, schema: dict | None = None, what: str | None = None):
    """The validated value of the JSON file at `path` (see the module doc)."""
    from amc_tf.core.fileutil import FileTooLargeError, NotRegularFileError, read_regular

    label = what or os.fspath(path)
    try:
        data = read_regular(path, max_bytes, what=label)
    except (FileTooLargeError, NotRegularFileError) as exc:
        raise JsonFileError(str(exc)) from None
    except FileNotFoundError:
        raise JsonFileError(f"{label}: no such file") from None
    except OSError as exc:
        raise JsonFileError(f"{label}: cannot read it ({exc.strerror or exc})") from None
    value = parse_json(data, label)
    if schema is not None:
        validate(value, schema, label)
    return value


def field_path(parts) -> str:
    """`network.blocks[3].stride` from jsonschema's absolute_path."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def validate(value, schema: dict, label: str) -> None:
    """JsonFileError `label: field: what is wrong` unless `value` matches `schema` (the most
    relevant of the first errors found; validation stops early on bad input)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    errors = list(itertools.islice(Draft202012Validator(schema).iter_errors(value), 20))
    if not errors:
        return
    err = best_match(errors)
    where = field_path(err.absolute_path) or "the top level"
    raise JsonFileError(f"{label}: {where}: {_short(err.message)}")


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 20] + " ...(cut)"


# --- schemas ---------------------------------------------------------------------------------

_COUNT = {"type": "integer", "minimum": 1, "maximum": 1_000_000}
_OPT_COUNT = {"type": ["integer", "null"], "minimum": 1, "maximum": 1_000_000}
_REL_PATH = {"type": "string", "minLength": 1, "maxLength": 4096}
_TEXT = {"type": "string", "maxLength": 100_000}
_OPT_TEXT = {"type": ["string", "null"], "maxLength": 100_000}
_NUMBER = {"type": "number"}
_OPT_NUMBER = {"type": ["number", "null"]}

REPORT_SCHEMA = {
    "type": "object",
    "required": ["network"],
    "properties": {
        "network": {
            "type": "object",
            "required": ["family", "stem_ch", "blocks", "num_classes", "activation", "last_ch", "bn_eps",
                         "input_size", "channels"],
            "properties": {
                "family": {"enum": ["mobilenet_v1", "mobilenet_v2"]},
                "input_size": {"type": "integer", "minimum": 32, "maximum": 1024},
                "stem_ch": _COUNT,
                "blocks": {
                    "type": "array", "minItems": 1, "maxItems": 64,
                    "items": {
                        "type": "object",
                        "required": ["in", "out", "stride", "expand", "residual"],
                        "properties": {"in": _COUNT, "out": _COUNT, "stride": {"enum": [1, 2]},
                                       "expand": _OPT_COUNT, "residual": {"type": "boolean"}},
                    },
                },
                "last_ch": _OPT_COUNT,
                "num_classes": _COUNT,
                "activation": {"enum": ["relu", "relu6"]},
                "bn_eps": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                "channels": {"type": "array", "minItems": 1, "maxItems": 256, "items": _COUNT},
                "preprocessing": {
                    "type": "object",
                    "properties": {
                        "mean": {"type": "array", "minItems": 3, "maxItems": 3, "items": _NUMBER},
                        "std": {"type": "array", "minItems": 3, "maxItems": 3,
                                "items": {"type": "number", "exclusiveMinimum": 0}},
                    },
                },
            },
        },
        "artifacts": {
            "type": "object",
            "properties": {
                "tflite": {"type": "object", "properties": {"path": _REL_PATH}},
                "tflite_fp32": {"type": "object", "required": ["path"], "properties": {"path": _REL_PATH}},
                "saved_model": {"type": "object", "properties": {"path": _REL_PATH}},
                "slim_checkpoint": {"type": "object", "properties": {"prefix": _REL_PATH}},
            },
        },
        "quantization": {
            "type": "object",
            "properties": {
                "mode": {"enum": ["fp32", "fp16", "dynamic", "int8"]},
                "io": {"enum": ["float32", "uint8", "int8"]},
                "warnings": {"type": "array", "maxItems": 1000, "items": _TEXT},
            },
        },
        "source": {
            "type": "object",
            "properties": {"file": _OPT_TEXT, "frontend": _OPT_TEXT, "sha256": _OPT_TEXT},
        },
        "verification": {"type": "object"},
    },
}

_RUN_RECORD = {
    "type": "object",
    "required": ["k", "status"],
    "properties": {
        "k": {"type": "integer", "minimum": 1, "maximum": 1000},
        "status": {"enum": ["ok", "failed", "no_result", "lost", "missing", "timed_out"]},
        "log": _OPT_TEXT,
        "inference_avg_us": _OPT_NUMBER,
        "count": {"type": ["integer", "null"], "minimum": 0},
        "error": _OPT_TEXT,
        "returncode": {"type": ["integer", "null"]},
        "duration_s": _OPT_NUMBER,
        "device_before": {"type": ["object", "null"]},
        "device_after": {"type": ["object", "null"]},
    },
}

MANIFEST_SCHEMA = {
    "type": "object",
    "required": ["runs"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 255},
        "model": _OPT_TEXT,
        "model_sha256": _OPT_TEXT,
        "target": _OPT_TEXT,
        "protocol": {"type": "object", "properties": {"repeats": {"type": "integer", "minimum": 1, "maximum": 1000}}},
        "runner": {"type": "object"},
        "runs": {"type": "array", "maxItems": 1000, "items": _RUN_RECORD},
        "expected_runs": {"type": ["integer", "null"], "minimum": 1, "maximum": 1000},
        "ok": {"type": "boolean"},
    },
}

_AXIS = {"type": "array", "minItems": 1, "maxItems": 4096}
LUT_SCHEMA = {
    "type": "object",
    "required": ["format", "version", "fingerprint", "input_size", "families", "tables"],
    "properties": {
        "format": {"type": "string"},
        "version": {"type": "integer"},
        "fingerprint": {"type": "object"},
        "input_size": {"type": "integer", "minimum": 1, "maximum": 4096},
        "families": {"type": "array", "maxItems": 16, "items": {"type": "string", "maxLength": 100}},
        "overhead_us": {"type": "number", "minimum": 0},
        "scale": {"type": "object", "maxProperties": 16,
                  "additionalProperties": {"type": "number", "exclusiveMinimum": 0}},
        "meta": {"type": "object"},
        "tables": {
            "type": "object", "minProperties": 1, "maxProperties": 4096,
            "additionalProperties": {
                "type": "object",
                "required": ["kind", "res", "cin", "cout", "us"],
                "properties": {
                    "kind": {"type": "string", "minLength": 1, "maxLength": 100},
                    "res": {"type": "integer", "minimum": 1, "maximum": 4096},
                    "cin": _AXIS,
                    "cout": _AXIS,
                    "us": {"type": "array", "minItems": 1, "maxItems": 4096,
                           "items": {"type": "array", "maxItems": 4096}},
                    "align": {"type": "array", "minItems": 64, "maxItems": 64},
                },
            },
        },
    },
}

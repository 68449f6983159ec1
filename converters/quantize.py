"""Post-training quantization of a built SlimMobileNet into a .tflite, through
`tf.lite.TFLiteConverter` on the same graph the fp32 export uses
(`serving_function(batch=1, frozen=True)`).

Modes:

* `fp16`: float16 weights (dequantized to float32 at load time by the CPU kernels);
  float32 activations, input and output.
* `dynamic`: int8 weights (per output channel), float32 activations quantized on the fly
  where a kernel supports it; float32 input and output.
* `int8`: full-integer. int8 weights with one scale per output channel (per-tensor scales
  ruin depthwise convs: top-1 ~69% -> ~10% on MobileNets), int8 activations whose ranges
  come from calibration batches; input/output float32 (a QUANTIZE/DEQUANTIZE pair inside
  the model), uint8 or int8 (the caller quantizes with the input's scale and zero point).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from amc_tf.core.errors import AmcError

MODES = ("fp16", "dynamic", "int8")
# int8 recipes: "accurate" (converters.int8_recipe: ranges, rounding and biases chosen on the
# calibration activations, fixed in the graph by fake-quant ops) or "tf" (the TF converter's
# own post-training calibration: min/max ranges, round-to-nearest weights)
INT8_RECIPES = ("accurate", "tf")
IO_TYPES = ("float32", "uint8", "int8")
# Ops that carry weights: their filter tensors are what the modes quantize.
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


class QuantizeError(AmcError):
    """A quantization request that cannot be honoured (exit 2)."""


@dataclass(frozen=True)
class QuantizeRequest:
    mode: str  # fp16 | dynamic | int8
    io: str = "float32"  # float32 | uint8 | int8 (only int8 may use integer io)
    recipe: str = "accurate"  # int8 only: accurate | tf

    def __post_init__(self):
        if self.mode not in MODES:
            raise QuantizeError(f"--quantize must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.io not in IO_TYPES:
            raise QuantizeError(f"--io must be one of {', '.join(IO_TYPES)}, got {self.io!r}")
        if self.recipe not in INT8_RECIPES:
            raise QuantizeError(f"--int8-recipe must be one of {', '.join(INT8_RECIPES)}, got {self.recipe!r}")
        if self.io != "float32" and self.mode != "int8":
            raise QuantizeError(f"--io {self.io} needs --quantize int8 (a {self.mode} model computes in float: "
                                "its input and output stay float32)")


def quantized_tflite_bytes(model, request: QuantizeRequest,
                           representative: Callable[[], Iterable[np.ndarray]] | None = None) -> bytes:
    """The quantized flatbuffer. `representative()` yields float32 [1,H,W,C] calibration
    batches, preprocessed exactly as the model is fed (needed by, and only by, int8)."""
    return quantize(model, request, representative)[0]


def quantize(model, request: QuantizeRequest, representative: Callable[[], Iterable[np.ndarray]] | None = None,
             progress: Callable[[str], None] = lambda msg: None) -> tuple[bytes, dict]:
    """(the quantized flatbuffer, what the int8 recipe did: {} for the other modes)."""
    import tensorflow as tf

    if (request.mode == "int8") != (representative is not None):
        raise QuantizeError("int8 needs calibration batches; fp16 and dynamic take none")
    from converters.exporters import tflite_from_concrete

    if request.mode == "int8" and request.recipe == "accurate":
        from converters.int8_recipe import accurate_int8

        images = np.concatenate([np.asarray(x, np.float32) for x in representative()])
        return accurate_int8(model, images, request.io, progress=progress)

    def configure(converter):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if request.mode == "fp16":
            converter.target_spec.supported_types = [tf.float16]
        elif request.mode == "int8":
            converter.representative_dataset = lambda: ([np.asarray(x, np.float32)] for x in representative())
            # integer kernels only: a float fallback op would make it silently not an int8 model
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            io = {"float32": tf.float32, "uint8": tf.uint8, "int8": tf.int8}[request.io]
            converter.inference_input_type = io
            converter.inference_output_type = io

    with warnings.catch_warnings():
        # "Statistics for quantized inputs were expected": the calibration provides them
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        data = tflite_from_concrete(model.serving_function(batch=1, frozen=True).get_concrete_function(), configure)
    return data, ({"recipe": "tf", "ranges": "minmax (TF converter)", "weights": "per-channel, round to nearest"}
                  if request.mode == "int8" else {})


# --- reading back what a .tflite holds ------------------------------------------------

def _quant(details: dict) -> dict:
    q = details.get("quantization_parameters", {})
    scales, zeros = np.asarray(q.get("scales", [])), np.asarray(q.get("zero_points", []))
    return {"scales": scales, "zero_points": zeros, "axis": int(q.get("quantized_dimension", 0))}


def io_details(interp) -> dict:
    """{"input": {...}, "output": {...}}: dtype, shape, and scale/zero point when quantized."""
    out = {}
    for role, details in (("input", interp.get_input_details()[0]), ("output", interp.get_output_details()[0])):
        q = _quant(details)
        entry = {"dtype": np.dtype(details["dtype"]).name, "shape": [int(d) for d in details["shape"]]}
        if q["scales"].size:
            entry["scale"] = float(q["scales"][0])
            entry["zero_point"] = int(q["zero_points"][0])
        out[role] = entry
    return out


def weight_quantization(interp) -> dict:
    """For each weighted op type: how many ops, their filters' dtype(s), and how many
    filters carry one scale per output channel ("per_channel") vs one scale ("per_tensor")."""
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    summary: dict[str, dict] = {}
    for op in interp._get_ops_details():  # noqa: SLF001 - the public API has no op listing
        if op["op_name"] not in WEIGHTED_OPS:
            continue
        filt = tensors[int(op["inputs"][1])]
        q = _quant(filt)
        row = summary.setdefault(op["op_name"], {"ops": 0, "filter_dtypes": [], "per_channel": 0, "per_tensor": 0})
        row["ops"] += 1
        dtype = np.dtype(filt["dtype"]).name
        if dtype not in row["filter_dtypes"]:
            row["filter_dtypes"].append(dtype)
        if q["scales"].size > 1:
            row["per_channel"] += 1
        elif q["scales"].size == 1:
            row["per_tensor"] += 1
    return dict(sorted(summary.items()))


def tensor_dtypes(interp) -> dict[str, int]:
    """Count of tensors by dtype (a full-integer model holds float32 only at float io)."""
    hist: dict[str, int] = {}
    for t in interp.get_tensor_details():
        name = np.dtype(t["dtype"]).name
        hist[name] = hist.get(name, 0) + 1
    return dict(sorted(hist.items()))


def _macs(op: dict, tensors: dict) -> int:
    """Multiply-accumulates of one CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED (batch 1)."""
    filt = [int(d) for d in tensors[int(op["inputs"][1])]["shape"]]
    out = [int(d) for d in tensors[int(op["outputs"][0])]["shape"]]
    positions = int(np.prod(out[1:-1])) if len(out) > 2 else 1
    if op["op_name"] == "CONV_2D":  # filter [cout, kh, kw, cin]
        return positions * int(np.prod(filt))
    if op["op_name"] == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, channels]
        return positions * int(np.prod(filt))
    return int(np.prod(out[:-1])) * int(np.prod(filt))  # FULLY_CONNECTED: [cout, cin]


def int8_mac_share(interp) -> dict:
    """How much of the work runs in integer kernels: MACs of the weighted ops whose filter
    and input are both int8, against all weighted ops' MACs; the others listed by output
    tensor name with their filter and input dtypes."""
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    total = integer = 0
    others = []
    for op in interp._get_ops_details():  # noqa: SLF001 - the public API has no op listing
        if op["op_name"] not in WEIGHTED_OPS:
            continue
        macs = _macs(op, tensors)
        total += macs
        filt = np.dtype(tensors[int(op["inputs"][1])]["dtype"]).name
        inp = np.dtype(tensors[int(op["inputs"][0])]["dtype"]).name
        if filt == "int8" and inp == "int8":
            integer += macs
        else:
            reason = ("float model" if filt == inp == "float32" else
                      "kept wider than int8 by the converter (no int8 range or kernel for it)")
            others.append({"op": op["op_name"], "output": tensors[int(op["outputs"][0])]["name"],
                           "filter": filt, "input": inp, "macs": macs, "reason": reason})
    return {"int8_macs": integer, "total_macs": total, "share": round(integer / total, 6) if total else 0.0,
            "not_int8": others}

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
    from amc_tf.converters.exporters import tflite_from_concrete

    if request.mode == "int8" and request.recipe == "accurate":
        from amc_tf.converters.int8_recipe import accurate_int8

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

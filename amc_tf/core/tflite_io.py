"""Feed a .tflite real-valued inputs and read real-valued outputs, whatever its io types.

A full-integer model exported with `--io uint8|int8` takes the *normalised* image
quantized with its input's scale and zero point (q = round(x / scale) + zero_point,
clamped to the type's range) and returns quantized logits (x = (q - zero_point) * scale).
A uint8 input *without* quantization parameters is a different thing: raw pixels for a
model that normalises inside; `quantized_io` tells the two apart.
"""

from __future__ import annotations

import os

import numpy as np

from amc_tf.core.errors import ModelFileError


def load_interpreter(path_or_bytes, *, threads: int = 1, delegates: bool = True,
                     preserve_all_tensors: bool = False):
    """The in-process LiteRT Interpreter loader (a model from outside runs it in a child process:
    amc_tf.core.litert_worker): the flatbuffer's declared sizes bounded first
    (amc_tf/core/tflite_bounds.py), tensors allocated, LiteRT's XNNPACK notice silenced in quiet
    mode, and a file LiteRT cannot load (not a flatbuffer, a valid header with garbage inside,
    unknown ops) a `ModelFileError`. `delegates=False` disables the default XNNPACK delegate
    (the built-in reference kernels)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from amc_tf.core.quiet import silenced

    kwargs = {"num_threads": threads}
    if not delegates:
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if preserve_all_tensors:
        kwargs["experimental_preserve_all_tensors"] = True
    in_memory = isinstance(path_or_bytes, (bytes, bytearray))
    where = "the model" if in_memory else os.fspath(path_or_bytes)
    if not in_memory and not os.path.isfile(where):
        raise ModelFileError(f"{where}: {'not a regular file' if os.path.exists(where) else 'no such .tflite file'}")
    from amc_tf.core.tflite_bounds import check_allocated, check_model

    check_model(path_or_bytes)  # declared tensor sizes bounded before LiteRT allocates them
    try:
        if in_memory:
            interp = Interpreter(model_content=bytes(path_or_bytes), **kwargs)
        else:
            interp = Interpreter(model_path=where, **kwargs)
        with silenced():
            interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise ModelFileError(f"{where}: not a loadable .tflite ({detail})") from None
    check_allocated(interp, where, len(path_or_bytes) if in_memory else os.path.getsize(where))
    return interp


def _scale_zero(details: dict) -> tuple[float, int] | None:
    scales = details.get("quantization_parameters", {}).get("scales", [])
    if len(scales) == 0:
        scale, zero = details.get("quantization", (0.0, 0))
        return (float(scale), int(zero)) if scale else None
    return float(scales[0]), int(details["quantization_parameters"]["zero_points"][0])


def quantize(x: np.ndarray, details: dict) -> np.ndarray:
    """Real values -> the tensor's integer type with its scale and zero point."""
    dtype = np.dtype(details["dtype"])
    sz = _scale_zero(details)
    if not np.issubdtype(dtype, np.integer) or sz is None:
        return np.asarray(x, dtype)
    scale, zero = sz
    info = np.iinfo(dtype)
    return np.clip(np.round(np.asarray(x, np.float64) / scale) + zero, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, details: dict) -> np.ndarray:
    """The tensor's values as float32 (integer tensors through their scale and zero point,
    per channel along `quantized_dimension` when the tensor has several scales)."""
    q = np.asarray(q)
    params = details.get("quantization_parameters", {})
    scales = np.asarray(params.get("scales", []), np.float64)
    if not np.issubdtype(q.dtype, np.integer) or _scale_zero(details) is None:
        return np.array(q, np.float32)
    if scales.size > 1:
        shape = [1] * q.ndim
        shape[params.get("quantized_dimension", 0)] = -1
        zeros = np.asarray(params["zero_points"], np.float64).reshape(shape)
        return ((q.astype(np.float64) - zeros) * scales.reshape(shape)).astype(np.float32)
    scale, zero = _scale_zero(details)
    return ((q.astype(np.float64) - zero) * scale).astype(np.float32)


def quantized_io(details: dict) -> bool:
    """True for an integer tensor with a scale (a quantized model's integer io)."""
    return np.issubdtype(np.dtype(details["dtype"]), np.integer) and _scale_zero(details) is not None


MAX_CLASSES = 100_000
CLASSIFIER = "an image classifier (one input [1, S, S, 3], one output [1, classes])"


def check_classifier(where: str, inputs: list[dict], outputs: list[dict]) -> None:
    """The one check that a .tflite is what amc-tf's commands run: an image classifier with
    one input [1, S, S, 3] (float32; uint8 pixels; or an int8/uint8 image with a scale) and one
    output [1, K], 1 <= K <= MAX_CLASSES (float32, or int8/uint8 with a scale). Anything else
    (no inputs, no outputs, a scalar, a rank-2 input, [32768, 2, 2, 3]...) is a ModelFileError
    naming the file and what it has instead."""
    def shape(d):
        return [int(s) for s in d["shape"]]

    def name(d):
        return np.dtype(d["dtype"]).name

    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelFileError(f"{where}: not {CLASSIFIER}: it has {len(inputs)} input(s) and {len(outputs)} output(s)")
    inp, out = inputs[0], outputs[0]
    s = shape(inp)
    if len(s) != 4 or s[0] != 1 or s[3] != 3 or s[1] != s[2] or s[1] < 1:
        raise ModelFileError(f"{where}: not {CLASSIFIER}: its input is {s}")
    dtype = np.dtype(inp["dtype"])
    if not (dtype in (np.float32, np.uint8) or (dtype == np.int8 and quantized_io(inp))):
        raise ModelFileError(f"{where}: not {CLASSIFIER}: its input is {name(inp)} (want float32, uint8 or int8)")
    o = shape(out)
    if len(o) != 2 or o[0] != 1 or not 1 <= o[1] <= MAX_CLASSES:
        raise ModelFileError(f"{where}: not {CLASSIFIER}: its output is {o}"
                             + (f" (at most {MAX_CLASSES:,} classes)" if len(o) == 2 and o[0] == 1 and o[1] > 1 else ""))
    if not (np.dtype(out["dtype"]) == np.float32 or quantized_io(out)):
        raise ModelFileError(f"{where}: not {CLASSIFIER}: its output is {name(out)} without a scale (want float32 "
                             "or quantized int8/uint8)")


class TFLiteModel:
    """A batch-1 image classifier .tflite run on real-valued NHWC batches. By default LiteRT runs
    in a child process (`IsolatedInterpreter`: a crafted model can crash it, not us);
    `isolated=False` runs it here, for a model amc-tf has just written itself."""

    def __init__(self, path: str | os.PathLike, threads: int = 1, *, isolated: bool = True):
        self.path = os.fspath(path)
        if isolated:
            from amc_tf.core.litert_worker import IsolatedInterpreter

            self.interp = IsolatedInterpreter(self.path, threads=threads)
        else:
            self.interp = load_interpreter(self.path, threads=threads)
        self.isolated = isolated
        try:
            check_classifier(self.path, self.interp.get_input_details(), self.interp.get_output_details())
        except BaseException:
            self.close()
            raise
        self.input = self.interp.get_input_details()[0]
        self.output = self.interp.get_output_details()[0]

    @property
    def input_size(self) -> int:
        return int(self.input["shape"][1])

    @property
    def num_classes(self) -> int:
        return int(self.output["shape"][-1])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """float32 logits [N, classes] for a float32 [N, H, W, C] batch."""
        x = np.asarray(x)
        if len(x) == 0:
            return np.zeros((0, self.num_classes), np.float32)
        if self.isolated:
            return dequantize(self.interp.run(quantize(x, self.input))[0][:, 0], self.output)
        rows = []
        for sample in x:
            self.interp.set_tensor(self.input["index"], quantize(sample[None], self.input))
            self.interp.invoke()
            rows.append(dequantize(self.interp.get_tensor(self.output["index"])[0], self.output))
        return np.stack(rows)

    def close(self) -> None:
        if self.isolated:
            self.interp.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

"""Reading an ONNX file safely: the file size bounded, the size it decodes to bounded before
`onnx.load` decodes it (amc_tf/core/protobuf_bounds.py), external data never followed, every
tensor's dims and data checked before anything is allocated, and what constant folding builds
bounded before it is computed (`FoldBudget`) (docs/security.md)."""

from __future__ import annotations

import os

import numpy as np

from amc_tf.core.errors import CheckpointError

MAX_TYPED_ELEMENTS = 1 << 22  # a tensor stored in float_data/int64_data... (a MobileNet's largest: 1.3M)
MAX_FOLDED_ELEMENTS = 1 << 24  # one tensor built by constant folding (a MobileNet's: a few shape integers)
MAX_FOLDED_BYTES = 256 << 20  # all of them together, per graph


class FoldBudget:
    """What constant folding may build in one graph: each result's element count is checked
    against MAX_FOLDED_ELEMENTS, and the running total against MAX_FOLDED_BYTES, *before* the
    result is computed (a Concat of one initializer 100,000 times is refused, not built)."""

    def __init__(self):
        self.used = 0

    def take(self, count: int, itemsize: int, what: str) -> None:
        count, itemsize = int(count), int(itemsize)
        if count > MAX_FOLDED_ELEMENTS:
            raise CheckpointError(f"{what} would fold to {count} elements, over the limit of {MAX_FOLDED_ELEMENTS} "
                                  "(a MobileNet folds a few shape integers); refused before computing it")
        if self.used + count * itemsize > MAX_FOLDED_BYTES:
            raise CheckpointError(f"{what} would bring the folded constants to {self.used + count * itemsize} bytes, "
                                  f"over the limit of {MAX_FOLDED_BYTES}; refused before computing it")
        self.used += count * itemsize


def read_model(path: str | os.PathLike):
    """onnx.load with every failure turned into one CheckpointError line."""
    import onnx

    from amc_tf.core.checkpoint_safety import MAX_PICKLE_BYTES, MAX_TOTAL_BYTES

    from amc_tf.core.checkpoint_safety import check_regular_file

    path = os.fspath(path)
    size = check_regular_file(path)
    if size > MAX_TOTAL_BYTES + MAX_PICKLE_BYTES:
        raise CheckpointError(f"{path}: the file is {size} bytes, over the limit of {MAX_TOTAL_BYTES + MAX_PICKLE_BYTES} "
                              "(a MobileNet is < 20 MB); refused")
    check_decoded_size(path)
    try:
        model = onnx.load(path, load_external_data=False)  # external files are never followed
    except Exception as exc:  # DecodeError, truncated files, missing external data...
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable ONNX model ({detail})") from None
    if not model.graph.node:
        raise CheckpointError(f"{path}: not a readable ONNX model (the file holds no graph nodes)")
    return model


def check_decoded_size(path: str) -> None:
    """CheckpointError naming `path` when decoding it as a ModelProto would pass the decode budget
    or its wire format is malformed (the walk reads the file in chunks and allocates nothing)."""
    import onnx

    from amc_tf.core import protobuf_bounds

    try:
        protobuf_bounds.check_file(path, onnx.ModelProto.DESCRIPTOR, "ONNX model")
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def looks_like_onnx(path: str | os.PathLike) -> bool:
    """True when the file parses as an ONNX model with a graph (for files without a .onnx name)."""
    from amc_tf.core.checkpoint_safety import MAX_PICKLE_BYTES, MAX_TOTAL_BYTES

    try:
        import onnx

        if not os.path.isfile(path) or os.path.getsize(path) > MAX_TOTAL_BYTES + MAX_PICKLE_BYTES:
            return False
        check_decoded_size(path)  # refused (CheckpointError): not read as ONNX
        model = onnx.load(os.fspath(path), load_external_data=False)
    except Exception:
        return False
    return bool(model.graph.node) and bool(model.graph.output) and bool(model.opset_import)


def tensor_array(tensor, what: str) -> np.ndarray:
    """An ONNX TensorProto as numpy, after checking its dims (non-negative, element count under the
    reader's limit) and that its data is there, in the file, and matches them - before allocating."""
    from onnx import TensorProto, helper, numpy_helper

    from amc_tf.core.checkpoint_safety import MAX_TENSOR_ELEMENTS

    dims = [int(d) for d in tensor.dims]
    count = 1
    for d in dims:
        count *= max(d, 0)
        if d < 0:
            raise CheckpointError(f"{what} has a negative dim in {dims}")
        if count > MAX_TENSOR_ELEMENTS:
            raise CheckpointError(f"{what} has dims {dims}: more than {MAX_TENSOR_ELEMENTS} elements (the limit, "
                                  "far above any MobileNet's); refused")
    if tensor.data_location == TensorProto.EXTERNAL:
        raise CheckpointError(f"{what} keeps its data in an external file, which is not read")
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type))
    except (KeyError, TypeError, ValueError):
        dtype = None
    if dtype is None or dtype.kind not in "biufc":
        raise CheckpointError(f"{what} has data type {tensor.data_type}, not a number type")
    if tensor.raw_data:
        have, need = len(tensor.raw_data), count * dtype.itemsize
    else:
        if count > MAX_TYPED_ELEMENTS:  # numpy_helper lists typed fields as Python numbers (~32 bytes each)
            raise CheckpointError(f"{what} has {count} elements in typed fields (not raw_data); over the limit of "
                                  f"{MAX_TYPED_ELEMENTS} for them (torch.onnx.export writes raw_data); refused")
        have = len(getattr(tensor, helper.tensor_dtype_to_field(tensor.data_type)))
        need = count * (2 if dtype.kind == "c" else 1)
    if have != need:
        raise CheckpointError(f"{what} has dims {dims} ({count} elements) but "
                              f"{'no data' if have == 0 else f'{have} values or bytes for them'}")
    return numpy_helper.to_array(tensor)

"""Reading an ONNX file safely: the file size bounded, external data never followed, and every
tensor's dims and data checked before anything is allocated (docs/security.md)."""

from __future__ import annotations

import os

import numpy as np

from amc_tf.core.errors import CheckpointError


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
    try:
        model = onnx.load(path, load_external_data=False)  # external files are never followed
    except Exception as exc:  # DecodeError, truncated files, missing external data...
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable ONNX model ({detail})") from None
    if not model.graph.node:
        raise CheckpointError(f"{path}: not a readable ONNX model (the file holds no graph nodes)")
    return model


def looks_like_onnx(path: str | os.PathLike) -> bool:
    """True when the file parses as an ONNX model with a graph (for files without a .onnx name)."""
    from amc_tf.core.checkpoint_safety import MAX_PICKLE_BYTES, MAX_TOTAL_BYTES

    try:
        import onnx

        if not os.path.isfile(path) or os.path.getsize(path) > MAX_TOTAL_BYTES + MAX_PICKLE_BYTES:
            return False
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
        have = len(getattr(tensor, helper.tensor_dtype_to_field(tensor.data_type)))
        need = count * (2 if dtype.kind == "c" else 1)
    if have != need:
        raise CheckpointError(f"{what} has dims {dims} ({count} elements) but "
                              f"{'no data' if have == 0 else f'{have} values or bytes for them'}")
    return numpy_helper.to_array(tensor)

"""Pick the frontend for an input file (PyTorch checkpoint or ONNX) and return (Network, original
state dict or None).

The state dict (PyTorch layout) is returned beside the Network so the self-check can run
PyTorch on the checkpoint's own tensors.
"""

from __future__ import annotations

import os

from amc_tf.core.errors import CheckpointError
from amc_tf.core.netspec import Network


def load(path: str | os.PathLike, *, activation: str | None = None, bn_eps: float = 1e-5,
         input_size: int | None = None) -> tuple[Network, dict | None]:
    """`input_size` None: 224, or the ONNX model's fixed input size."""
    from amc_tf.core.checkpoint import load_state_dict
    from amc_tf.converters.pytorch_frontend import infer_network

    from amc_tf.core.checkpoint_safety import check_regular_file

    path = os.fspath(path)
    check_regular_file(path)
    _refuse_tflite(path)
    if _is_onnx(path):
        from amc_tf.converters.onnx_frontend import load_onnx

        return load_onnx(path, activation=activation, bn_eps=bn_eps, input_size=input_size), None
    sd = load_state_dict(path)
    network = infer_network(sd, activation=activation, bn_eps=bn_eps, input_size=input_size or 224,
                            source={"file": path, "frontend": "pytorch", "tensors": len(sd)})
    return network, sd


def _refuse_tflite(path: str) -> None:
    """A .tflite is an output, not an input: say which commands take one."""
    from amc_tf.core.fileutil import open_regular

    try:
        with open_regular(path) as fh:
            head = fh.read(8)
    except OSError:
        return  # the reader reports it
    if head[4:8] == b"TFL3":
        raise CheckpointError(f"{path} is a TFLite model, not a PyTorch checkpoint or ONNX file: benchmark it with "
                              "amc-tf bench, evaluate it with amc-tf eval; convert, diff and profile read the "
                              "checkpoint (or the conversion OUTDIR)")


def _is_onnx(path: str) -> bool:
    """By name (.onnx), or by content: neither a zip archive nor a pickle, yet a parseable ONNX model."""
    if path.lower().endswith(".onnx"):
        return True
    from amc_tf.core.fileutil import open_regular

    with open_regular(path) as fh:
        head = fh.read(2)
    if head[:2] == b"PK" or head[:1] == b"\x80":
        return False
    from amc_tf.core.onnx_io import looks_like_onnx

    return looks_like_onnx(path)

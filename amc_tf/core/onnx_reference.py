"""Run an ONNX MobileNet with onnxruntime on an NHWC batch (the reference runtime for ONNX input,
and the cross-check of an exported model.onnx)."""

from __future__ import annotations

import os

import numpy as np

LAYOUTS = ("nchw", "nhwc")


def onnxruntime_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxruntime")
    except PackageNotFoundError:
        return None


def run(path_or_bytes, x_nhwc: np.ndarray, layout: str = "nchw", threads: int = 1) -> np.ndarray:
    """Logits for an NHWC float batch. `layout` is the model input's: NCHW inputs get the batch
    transposed. Models with a fixed batch of 1 are run one sample at a time."""
    import onnxruntime as ort

    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r} not in {LAYOUTS}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    model = os.fspath(path_or_bytes) if not isinstance(path_or_bytes, (bytes, bytearray)) else bytes(path_or_bytes)
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    x = np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2) if layout == "nchw" else x_nhwc, dtype=np.float32)
    if isinstance(inp.shape[0], int) and inp.shape[0] != len(x):
        return np.concatenate([session.run(None, {inp.name: x[i:i + 1]})[0] for i in range(len(x))])
    return session.run(None, {inp.name: x})[0]


def reference_logits(path: str, layout: str, x_nhwc: np.ndarray) -> np.ndarray:
    """A picklable entry point for the self-check's worker process."""
    return run(path, x_nhwc, layout)

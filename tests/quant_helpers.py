"""Quantized twins of a converted model for the layer-diff tests, made by the project's own
quantizer (converters.quantize) on the same built graph."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np


def quantized_tflite(model, mode: str, calibration: int = 8, seed: int = 1) -> bytes:
    """`int8`: full-integer (per-channel weights, int8 activations calibrated on standard-normal
    inputs, float input/output); `fp16`: float16 weights."""
    from amc_tf.converters.quantize import QuantizeRequest, quantized_tflite_bytes

    size, rng = model.spec.input_size, np.random.default_rng(seed)

    def normal_batches():
        for _ in range(calibration):
            yield rng.standard_normal((1, size, size, model.spec.in_ch)).astype(np.float32)

    return quantized_tflite_bytes(model, QuantizeRequest(mode), normal_batches if mode == "int8" else None)


def quantized_twin(outdir: Path, twin: Path, mode: str) -> Path:
    """A copy of a conversion OUTDIR whose model.tflite is the quantized model."""
    from amc_tf.core.outdir import read_outdir
    from amc_tf.converters.tf_builder import build

    shutil.copytree(outdir, twin)
    model = build(read_outdir(outdir).network())
    (twin / "model.tflite").write_bytes(quantized_tflite(model, mode))
    return twin

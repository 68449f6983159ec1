"""Quantized twins of a converted model for the layer-diff tests, made with the TF converter
on the same built graph (the `convert --quantize` feature belongs to another issue)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf


def quantized_tflite(model, mode: str, calibration: int = 8, seed: int = 1) -> bytes:
    """`int8`: post-training full-integer quantization (per-channel weights, int8 activations
    calibrated on standard-normal inputs, float input/output); `fp16`: float16 weights."""
    concrete = model.serving_function(batch=1, frozen=True).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        size, rng = model.spec.input_size, np.random.default_rng(seed)

        def representative():
            for _ in range(calibration):
                yield [rng.standard_normal((1, size, size, model.spec.in_ch)).astype(np.float32)]

        converter.representative_dataset = representative
    else:
        raise ValueError(mode)
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        return converter.convert()
    finally:
        absl.setLevel(level)


def quantized_twin(outdir: Path, twin: Path, mode: str) -> Path:
    """A copy of a conversion OUTDIR whose model.tflite is the quantized model."""
    from amc_tf.outdir import read_outdir
    from converters.tf_builder import build

    shutil.copytree(outdir, twin)
    model = build(read_outdir(outdir).network())
    (twin / "model.tflite").write_bytes(quantized_tflite(model, mode))
    return twin

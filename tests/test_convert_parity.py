"""Parity of every export with real PyTorch 2.13, over family x profile x layout x file format.

The reference is the PyTorch module itself (amc_tf.core.torch_models: ordinary nn.Modules run by
PyTorch's kernels) on random weights with non-trivial BatchNorm statistics. Criterion (the
issue's): max abs diff <= 1e-4 * max|logit| and identical top-1, for TFLite and SavedModel.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from amc_tf.core import torch_models
from amc_tf.converters.convert import ConvertOptions, convert
from amc_tf.converters.exporters import run_tflite

CASES = [
    # (profile, layout, file format, input size)
    ("1.0", "amc", "zip", 224),
    ("0.75", "amc", "legacy", 224),
    ("0.5flops", "amc", "legacy", 224),
    ("0.5flops", "community", "zip", 224),
    ("0.5time", "amc", "zip", 224),
    ("0.5time", "amc", "legacy", 224),
    ("odd-v1", "amc", "zip", 193),
    ("odd-v1", "community", "legacy", 160),
    ("v2-1.0", "torchvision", "zip", 224),
    ("v2-1.0", "amc", "legacy", 224),
    ("v2-0.7flops", "amc", "legacy", 224),
    ("v2-0.7flops", "torchvision", "zip", 224),
    ("odd-v2", "torchvision", "legacy", 225),
    ("odd-v2", "amc", "zip", 224),
]


def _id(case):
    profile, layout, fmt, size = case
    family = "v2" if "v2" in profile else "v1"
    return f"{family}-{profile.replace('v2-', '')}-{layout}-{fmt}-{size}"


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(42)
    return {size: rng.standard_normal((3, size, size, 3)).astype(np.float32) for size in {c[3] for c in CASES}}


def _assert_parity(name, got, ref):
    tol = 1e-4 * np.abs(ref).max()
    diff = np.abs(got - ref).max()
    assert diff <= tol, f"{name}: max|diff| {diff:.3g} > {tol:.3g}"
    np.testing.assert_array_equal(got.argmax(1), ref.argmax(1), err_msg=f"{name}: top-1 differs")


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_exports_match_pytorch(case, make_checkpoint, images, tmp_path):
    profile, layout, fmt, size = case
    path, model, spec = make_checkpoint(profile, layout, fmt, dataparallel=(fmt == "legacy"))
    report = convert(path, tmp_path / "out", ConvertOptions(input_size=size))
    x = images[size]
    ref = torch_models.logits(model, x)
    assert ref.shape == (3, spec.num_classes)
    assert np.ptp(ref, axis=1).min() > 0.1  # the random net's logits are far from constant

    # inferred architecture equals the one the torch model was built from
    assert report["network"]["channels"] == spec.channels()
    assert report["network"]["family"] == spec.family
    # the built-in self-check ran all three runtimes and passed
    assert report["verification"]["passed"] is True
    assert set(report["verification"]["pairs"]) == {"tf_vs_tflite", "tf_vs_torch", "tflite_vs_torch"}

    _assert_parity("tflite", run_tflite(tmp_path / "out" / "model.tflite", x), ref)
    loaded = tf.saved_model.load(str(tmp_path / "out" / "saved_model"))
    serve = loaded.signatures["serving_default"]
    _assert_parity("saved_model", serve(input=tf.constant(x))["logits"].numpy(), ref)

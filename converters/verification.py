"""The inputs of a conversion's self-check: shared by the pipeline (converters/convert.py)
and the quantized export (converters/quantized_export.py), which the pipeline calls."""

from __future__ import annotations

import numpy as np

from amc_tf.core.netspec import Network


def verification_batch(network: Network, n: int = 2, seed: int = 0) -> np.ndarray:
    """A fixed batch of normalised-image-like inputs (NHWC float32)."""
    s = network.spec.input_size
    return np.random.default_rng(seed).standard_normal((n, s, s, network.spec.in_ch)).astype(np.float32)

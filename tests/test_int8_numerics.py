"""The numpy pieces of the accurate int8 recipe (`converters/int8_numerics.py`) against
independent references: TF's own fake-quant op, a brute-force search over ranges, an
exhaustive search over rounding choices."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from amc_tf.converters import int8_numerics as qn


def _heavy_tailed(n=20000, seed=0):
    """Laplace samples: long thin tails, where clipping pays off."""
    return np.random.default_rng(seed).laplace(size=n).astype(np.float32)


@pytest.mark.parametrize("lo,hi", [(-1.0, 3.0), (0.0, 6.0), (-2.5, 0.7), (-0.3, 11.1)])
def test_fake_quant_matches_tf(lo, hi):
    import tensorflow as tf

    x = np.linspace(1.3 * min(lo, 0) - 0.5, 1.3 * hi + 0.5, 5001, dtype=np.float32)
    ref = tf.quantization.fake_quant_with_min_max_vars(x, lo, hi, num_bits=8).numpy()
    # within float32 rounding of the grid; no value lands on another level
    np.testing.assert_allclose(qn.fake_quant(x, lo, hi), ref, atol=1e-5)
    nlo, nhi, scale = qn.nudge(lo, hi)
    assert abs((nhi - nlo) / scale - 255) < 1e-6
    assert abs(round(-nlo / scale) - (-nlo / scale)) < 1e-6  # 0.0 exactly on the grid


def test_mse_range_is_the_brute_force_optimum():
    x = _heavy_tailed()
    lo, hi = qn.minmax_range(x)
    # brute force: every clipping fraction from 1/100 to 1 in steps of 1/2000
    fine = np.linspace(0.01, 1.0, 1981)
    errs = [qn.quant_mse(x, a * lo, a * hi) for a in fine]
    best = min(errs)
    chosen = qn.mse_range(x)
    got = qn.quant_mse(x, *chosen)
    assert got <= best * 1.02
    assert got < qn.quant_mse(x, lo, hi)  # clipping the thin tails pays
    assert 0 < chosen[1] < hi and lo < chosen[0] < 0


def test_mse_range_keeps_minmax_when_clipping_cannot_help():
    x = np.linspace(0, 6, 10001, dtype=np.float32)  # uniform: clipping only adds error
    assert qn.mse_range(x) == pytest.approx((0.0, 6.0))


def test_percentile_range_matches_numpy():
    x = _heavy_tailed(seed=3)
    lo, hi = qn.percentile_range(x, 99.9)
    assert lo == pytest.approx(np.percentile(x, 0.1))
    assert hi == pytest.approx(np.percentile(x, 99.9))
    assert qn.percentile_range(np.abs(x), 99.0)[0] == 0.0  # widened to include 0


def test_weight_quantization_is_tflite_per_channel():
    rng = np.random.default_rng(1)
    k = rng.standard_normal((3, 3, 8, 5)).astype(np.float32) * np.array([0.01, 1, 5, 0.3, 2], np.float32)
    codes = qn.quantize_nearest(k, depthwise=False)
    scales = np.abs(k).reshape(-1, 5).max(0) / 127
    np.testing.assert_array_equal(codes, np.round(k / scales))
    assert codes.max() == 127 or codes.min() == -127
    np.testing.assert_allclose(qn.dequantize(codes, k, False), k, atol=float(scales.max()) / 2 + 1e-7)
    dw = rng.standard_normal((3, 3, 4, 1)).astype(np.float32)
    s = np.abs(dw).max(axis=(0, 1, 3)) / 127  # one scale per channel, axis 2
    np.testing.assert_allclose(qn.weight_scales(dw, True), s, rtol=1e-6)


def test_depthwise_rounding_is_the_exhaustive_optimum():
    rng = np.random.default_rng(2)
    c = 3
    kernel = rng.standard_normal((2, 2, c, 1)).astype(np.float32)
    a = rng.standard_normal((c, 4, 4))
    cov = np.einsum("cij,ckj->cik", a, a) + 0.1 * np.eye(4)
    codes = qn.depthwise_rounding(kernel, cov)
    s = qn.weight_scales(kernel, True)
    w = kernel[..., 0].reshape(4, c).T / s[:, None]
    got = codes[..., 0].reshape(4, c).T
    nearest = np.round(w)
    for ch in range(c):
        def err(code):
            d = (np.asarray(code) - w[ch]) * s[ch]
            return d @ cov[ch] @ d

        options = [np.floor(w[ch]) + np.array(bits) for bits in itertools.product((0, 1), repeat=4)]
        assert err(got[ch]) == pytest.approx(min(err(o) for o in options))
        assert err(got[ch]) <= err(nearest[ch]) + 1e-12
        assert np.all(np.abs(got[ch] - w[ch]) < 1)  # only floor or ceil


def test_greedy_rounding_improves_on_nearest_and_is_locally_optimal():
    rng = np.random.default_rng(4)
    kernel = rng.standard_normal((1, 1, 12, 5)).astype(np.float32)
    a = rng.standard_normal((12, 40))
    cov = a @ a.T / 40 + 0.5  # correlated inputs, a common mean component
    codes = qn.greedy_rounding(kernel, cov, sweeps=10)
    nearest = qn.quantize_nearest(kernel, False)
    w = kernel / qn.weight_scales(kernel, False)
    assert np.all(np.abs(codes - w) < 1)  # each weight to the code below or above it
    err = qn.output_error(kernel, codes, cov)
    assert np.all(err <= qn.output_error(kernel, nearest, cov) + 1e-12)
    assert err.sum() < 0.8 * qn.output_error(kernel, nearest, cov).sum()
    # no single flip to the other neighbouring code lowers any channel's error
    for i in range(12):
        for c in range(5):
            other = codes.copy()
            other[0, 0, i, c] = np.floor(w[0, 0, i, c]) if codes[0, 0, i, c] > w[0, 0, i, c] else np.ceil(w[0, 0, i, c])
            assert qn.output_error(kernel, other, cov)[c] >= err[c] - 1e-12


def test_output_error_is_the_numpy_expectation():
    """d^T C d is the mean squared output error over samples whose centred covariance is C."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4000, 6)) @ rng.standard_normal((6, 6))
    kernel = rng.standard_normal((1, 1, 6, 3)).astype(np.float32)
    codes = qn.quantize_nearest(kernel, False)
    xc = x - x.mean(0)
    err = (xc @ (qn.dequantize(codes, kernel, False) - kernel).reshape(6, 3).astype(np.float64))
    cov = xc.T @ xc / len(x)
    np.testing.assert_allclose(qn.output_error(kernel, codes, cov), (err ** 2).mean(0), rtol=1e-5)

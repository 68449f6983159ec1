"""The numpy half of the accurate int8 recipe (`converters.int8_recipe`): activation range
selection, per-channel weight quantization, rounding choice for depthwise kernels.

Everything here follows the arithmetic the TFLite int8 kernels and TF's fake-quant ops use:

* activations: asymmetric int8 (256 levels); a range [lo, hi] is *nudged* so that 0.0 is
  exactly representable (`nudge`), as `tf.quantization.fake_quant_with_min_max_vars` does;
* weights: symmetric int8 per output channel, narrow range [-127, 127], scale max|w|/127.
"""

from __future__ import annotations

import numpy as np

LEVELS = 255  # 8 bits: 256 levels, 255 steps
RANGE_METHODS = ("minmax", "mse", "percentile")
# candidate clipping fractions of the observed range, searched by `mse_range`
MSE_GRID = np.geomspace(0.01, 1.0, 241)


def nudge(lo: float, hi: float) -> tuple[float, float, float]:
    """(nudged lo, nudged hi, scale) of an 8-bit asymmetric range, 0.0 exactly representable."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < 1e-12:
        hi = lo + 1e-6
    scale = (hi - lo) / LEVELS
    zero = float(np.clip(np.round(-lo / scale), 0, LEVELS))  # in [0, 255]
    return -zero * scale, (LEVELS - zero) * scale, scale


def fake_quant(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """x quantized to the nudged 8-bit grid of [lo, hi] and back (clipping outside it)."""
    nlo, nhi, scale = nudge(lo, hi)
    # floor(v + 0.5): TF's fake-quant rounding (ties up), not numpy's ties-to-even
    return (np.floor((np.clip(x, nlo, nhi) - nlo) / scale + 0.5) * scale + nlo).astype(np.float32)


def quant_mse(x: np.ndarray, lo: float, hi: float) -> float:
    return float(np.mean((fake_quant(x, lo, hi) - x) ** 2))


def minmax_range(x: np.ndarray) -> tuple[float, float]:
    return float(min(x.min(), 0.0)), float(max(x.max(), 0.0))


def mse_range(x: np.ndarray, grid: np.ndarray = MSE_GRID) -> tuple[float, float]:
    """The range, a fraction of the observed [min, max] (both ends scaled together), whose
    8-bit quantization of the samples `x` has the least mean squared error."""
    lo, hi = minmax_range(x)
    best, best_err = (lo, hi), quant_mse(x, lo, hi)
    for a in grid:
        err = quant_mse(x, a * lo, a * hi)
        if err < best_err:
            best, best_err = (float(a * lo), float(a * hi)), err
    return best


def percentile_range(x: np.ndarray, pct: float = 99.99) -> tuple[float, float]:
    """[the (100-pct)th, the pct-th] percentile of the samples, widened to include 0."""
    lo, hi = np.percentile(x, [100.0 - pct, pct])
    return float(min(lo, 0.0)), float(max(hi, 0.0))


def choose_range(x: np.ndarray, method: str, pct: float = 99.99) -> tuple[float, float]:
    if method == "minmax":
        return minmax_range(x)
    if method == "mse":
        return mse_range(x)
    if method == "percentile":
        return percentile_range(x, pct)
    raise ValueError(f"unknown range method {method!r}; one of {', '.join(RANGE_METHODS)}")


# --- weights -------------------------------------------------------------------------

def channel_axis(depthwise: bool) -> int:
    """Output-channel axis of a TF kernel: [kh, kw, cin, cout] conv -> 3; [kh, kw, c, 1]
    depthwise -> 2 (one filter per input channel)."""
    return 2 if depthwise else 3


def weight_scales(kernel: np.ndarray, depthwise: bool) -> np.ndarray:
    """One scale per output channel: max|w| / 127 (TFLite's symmetric narrow-range int8)."""
    axis = channel_axis(depthwise)
    other = tuple(i for i in range(kernel.ndim) if i != axis)
    m = np.abs(kernel).max(axis=other)
    return np.where(m > 0, m / 127.0, 1.0).astype(np.float64)


def _bshape(kernel: np.ndarray, depthwise: bool) -> tuple[int, ...]:
    shape = [1] * kernel.ndim
    shape[channel_axis(depthwise)] = -1
    return tuple(shape)


def quantize_nearest(kernel: np.ndarray, depthwise: bool) -> np.ndarray:
    """Integer codes in [-127, 127] (as float), round to nearest (what TFLite does)."""
    s = weight_scales(kernel, depthwise).reshape(_bshape(kernel, depthwise))
    return np.clip(np.round(kernel / s), -127, 127)


def dequantize(codes: np.ndarray, kernel: np.ndarray, depthwise: bool) -> np.ndarray:
    s = weight_scales(kernel, depthwise).reshape(_bshape(kernel, depthwise))
    return (codes * s).astype(np.float32)


def depthwise_rounding(kernel: np.ndarray, patch_cov: np.ndarray) -> np.ndarray:
    """Integer codes of a depthwise kernel [kh, kw, c, 1] choosing, per channel, the rounding
    (down or up, every one of the 2^(kh*kw) combinations) that minimises the output error
    variance d^T C d, with d the weight error and C the channel's [kh*kw, kh*kw] covariance
    of input patches (`patch_cov`, [c, kh*kw, kh*kw]). The channel's largest weight keeps
    its exact code, so the scale stays max|w| / 127."""
    kh, kw, c, _ = kernel.shape
    k = kh * kw
    s = weight_scales(kernel, True)  # [c]
    w = kernel[..., 0].reshape(k, c).T / s[:, None]  # [c, k] in code units
    floor = np.floor(w)
    combos = ((np.arange(2 ** k)[:, None] >> np.arange(k)) & 1).astype(np.float64)  # [2^k, k]
    codes = np.empty_like(w)
    for ch in range(c):
        cand = np.clip(floor[ch] + combos, -127, 127)  # [2^k, k]
        d = (cand - w[ch]) * s[ch]
        err = ((d @ patch_cov[ch]) * d).sum(1)
        codes[ch] = cand[int(np.argmin(err))]
    return codes.T.reshape(kh, kw, c, 1)


def greedy_rounding(kernel: np.ndarray, input_cov: np.ndarray, sweeps: int = 3) -> np.ndarray:
    """Integer codes of a conv kernel [kh, kw, cin, cout] (per-channel scales as TFLite's)
    whose rounding (each weight to the code below or above it) locally minimises, per output
    channel, the output error variance d^T C d, C being the [kh*kw*cin]^2 covariance of the
    layer's input patches (`input_cov`): starting from round-to-nearest, coordinate descent
    over the weights, flipping a weight's rounding whenever that lowers the error, for up to
    `sweeps` sweeps (AdaRound's objective without its relaxation)."""
    kh, kw, cin, cout = kernel.shape
    n = kh * kw * cin
    s = weight_scales(kernel, False)  # [cout]
    w = kernel.reshape(n, cout) / s  # code units, rows in patch order (kh, kw, cin)
    codes = np.clip(np.round(w), -127, 127)
    cov = np.asarray(input_cov, np.float64)
    g = cov @ ((codes - w) * s)  # [n, cout]: C d per output channel
    diag = np.diag(cov)
    for _ in range(sweeps):
        flips = 0
        for i in range(n):
            alt = np.where(codes[i] > w[i], codes[i] - 1, codes[i] + 1)
            ok = (codes[i] != w[i]) & (np.abs(alt) <= 127)
            delta = (alt - codes[i]) * s
            gain = 2 * delta * g[i] + delta ** 2 * diag[i]
            flip = ok & (gain < 0)
            if flip.any():
                codes[i, flip] = alt[flip]
                g += np.outer(cov[:, i], np.where(flip, delta, 0.0))
                flips += int(flip.sum())
        if not flips:
            break
    return codes.reshape(kh, kw, cin, cout)


def output_error(kernel: np.ndarray, codes: np.ndarray, input_cov: np.ndarray, depthwise: bool = False) -> np.ndarray:
    """Per output channel d^T C d of a conv's codes against its float kernel."""
    s = weight_scales(kernel, depthwise)
    if depthwise:
        kh, kw, c, _ = kernel.shape
        d = (codes[..., 0] * s - kernel[..., 0]).reshape(kh * kw, c).T.astype(np.float64)
        return (np.matmul(input_cov, d[:, :, None])[..., 0] * d).sum(1)
    d = (codes * s - kernel).reshape(-1, kernel.shape[-1]).astype(np.float64)
    return ((np.asarray(input_cov, np.float64) @ d) * d).sum(0)

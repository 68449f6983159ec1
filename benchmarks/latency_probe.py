"""The latency probe: how fast the target is *now*, relative to when a LUT was built.

A table built at one time and used at another drifts with the machine: its clock, its
neighbours (other processes, another core's cache and memory traffic), its thermal state (a
phone throttles). The probe is a small fixed model, a few MobileNet layers, shipped with the
package in both precisions (`assets/probe-fp32.tflite`, `assets/probe-int8.tflite`, made by
`scripts/make_latency_probe.py`). It is timed for about a second on the target, with the
timer that built the table (in-process LiteRT, a host `benchmark_model`, or
`benchmark_model` on the adb device), once at build time (several times, around the
calibration) and once before a prediction. The prediction is scaled by now / at build.

The figure is the mean per-invocation time (what a user's timer and benchmark_model report,
preemption by other processes included): the prediction is for the mean too.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
PROBE_SECONDS = 1.0
# The probe's layers: (kind, input resolution, cin, cout), in order, one chain; input 96x96x3.
PROBE_LAYERS = (
    ("conv3x3_s2", 96, 3, 16),
    ("depthwise_s1", 48, 16, 16), ("pointwise", 48, 16, 32),
    ("depthwise_s2", 48, 32, 32), ("pointwise", 24, 32, 64),
    ("depthwise_s1", 24, 64, 64), ("pointwise", 24, 64, 64),
    ("depthwise_s2", 24, 64, 64), ("pointwise", 12, 64, 128),
    ("depthwise_s1", 12, 128, 128), ("pointwise", 12, 128, 128),
    ("depthwise_s2", 12, 128, 128), ("pointwise", 6, 128, 256),
)
PROBE_INPUT = (1, 96, 96, 3)


def probe_path(precision: str) -> Path:
    path = ASSETS / f"probe-{precision}.tflite"
    if not path.is_file():
        from amc_tf.core.errors import AmcError

        raise AmcError(f"the latency probe {path.name} is missing from the installation ({path})")
    return path


def probe_us(timer, precision: str, seconds: float | None = None) -> float:
    """The probe's mean per-invocation time (us) on `timer`'s target, timed for about `seconds`.

    An in-process timer (`time_mean`) runs it for `seconds`; a benchmark_model timer (host or
    adb) runs it until `seconds` have passed (at least once, at most 5 runs) and takes the
    median of the runs' averages."""
    path = probe_path(precision)
    seconds = PROBE_SECONDS if seconds is None else seconds
    if hasattr(timer, "time_mean"):
        return round(timer.time_mean(path, seconds), 3)
    runs, t0 = [], time.monotonic()
    while not runs or (time.monotonic() - t0 < seconds and len(runs) < 5):
        runs.append(timer.time_model(path))
    return round(statistics.median(runs), 3)


def conditions() -> dict:
    """This host's conditions now: time (UTC), load average, CPU clock where readable."""
    out = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        out["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    mhz = _cpu_mhz()
    if mhz:
        out["cpu_mhz"] = mhz
    return out


def _cpu_mhz() -> float | None:
    """Mean current clock of the CPUs (cpufreq, else /proc/cpuinfo), None when unreadable."""
    vals = []
    for f in sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_cur_freq")):
        try:
            vals.append(int(f.read_text()) / 1000.0)
        except (OSError, ValueError):
            pass
    if not vals:
        try:
            with open("/proc/cpuinfo") as fh:
                vals = [float(line.split(":", 1)[1]) for line in fh if line.lower().startswith("cpu mhz")]
        except (OSError, ValueError):
            vals = []
    return round(statistics.fmean(vals), 1) if vals else None


def probe_tflite(precision: str, seed: int = 0) -> bytes:
    """The probe model, built from PROBE_LAYERS with the layer builders of the LUT (needs
    TensorFlow; `scripts/make_latency_probe.py` writes the shipped assets with it)."""
    import warnings

    import numpy as np
    import tensorflow as tf

    from amc_tf.converters.exporters import tflite_from_concrete
    from amc_tf.benchmarks.latency_timers import PRECISIONS, _int8_configure

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}")
    rng = np.random.default_rng(seed)
    weights = []
    for kind, _res, cin, cout in PROBE_LAYERS:
        if kind.startswith("depthwise"):
            w = rng.standard_normal((3, 3, cin, 1)) * np.sqrt(2.0 / 9)
        elif kind == "pointwise":
            w = rng.standard_normal((1, 1, cin, cout)) * np.sqrt(2.0 / cin)
        else:
            w = rng.standard_normal((3, 3, cin, cout)) * np.sqrt(2.0 / (9 * cin))
        weights.append((tf.constant(w.astype(np.float32)), tf.constant(np.zeros(cout, np.float32))))

    @tf.function(input_signature=[tf.TensorSpec(PROBE_INPUT, tf.float32)], autograph=False)
    def f(x):
        for (kind, _res, _cin, _cout), (w, b) in zip(PROBE_LAYERS, weights):
            stride = 2 if kind.endswith("_s2") else 1
            padding = "SAME"
            if stride == 2:
                x = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
                padding = "VALID"
            if kind.startswith("depthwise"):
                x = tf.nn.depthwise_conv2d(x, w, [1, stride, stride, 1], padding)
            else:
                x = tf.nn.conv2d(x, w, stride, padding)
            x = tf.nn.relu6(tf.nn.bias_add(x, b))
        return tf.reduce_mean(x, axis=[1, 2])

    configure = None
    if precision == "int8":
        data = np.random.default_rng(seed + 1)
        samples = [[data.uniform(-1, 1, PROBE_INPUT).astype(np.float32)] for _ in range(4)]
        configure = _int8_configure(samples, float_in=True, float_out=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return tflite_from_concrete(f.get_concrete_function(), configure)

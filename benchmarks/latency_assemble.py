"""The latency table assembled from a build's raw timings (benchmarks/latency_build.py): layer
points minus the invocation overhead, alignment ratios, and the per-family whole-model scale
fitted on the calibration networks (each round normalised by the probe run just before it)."""

from __future__ import annotations

import statistics

from amc_tf.benchmarks.latency_lut import ALIGN_PERIOD, LatencyLut, Table
from amc_tf.core.netspec import NetSpec


def assemble(points: dict, calibration: dict, plan: dict, fingerprint: dict, input_size: int,
             families: list[str], probes: dict | None = None) -> LatencyLut:
    """The LUT from raw points. With `probes` ({"start", "round0".., "end"}: us), the LUT's probe
    figure is their median, and a calibration time of round r counts as time * median / round r's probe."""
    overhead = points["null"]
    probe_ref = round(statistics.median(probes.values()), 3) if probes else None

    def normalized(rounds: list[float]) -> list[float]:
        if not probe_ref:
            return list(rounds)
        return [t * probe_ref / probes.get(f"round{r}", probe_ref) for r, t in enumerate(rounds)]

    tables = {}
    for name, t in plan.items():
        us = [[max(0.0, round(points[f"{name}:{ci}x{co}"] - overhead, 3)) for co in t["cout"]] for ci in t["cin"]]
        tables[name] = Table(t["kind"], t["res"], [float(c) for c in t["cin"]], [float(c) for c in t["cout"]], us,
                             _align_ratios(points, name, overhead))
    lut = LatencyLut(fingerprint, input_size, list(families), tables, overhead_us=overhead, probe_us=probe_ref)
    scale, rows = {}, []
    for fam in families:
        ratios = []
        for key, c in sorted(calibration.items()):
            spec = NetSpec.from_dict(c["spec"])
            if spec.family == fam and c["rounds_us"]:
                measured = round(statistics.median(normalized(c["rounds_us"])), 2)  # a typical round
                raw = (lut.predict(spec) * 1000.0 - overhead)
                ratios.append((measured - overhead) / raw)
                rows.append({"model": key, "channels": spec.channels(), "measured_us": measured,
                             "rounds_us": c["rounds_us"], "uncalibrated_us": round(raw + overhead, 2)})
        if ratios:  # the median: one model measured under a burst of load does not move it
            scale[fam] = round(statistics.median(ratios), 4)
    lut.scale = scale
    lut.meta["calibration"] = rows
    return lut


def _align_ratios(points: dict, name: str, overhead: float) -> list[float] | None:
    probe = [points.get(f"align:{name}:{r}") for r in range(ALIGN_PERIOD + 1)]
    if any(v is None for v in probe):
        return None
    probe = [max(v - overhead, 1e-3) for v in probe]
    lo, hi = probe[0], probe[ALIGN_PERIOD]
    return [1.0] + [round(probe[r] / (lo + (hi - lo) * r / ALIGN_PERIOD), 4) for r in range(1, ALIGN_PERIOD)]

"""Does a latency table hold when the machine drifts? Predictions of held-out prunings against
an independent timer, with and without the drift probe. Target: mean |error| <= 6 %, max <= 12 %.

The held-out models are 7 random-weight networks of prunings the build never saw (random
prunings with other seeds than its calibration's, odd widths, a uniform 0.5 width), converted
to .tflite at the table's input size and precision. The independent timer does not use the
project's timing code: one LiteRT interpreter (ai_edge_litert, XNNPACK, 1 thread),
3 x (30 warm-up + 100 timed) invocations, the mean of the 300 timed ones. Before each model's
measurement the prediction is made as `amc-tf latency predict` makes it: the probe (~1 s) on
this machine now, the table's prediction scaled by probe now / probe at build; the unscaled
(`--no-probe`) prediction is printed beside it. The load average is recorded per model.

    .venv/bin/python benchmarks/perf/perf_latency_drift.py --lut lut.json [--busy] [--json out.json]

`--busy` keeps another process busy (a pure-Python loop, the same niceness as this one) for the
whole measurement. Exits 1 when the target is missed (with the probe).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from amc_tf.core.flops import count  # noqa: E402
from amc_tf.core.netspec import V1, V2, NetSpec, make_blocks  # noqa: E402
from amc_tf.core.profiles import profile_spec  # noqa: E402
from amc_tf.benchmarks.latency_build import CALIBRATION_SEEDS, random_pruning  # noqa: E402
from amc_tf.benchmarks.latency_lut import load_lut  # noqa: E402

HELD_OUT_SEEDS = (201, 202)
assert not set(HELD_OUT_SEEDS) & set(CALIBRATION_SEEDS)


def odd_width(family: str, seed: int) -> NetSpec:
    """perf_latency_lut.odd_width on seeds of its own (3000 + seed): prunings no table has seen."""
    from perf_latency_lut import odd_width as odd_width_from

    return odd_width_from(family, seed, seed_base=3000)


def uniform_width(family: str, keep: float) -> NetSpec:
    std = profile_spec("1.0" if family == V1 else "v2-1.0")
    w = lambda c: max(1, int(round(c * keep)))  # noqa: E731
    stem = w(std.stem_ch)
    if family == V1:
        return std.with_changes(stem_ch=stem, blocks=make_blocks(V1, [(None, w(b.out_ch)) for b in std.blocks], stem))
    widths = [(None if b.expand_ch is None else w(b.expand_ch), w(b.out_ch)) for b in std.blocks]
    return std.with_changes(stem_ch=stem, blocks=make_blocks(V2, widths, stem), last_ch=w(std.last_ch))


def held_out(families: list[str], input_size: int) -> list[tuple[str, NetSpec]]:
    out = []
    for fam in (V1, V2):
        if fam not in families:
            continue
        short = fam.replace("mobilenet_", "")
        std = profile_spec("1.0" if fam == V1 else "v2-1.0")
        for seed in HELD_OUT_SEEDS:
            out.append((f"{short}-random{seed}", random_pruning(std, seed, low=0.25)))
        out.append((f"{short}-odd0", odd_width(fam, 0)))
    if V2 in families:
        out.append(("v2-0.5", uniform_width(V2, 0.5)))
    return [(name, spec.with_changes(input_size=input_size)) for name, spec in out]


def independent_mean_ms(path: Path) -> float:
    """One LiteRT interpreter, XNNPACK, 1 thread, 3 x (30 warm-up + 100 timed), the mean."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    d = interp.get_input_details()[0]
    x = np.random.default_rng(0).uniform(-1, 1, tuple(d["shape"])).astype(d["dtype"])
    interp.set_tensor(d["index"], x)
    times = []
    for _ in range(3):
        for _ in range(30):
            interp.invoke()
        for _ in range(100):
            t0 = time.perf_counter()
            interp.invoke()
            times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.fmean(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lut", type=Path, required=True)
    ap.add_argument("--busy", action="store_true", help="keep another process busy during the measurement")
    ap.add_argument("--json", type=Path, default=None, help="write the rows and the summary here")
    ap.add_argument("--label", default="", help="a name for this condition in the output")
    args = ap.parse_args()

    from amc_tf.benchmarks.latency_probe import conditions, probe_us
    from amc_tf.benchmarks.latency_timers import LocalTimer, network_tflite

    lut = load_lut(args.lut)
    specs = held_out(lut.families, lut.input_size)
    busy = None
    rows = []
    with tempfile.TemporaryDirectory(prefix="perf-drift-") as tmp:
        paths = {}
        for name, spec in specs:
            paths[name] = Path(tmp) / f"{name}.tflite"
            paths[name].write_bytes(network_tflite(spec, seed=7, precision=lut.precision))
        if args.busy:
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(1.0)
        try:
            start = conditions()
            print(f"conditions at start: {start}; busy neighbour: {'yes' if busy else 'no'}", flush=True)
            for name, spec in specs:
                load = os.getloadavg()[0]
                now = probe_us(LocalTimer(), lut.precision)
                pred, raw = lut.predict(spec, now), lut.predict(spec)
                measured = independent_mean_ms(paths[name])
                rows.append({"model": name, "family": spec.family, "mmacs": round(count(spec)["macs"] / 1e6),
                             "measured_ms": round(measured, 3), "predicted_ms": round(pred, 3),
                             "error_pct": round(100 * (pred / measured - 1), 1), "no_probe_ms": round(raw, 3),
                             "no_probe_error_pct": round(100 * (raw / measured - 1), 1),
                             "probe_factor": round(lut.speed(now), 3), "load1": round(load, 2)})
                print(json.dumps(rows[-1]), flush=True)
            end = conditions()
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    errs = [abs(r["error_pct"]) for r in rows]
    raw_errs = [abs(r["no_probe_error_pct"]) for r in rows]
    summary = {"label": args.label, "lut": str(args.lut), "lut_conditions": lut.conditions, "lut_probe_us": lut.probe_us,
               "precision": lut.precision, "busy": bool(args.busy), "start": start, "end": end,
               "mean_abs_error_pct": round(statistics.fmean(errs), 1), "max_abs_error_pct": round(max(errs), 1),
               "no_probe_mean_abs_error_pct": round(statistics.fmean(raw_errs), 1),
               "no_probe_max_abs_error_pct": round(max(raw_errs), 1)}
    ok = summary["mean_abs_error_pct"] <= 6.0 and summary["max_abs_error_pct"] <= 12.0
    summary["target_met"] = ok
    print("\n| model | MMACs | measured ms | predicted ms (probe) | error | predicted ms (--no-probe) | error "
          "| probe factor | load (1 min) |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['mmacs']} | {r['measured_ms']:.3f} | {r['predicted_ms']:.3f} | {r['error_pct']:+.1f} % "
              f"| {r['no_probe_ms']:.3f} | {r['no_probe_error_pct']:+.1f} % | {r['probe_factor']:.3f} | {r['load1']:.2f} |")
    print(f"\nwith the probe: mean |error| {summary['mean_abs_error_pct']} %, max {summary['max_abs_error_pct']} %; "
          f"--no-probe: mean {summary['no_probe_mean_abs_error_pct']} %, max {summary['no_probe_max_abs_error_pct']} %; "
          f"target (6 % / 12 %) {'met' if ok else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""How well does the latency LUT predict whole models? Target (local, 1 thread, XNNPACK):
mean |error| <= 6 %, max <= 12 %, on the six AMC profiles and on odd prunings.

Builds a LUT on this machine (or takes --lut), then for every evaluation model (the six AMC
profiles, random prunings of V1/V2 with seeds the build's calibration does not use, and
odd-width prunings with channel counts that are not multiples of 8, as tests/conftest.py's
odd_spec makes them) converts a random-weight .tflite, measures it with the project's own
local runner (`bench_local`, the Pixel-1 protocol unless --runs/--warmup/--repeats say
otherwise; the headline is the mean of the runs' averages) and compares with the prediction.
Prints the table and the load average before/after: other processes inflate measurements,
so on a shared machine run it under `nice -n -15` (as root) and read the extra column, the
lower quintile of single invocations, which preemption rarely reaches.

    .venv/bin/python benchmarks/perf/perf_latency_lut.py [--lut lut.json] [--odd 4] [--runs 200]

Exits 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from amc_tf.core.flops import count  # noqa: E402
from amc_tf.core.netspec import V1, V2, NetSpec, make_blocks  # noqa: E402
from amc_tf.core.profiles import PROFILE_NAMES, profile_spec  # noqa: E402
from amc_tf.benchmarks.latency_build import build_lut, random_pruning  # noqa: E402
from amc_tf.benchmarks.latency_lut import load_lut  # noqa: E402
from amc_tf.benchmarks.latency_timers import LocalTimer, network_tflite  # noqa: E402

EVAL_SEEDS = (1, 2, 3)  # calibration uses 101, 202


def odd_width(family: str, seed: int, seed_base: int = 1000) -> NetSpec:
    """Every width odd (not a multiple of 8) and anywhere from 15 % to 110 % of the standard."""
    std = profile_spec("1.0" if family == V1 else "v2-1.0")
    rng = np.random.default_rng(seed_base + seed)

    def odd(c):
        v = max(3, int(c * rng.uniform(0.15, 1.1)))
        return v + 1 if v % 8 == 0 else v

    stem = odd(std.stem_ch)
    if family == V1:
        return std.with_changes(stem_ch=stem, blocks=make_blocks(V1, [(None, odd(b.out_ch)) for b in std.blocks], stem))
    widths, stage = [], {}
    for b in std.blocks:
        out = stage.setdefault(b.out_ch, odd(b.out_ch))
        widths.append((None if b.expand_ch is None else odd(b.expand_ch), out))
    return std.with_changes(stem_ch=stem, blocks=make_blocks(V2, widths, stem), last_ch=odd(std.last_ch))


def eval_models(n_odd: int) -> list[tuple[str, NetSpec]]:
    out = [(name, profile_spec(name)) for name in PROFILE_NAMES]
    for seed in EVAL_SEEDS[: max(0, n_odd)]:
        out.append((f"v1-random{seed}", random_pruning(profile_spec("1.0"), seed, low=0.2)))
        out.append((f"v2-random{seed}", random_pruning(profile_spec("v2-1.0"), seed, low=0.2)))
    for seed in range(max(0, n_odd)):
        out.append((f"v1-odd{seed}", odd_width(V1, seed)))
        out.append((f"v2-odd{seed}", odd_width(V2, seed)))
    return out


def measure(specs, args, workdir: Path) -> dict[str, dict]:
    from amc_tf.benchmarks.local import bench_local
    from amc_tf.benchmarks.protocol import Protocol

    protocol = Protocol(warmup=args.warmup, runs=args.runs, repeats=args.repeats, threads=1)
    results, paths = {}, {}
    (workdir / "logs").mkdir(exist_ok=True)
    for name, spec in specs:
        path = paths[name] = workdir / f"{name}.tflite"
        path.write_bytes(network_tflite(spec))
        rec = bench_local(path, name, protocol, workdir / "logs")
        avgs = [r.inference_avg_us / 1000.0 for r in rec.runs if r.status == "ok"]
        results[name] = {"mean_ms": statistics.fmean(avgs), "runs_ms": avgs, "low_ms": []}
        print(f"  bench {name}: {' '.join(f'{a:.3f}' for a in avgs)} ms", file=sys.stderr, flush=True)
    timer = LocalTimer(max_runs=400)
    for _ in range(args.rounds):  # round-robin: a burst of load spoils one round, not one model
        for name, _spec in specs:
            results[name]["low_ms"].append(timer.time_model(paths[name], budget_s=0.5) / 1000.0)
    for name, _spec in specs:
        r = results[name]
        print(f"  lower quintile {name}: {' '.join(f'{a:.3f}' for a in r['low_ms'])} ms", file=sys.stderr)
        r["low_ms"] = min(r["low_ms"])
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lut", type=Path, default=None, help="use this LUT instead of building one")
    ap.add_argument("--keep-lut", type=Path, default=None, help="where to write the LUT built here")
    ap.add_argument("--odd", type=int, default=3, help="random and odd-width prunings per family (each)")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of lower-quintile timing (the least disturbed counts)")
    args = ap.parse_args()

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="perf-lut-") as tmp:
        if args.lut:
            lut = load_lut(args.lut)
        else:
            out = args.keep_lut or Path(tmp) / "lut.json"
            t0 = time.monotonic()
            lut = build_lut(out, LocalTimer(), [V1, V2], 224, force=True)
            print(f"built the LUT in {time.monotonic() - t0:.0f} s ({lut.meta['points']} points)")
        print(f"LUT: {lut.fingerprint.get('cpu')}, {lut.fingerprint['runtime']}, {lut.fingerprint['threads']} "
              f"thread(s), {lut.fingerprint['delegate']}; scale {lut.scale}; built {lut.meta.get('built')} "
              f"in {lut.meta.get('build_s')} s")
        specs = eval_models(args.odd)
        measured = measure(specs, args, Path(tmp))
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    rows, errors, low_errors = [], [], []
    for name, spec in specs:
        pred = lut.predict(spec)
        m = measured[name]
        err = 100.0 * (pred / m["mean_ms"] - 1.0)
        low_err = 100.0 * (pred / m["low_ms"] - 1.0)
        errors.append(abs(err))
        low_errors.append(abs(low_err))
        spread = max(m["runs_ms"]) - min(m["runs_ms"])
        rows.append(f"| {name} | {spec.family.replace('mobilenet_', '')} | {count(spec)['macs'] / 1e6:.0f} | "
                    f"{m['mean_ms']:.3f} | {spread:.3f} | {pred:.3f} | {err:+.1f} % | {m['low_ms']:.3f} | "
                    f"{low_err:+.1f} % |")
    print("\n| model | family | MMACs | measured ms (bench: mean of runs) | run spread ms | predicted ms | error "
          "| lower-quintile invocation ms (best of rounds) | error vs it |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nagainst the lower-quintile invocation: mean |error| {statistics.fmean(low_errors):.1f} %, "
          f"max {max(low_errors):.1f} %")
    mean_err, max_err = statistics.fmean(errors), max(errors)
    ok = mean_err <= 6.0 and max_err <= 12.0
    load = max(os.getloadavg()[:2]) / (os.cpu_count() or 1)
    if load > 0.6:
        print(f"note: the load average was {load:.1f} per CPU: other processes ran, and the bench means include "
              "their preemption; the lower-quintile column is the figure to trust on a shared machine")
    print(f"\nmean |error| {mean_err:.1f} % (target <= 6 %), max |error| {max_err:.1f} % (target <= 12 %): "
          f"{'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

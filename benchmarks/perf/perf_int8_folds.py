"""int8 recipes on a real ImageNet MobileNetV2, k-fold: calibrate on (k-1)/k of the 100 shared
images, measure on the other 1/k, so every image is measured exactly once and never by a
model calibrated on it.

Same model and images as `perf_int8_recipes.py` (torchvision's `mobilenet_v2-b0353104.pth`,
../shared/fixtures/imagenet-sample). Reports, summed over the folds: fp32 top-1 correct,
int8 top-1 correct, agreement with fp32, mean |logit error|; and of the fold-0 model: the
share of conv/FC MACs in int8 kernels and the size as a ratio to fp32 (latency with
--latency: LiteRT + XNNPACK, 1 thread, models interleaved).

Each method's figures are appended to --results (JSON lines) as soon as they are measured,
so several invocations (one per method) add up to one table (`--table` prints it).

    .venv/bin/python benchmarks/perf/perf_int8_folds.py [--k 4] [--methods tf final ...] [--latency]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import perf_int8_recipes as base  # noqa: E402

# name -> (mode, RecipeOptions kwargs, or None for the TF converter's own calibration)
METHODS = {
    "tf": ("int8", None),
    "final": ("int8", {}),  # the default --quantize int8 (accurate recipe, RecipeOptions())
    "final@99.995": ("int8", dict(percentile=99.995)),
    "final+samples16k": ("int8", dict(samples_per_image=16384)),
    "final+qbc": ("int8", dict(bias_correction="quantized")),
    "final+out-minmax": ("int8", dict(output_range="minmax")),
}


def kfolds(n_images: int, k: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(calibrate, measure) index pairs: one seeded permutation cut into k parts, each
    measured once by a model calibrated on the other k-1."""
    parts = np.array_split(np.random.default_rng(seed).permutation(n_images), k)
    return [(np.sort(np.concatenate(parts[:i] + parts[i + 1:])), np.sort(parts[i])) for i in range(k)]


def quantize(model, method: str, calib: np.ndarray) -> bytes:
    from amc_tf.converters.int8_recipe import RecipeOptions, accurate_int8
    from amc_tf.converters.quantize import QuantizeRequest, quantize as tf_quantize

    _, opts = METHODS[method]
    if opts is None:
        return tf_quantize(model, QuantizeRequest("int8", recipe="tf"),
                           lambda: (calib[i:i + 1] for i in range(len(calib))))[0]
    return accurate_int8(model, calib, options=RecipeOptions(**opts))[0]


def mac_share(data: bytes) -> float:
    from amc_tf.core.tflite_io import load_interpreter
    from amc_tf.converters.tflite_inspect import int8_mac_share

    return float(int8_mac_share(load_interpreter(data, delegates=False))["share"])


def print_table(results: Path) -> None:
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    print(f"{'method':<18} {'seed':>4} {'fp32 top-1':>10} {'int8 top-1':>10} {'agreement':>14} {'|logit err|':>11} "
          f"{'int8 MACs':>9} {'size x':>7} {'lat x':>6}  folds (agree)")
    for r in rows:
        lat = f"{r['latency_ratio']:.2f}" if r.get("latency_ratio") else "-"
        print(f"{r['method']:<18} {r.get('seed', 0):>4} {r['correct_fp32']:>6}/{r['n']:<3} {r['correct_q']:>6}/{r['n']:<3} "
              f"{r['agree']:>4}/{r['n']} {100 * r['agree'] / r['n']:5.1f}% {r['mean_abs_logit_err']:>11.3f} "
              f"{100 * r['int8_mac_share']:>8.1f}% {r['size_ratio']:>7.3f} {lat:>6}  "
              f"{' '.join(str(f['agree']) for f in r['folds'])}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=4, help="folds (default 4: calibrate on 75, measure on 25)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the permutation the folds cut (default 0)")
    ap.add_argument("--only-fold", type=int, default=None, help="run one fold (to time it)")
    ap.add_argument("--methods", nargs="+", default=["tf", "final"], choices=list(METHODS))
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "amc-tf")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/amc-int8-folds"),
                    help="keeps the fp32 conversion and the fold-0 models between runs")
    ap.add_argument("--results", type=Path, default=None, help="JSON lines (default WORKDIR/results.jsonl)")
    ap.add_argument("--latency", action="store_true", help="time fp32 and each fold-0 model (1 round)")
    ap.add_argument("--table", action="store_true", help="print the table of --results and exit")
    args = ap.parse_args()
    results = args.results or args.workdir / "results.jsonl"
    if args.table:
        print_table(results)
        return 0

    if not base.SAMPLE.is_dir():
        print(f"skipped: {base.SAMPLE} (100 real ImageNet images) is missing")
        return 0
    pth = base.fetch_weights(args.cache)
    if isinstance(pth, str):
        print(f"skipped: {pth}")
        return 0

    from amc_tf.core import calibration
    from amc_tf.core.outdir import read_outdir
    from amc_tf.core.preprocess import Preprocessing
    from amc_tf.converters.exporters import run_tflite
    from amc_tf.converters.tf_builder import build

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    fp32_dir = work / "fp32"
    if not (fp32_dir / "model.tflite").is_file():
        print(f"converting {pth} (fp32) with amc-tf convert", flush=True)
        subprocess.run([str(base.AMC_TF), "convert", str(pth), "-o", str(fp32_dir), "-q", "--force"], check=True,
                       stdout=subprocess.DEVNULL)
    model = build(read_outdir(fp32_dir).network())
    dataset = calibration.open_images(base.SAMPLE)
    images, kept = calibration.load(dataset, Preprocessing.for_input_size(model.spec.input_size))
    labels = dataset.model_labels(model.spec.num_classes)[0][kept]
    fp32_path = fp32_dir / "model.tflite"
    ref = run_tflite(fp32_path, images)
    pairs = kfolds(len(images), args.k, args.seed)
    if args.only_fold is not None:
        pairs = [pairs[args.only_fold]]
    print(f"{len(images)} images, {len(pairs)} fold(s) of calibrate/measure {len(pairs[0][0])}/{len(pairs[0][1])}",
          flush=True)
    fp32_bytes = fp32_path.stat().st_size
    for method in args.methods:
        t0 = time.time()
        per_fold, first = [], None
        for cal, meas in pairs:
            tf0 = time.time()
            data = quantize(model, method, images[cal])
            out = run_tflite(data, images[meas])
            per_fold.append({"agree": int((out.argmax(1) == ref[meas].argmax(1)).sum()), "n": int(len(meas)),
                             "correct_fp32": int((ref[meas].argmax(1) == labels[meas]).sum()),
                             "correct_q": int((out.argmax(1) == labels[meas]).sum()),
                             "mean_abs_logit_err": float(np.abs(out - ref[meas]).mean()),
                             "seconds": round(time.time() - tf0, 1)})
            print(f"    {method} fold: {per_fold[-1]}", flush=True)
            first = first or data
        path = work / f"{method}-seed{args.seed}.tflite"
        path.write_bytes(first)
        row = {"method": method, "options": METHODS[method][1], "k": args.k, "seed": args.seed, "only_fold": args.only_fold,
               **{k: sum(f[k] for f in per_fold) for k in ("agree", "n", "correct_fp32", "correct_q")},
               "mean_abs_logit_err": float(np.mean([f["mean_abs_logit_err"] for f in per_fold])),
               "int8_mac_share": mac_share(first), "size_ratio": round(len(first) / fp32_bytes, 3),
               "folds": per_fold, "seconds": round(time.time() - t0, 1)}
        if args.latency:
            lat = base.latencies({"fp32": fp32_path, method: path}, warmup=10, runs=30, rounds=2)
            row.update(latency_ms=round(lat[method], 3), fp32_latency_ms=round(lat["fp32"], 3),
                       latency_ratio=round(lat[method] / lat["fp32"], 3))
        with results.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"  {method}: agreement {row['agree']}/{row['n']}, top-1 fp32 {row['correct_fp32']} -> int8 "
              f"{row['correct_q']}, |logit err| {row['mean_abs_logit_err']:.3f}, int8 MACs "
              f"{100 * row['int8_mac_share']:.1f}%, size {row['size_ratio']}x"
              + (f", latency {row['latency_ratio']}x" if args.latency else "") + f" ({row['seconds']:.0f}s)",
              flush=True)
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

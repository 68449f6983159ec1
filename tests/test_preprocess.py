"""The `pil` path against torchvision's eval transform written out with PyTorch's own ops,
and the `tf` path's distance from it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from amc_tf.core.preprocess import Preprocessing, crop_offsets, normalize, pil_load_crop, resized_shape, tf_crop, tf_decode

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "imagenet-sample"
PREP = Preprocessing()


def torchvision_eval_reference(img: Image.Image, new_size, offsets) -> np.ndarray:
    """Resize(256) + CenterCrop(224) + ToTensor + Normalize as torchvision computes them on a PIL
    image (PIL resize, then torch float ops), with the resize size and offsets given explicitly."""
    img = img.convert("RGB").resize(new_size[::-1], Image.BILINEAR)
    top, left = offsets
    img = img.crop((left, top, left + 224, top + 224))
    t = torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous().float().div(255)
    mean = torch.tensor(PREP.mean).view(3, 1, 1)
    std = torch.tensor(PREP.std).view(3, 1, 1)
    return t.sub(mean).div(std).permute(1, 2, 0).numpy()


def _image(mode: str, w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
    return small.convert(mode) if mode != "RGB" else small


# (mode, format, width, height, expected resized (h, w), expected crop (top, left))
CASES = {
    "rgb-jpeg-500x375": ("RGB", "JPEG", 500, 375, (256, 341), (16, 58)),  # 58.5 rounds to even
    "gray-jpeg-333x500": ("L", "JPEG", 333, 500, (384, 256), (80, 16)),
    "cmyk-jpeg-257x256": ("CMYK", "JPEG", 257, 256, (256, 257), (16, 16)),  # 16.5 -> 16
    "rgba-png-300x230": ("RGBA", "PNG", 300, 230, (256, 333), (16, 54)),  # 54.5 -> 54
    "palette-png-256x256": ("P", "PNG", 256, 256, (256, 256), (16, 16)),
    "gray-png-1000x260": ("L", "PNG", 1000, 260, (256, 984), (16, 380)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_pil_path_equals_torchvision_transform(case):
    mode, fmt, w, h, new_size, offsets = CASES[case]
    buf = io.BytesIO()
    _image(mode, w, h, seed=len(case)).save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    data = buf.getvalue()
    assert resized_shape(h, w, 256) == new_size
    assert crop_offsets(*new_size, 224) == offsets
    ref = torchvision_eval_reference(Image.open(io.BytesIO(data)), new_size, offsets)
    got = normalize(pil_load_crop(data, PREP), PREP)
    assert got.dtype == np.float32 and got.shape == (224, 224, 3)
    np.testing.assert_array_equal(got, ref)


def test_small_input_size_resizes_to_int_size_over_0875():
    prep = Preprocessing.for_input_size(64)
    assert (prep.size, prep.resize_size) == (64, 73)
    assert pil_load_crop(_bytes(_image("RGB", 100, 80, 1)), prep).shape == (64, 64, 3)


def _bytes(img, fmt="PNG"):
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize("case", ["rgb-jpeg-500x375", "gray-png-1000x260", "palette-png-256x256"])
def test_tf_path_same_geometry_and_close_pixels(case):
    import tensorflow as tf

    mode, fmt, w, h, _, _ = CASES[case]
    img = _image(mode, w, h, seed=3)
    data = _bytes(img if mode != "P" else img, "PNG")  # lossless, so only the resize differs
    pil = pil_load_crop(data, PREP).astype(np.int16)
    tfp = tf_crop(tf_decode(tf.constant(data)), PREP).numpy().astype(np.int16)
    diff = np.abs(pil - tfp)
    assert tfp.shape == (224, 224, 3)
    assert diff.mean() < 1.0 and diff.max() <= 8, (diff.mean(), diff.max())


def test_tf_crop_batches_like_single_images():
    import tensorflow as tf

    imgs = np.stack([np.asarray(_image("RGB", 300, 240, s)) for s in range(3)])
    batch = tf_crop(tf.constant(imgs), PREP).numpy()
    single = np.stack([tf_crop(tf.constant(i), PREP).numpy() for i in imgs])
    np.testing.assert_array_equal(batch, single)


@pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"needs the ImageNet sample at {SAMPLE}")
def test_tf_vs_pil_on_imagenet_sample():
    import tensorflow as tf

    diffs = []
    for path in sorted(SAMPLE.iterdir())[:25]:
        data = path.read_bytes()
        pil = pil_load_crop(data, PREP).astype(np.int16)
        tfp = tf_crop(tf_decode(tf.constant(data)), PREP).numpy().astype(np.int16)
        diffs.append(np.abs(pil - tfp))
    d = np.stack(diffs)
    # JPEG decoders (libjpeg in PIL vs TF's) and the resize kernels differ slightly
    assert d.mean() < 3.0, d.mean()
    assert np.mean(d <= 5) > 0.95

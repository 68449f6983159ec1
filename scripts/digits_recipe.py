"""The digits task: scikit-learn's 8x8 handwritten digits, upscaled to images, with a fixed
seeded train / held-out split. Shared by `scripts/train_digits.py` and the tests, which
export the held-out split as an image folder and evaluate it through `amc-tf eval`.

Recipe (also written to tests/data/digits/split.json):
* pixels: sklearn.datasets.load_digits() values 0..16 -> round(v * 255 / 16) as uint8, one
  grayscale 8x8 image per sample;
* image: upscaled with PIL bilinear to IMAGE_SIZE x IMAGE_SIZE (= int(64 / 0.875), so the
  eval transform's resize is the identity and its centre crop gives the 64x64 model input),
  saved as a grayscale PNG (the loader converts it to RGB);
* split: numpy.random.default_rng(SEED).permutation(1797); the first HELD_OUT indices
  (sorted) are held out, the rest train.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SEED = 20240611
HELD_OUT = 360
INPUT_SIZE = 64
IMAGE_SIZE = int(INPUT_SIZE / 0.875)  # 73
CLASSES = tuple(str(d) for d in range(10))


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [1797, 8, 8] in 0..255, int64 labels)."""
    from sklearn.datasets import load_digits as sk_load

    d = sk_load()
    pixels = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    return pixels, d.target.astype(np.int64)


def split(n: int = 1797) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices), both sorted."""
    perm = np.random.default_rng(SEED).permutation(n)
    return np.sort(perm[HELD_OUT:]), np.sort(perm[:HELD_OUT])


def to_image(pixels_8x8: np.ndarray):
    from PIL import Image

    return Image.fromarray(pixels_8x8, mode="L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)


def write_image_folder(root: str | os.PathLike, indices: np.ndarray | None = None) -> Path:
    """The samples (default: the held-out split) as root/<digit>/<index>.png; an ImageFolder."""
    root = Path(root)
    pixels, labels = load_digits()
    indices = split(len(labels))[1] if indices is None else indices
    for c in CLASSES:
        (root / c).mkdir(parents=True, exist_ok=True)
    for i in indices:
        to_image(pixels[i]).save(root / str(labels[i]) / f"{i:04d}.png")
    return root


def recipe() -> dict:
    train, held_out = split()
    return {
        "dataset": "sklearn.datasets.load_digits (1797 8x8 images, 10 classes)",
        "pixels": "round(v * 255 / 16) as uint8 grayscale",
        "image": {"size": IMAGE_SIZE, "resample": "PIL bilinear", "format": "PNG, mode L"},
        "model_input": INPUT_SIZE,
        "split": {"seed": SEED, "rule": "numpy.random.default_rng(seed).permutation(1797)[:360] held out",
                  "train": len(train), "held_out": len(held_out), "held_out_indices": held_out.tolist()},
    }


if __name__ == "__main__":  # python scripts/digits_recipe.py DIR [train]: write a split as an image folder
    import sys

    if len(sys.argv) not in (2, 3) or sys.argv[2:] not in ([], ["train"], ["held-out"]):
        sys.exit("usage: python scripts/digits_recipe.py DIR [held-out|train]")
    which = 0 if sys.argv[2:] == ["train"] else 1
    out = write_image_folder(sys.argv[1], split()[which])
    print(f"{out}: {len(split()[which])} images in 10 class folders")

"""Calibration images for full-integer quantization, and the images held out from them.

The images of a folder (any layout `amc_tf.core.data.open_dataset` reads, or simply a folder
of images without labels) are shuffled with a fixed seed; the first `size` calibrate,
the rest are *held out*: they measure the quantized model, and no image whose content
(sha256) is among the calibration images is ever held out. Images are preprocessed by
evaluation's own functions (`amc_tf.core.preprocess`: the PyTorch-exact `pil` crop, then
`normalize`), so the activation ranges are those the model sees when it is evaluated.

A conversion writes the calibration set's hashes to OUTDIR/calibration.txt
(`sha256  path` lines); `amc-tf compare` leaves those images out of its measurements.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from amc_tf.core.errors import AmcError
from amc_tf.core.preprocess import Preprocessing
from amc_tf.core.fileutil import is_regular, sha256_file

MAX_IMAGE_BYTES = 256 << 20  # an image file over 256 MiB is not a calibration photo

SYNTHETIC = "synthetic"
MANIFEST = "calibration.txt"
PREPROCESS_MODE = "pil"  # evaluation's default: torchvision's eval transform exactly
SEED = 0
MAX_HELD_OUT = 200
SYNTHETIC_WARNING = ("calibrated on SYNTHETIC random-pixel images, not real ones: the int8 activation ranges "
                     "are guesses and accuracy may be far below fp32; calibrate with --images DIR")


class CalibrationError(AmcError):
    """The calibration images cannot be used (exit 2)."""


def open_images(root: str | os.PathLike):
    """The folder as a Dataset: a labelled layout when `open_dataset` recognises one, else
    every image under it, unlabelled (calibration needs no labels)."""
    from amc_tf.core.data import IMAGE_EXTENSIONS, DataError, Dataset, open_dataset

    root = os.fspath(root)
    if not os.path.isdir(root):
        what = "not a directory (give the folder that holds the images)" if os.path.exists(root) else "no such directory"
        raise CalibrationError(f"--images {root}: {what}")
    try:
        dataset = open_dataset(root)
    except DataError:
        files = sorted(os.path.join(d, f) for d, _, names in os.walk(root, followlinks=True) for f in names
                       if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise CalibrationError(f"--images {root}: no images found") from None
        return _regular_only(Dataset("images", root, (), files))
    if dataset.records:
        raise CalibrationError(f"--images {root}: TFRecord shards are not supported for calibration; "
                               "give a folder of images")
    return _regular_only(dataset)


def _regular_only(dataset):
    """The dataset without the entries that are not regular files (a FIFO or a device named like
    an image, a broken link): they are moved to `skipped`, never hashed nor read."""
    keep = [i for i, f in enumerate(dataset.files) if is_regular(f)]
    if len(keep) == len(dataset.files):
        return dataset
    if not keep:
        raise CalibrationError(f"--images {dataset.root}: no images found (none of its "
                               f"{len(dataset.files)} image names is a regular file)")
    pick = np.asarray(keep, np.int64)
    kept = set(keep)
    dropped = [{"file": f, "error": "not a regular file"} for i, f in enumerate(dataset.files) if i not in kept]
    return replace(dataset, files=[dataset.files[i] for i in keep],
                   labels=None if dataset.labels is None else dataset.labels[pick],
                   imagenet_labels=None if dataset.imagenet_labels is None else dataset.imagenet_labels[pick],
                   skipped=list(dataset.skipped) + dropped)


@dataclass
class Split:
    """Calibration and held-out images of one folder, with their content hashes."""

    dataset: object  # amc_tf.core.data.Dataset
    calibration: list[int]  # indices into dataset.files
    held_out: list[int]
    hashes: list[str]  # sha256 of every dataset file

    def subset(self, indices: list[int]):
        ds = self.dataset
        pick = np.asarray(indices, np.int64)
        return replace(ds, files=[ds.files[i] for i in indices],
                       labels=None if ds.labels is None else ds.labels[pick],
                       imagenet_labels=None if ds.imagenet_labels is None else ds.imagenet_labels[pick])

    def manifest(self) -> str:
        return "".join(f"{self.hashes[i]}  {os.path.relpath(self.dataset.files[i], self.dataset.root)}\n"
                       for i in self.calibration)


def check_size(root: str | os.PathLike, size: int):
    """The folder as a Dataset, if it holds at least `size` images (a directory listing only)."""
    dataset = open_images(root)
    n = len(dataset.files)
    if n < size:
        raise CalibrationError(f"--images {root} holds {n} images, fewer than --calibration-size {size}; "
                               f"pass --calibration-size {n} or fewer, or add images")
    return dataset


def split(root: str | os.PathLike, size: int, max_held_out: int = MAX_HELD_OUT, seed: int = SEED) -> Split:
    """Shuffle the folder's images (fixed seed); the first `size` calibrate; up to
    `max_held_out` of the others, none a copy of a calibration image, are held out."""
    if size < 1:
        raise CalibrationError(f"--calibration-size must be >= 1, got {size}")
    dataset = check_size(root, size)
    n = len(dataset.files)
    hashes = [sha256_file(f, MAX_IMAGE_BYTES, what=f"--images image {f}") for f in dataset.files]
    order = np.random.default_rng(seed).permutation(n).tolist()
    calibration = sorted(order[:size])
    seen = {hashes[i] for i in calibration}
    held_out = []
    for i in order[size:]:
        if len(held_out) == max_held_out:
            break
        if hashes[i] not in seen:
            held_out.append(i)
            seen.add(hashes[i])
    return Split(dataset, calibration, sorted(held_out), hashes)


def load(dataset, prep: Preprocessing, skipped: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(normalised float32 NHWC images, indices into dataset.files of those that decoded),
    each through evaluation's `pil` path: `pil_load_crop` then `normalize`; unreadable
    images are skipped, as evaluation skips them, and named in `skipped` ({"file", "error"})."""
    from amc_tf.core.data import describe_failure
    from amc_tf.core.preprocess import normalize, pil_load_crop

    images, indices = [], []
    for i, path in enumerate(dataset.files):
        try:
            pixels = pil_load_crop(path, prep)
        except Exception as exc:  # noqa: BLE001 - any decoder error: the image is unreadable
            if skipped is not None:
                skipped.append({"file": path, "error": describe_failure(exc)})
            continue
        images.append(pixels)
        indices.append(i)
    if not images:
        raise CalibrationError(f"{dataset.root}: none of the {len(dataset.files)} images could be read")
    return normalize(np.stack(images), prep), np.asarray(indices, np.int64)


def synthetic(n: int, prep: Preprocessing, seed: int = SEED) -> np.ndarray:
    """n random-pixel images (uniform uint8, normalised): inputs in the real range, with none
    of a real image's statistics."""
    pixels = np.random.default_rng(seed).integers(0, 256, (n, prep.size, prep.size, 3), endpoint=False)
    from amc_tf.core.preprocess import normalize

    return normalize(pixels.astype(np.uint8), prep)


def read_manifest(path: str | os.PathLike) -> set[str]:
    """The sha256 hashes listed in a calibration.txt (empty if there is none)."""
    path = Path(path)
    if not os.path.lexists(path):
        return set()
    from amc_tf.core.fileutil import read_regular  # a FIFO or a device is refused, not read

    text = read_regular(path, 64 << 20, what=str(path)).decode("utf-8", errors="replace")
    return {line.split()[0] for line in text.splitlines() if line.strip()}

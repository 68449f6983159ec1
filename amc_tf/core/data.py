"""Evaluation data: the dataset layouts, the ImageNet wnids and the label mapping.

Layouts (`open_dataset` detects which):

* `tfrecord`: slim's `validation-*-of-*` shards (`image/encoded`, `image/class/label` 1..1000,
  0 = background), read in shard-name order;
* `imagefolder`: `DIR/<class>/*.JPEG`; class index = sorted folder order (torchvision's
  ImageFolder), files in sorted order;
* `imagenet-val`: the flat ImageNet validation folder (`ILSVRC2012_val_*.JPEG`) with its
  ground truth, `LOC_val_solution.csv` (Kaggle) or the devkit's
  `ILSVRC2012_validation_ground_truth.txt` + `meta.mat` (ILSVRC2012_IDs are not in sorted
  wnid order: meta.mat maps them), found in DIR or its parent;
* `flat`: a folder of `<wnid>_*.JPEG` files, in sorted file-name order.

Every sample has a *dataset label*; `--labels-offset K` gives the model's class index as
`dataset label - K`, as slim's eval_image_classifier does. Dataset labels are the 0-based
ImageNet index (sorted wnids) when the classes are wnids and the model has 1000 or 1001
outputs, else the sorted-folder index; slim TFRecords store 1..1000. The default offset
follows the model's class count (1000-way on TFRecords: 1; 1001-way on wnids: -1).
"""

from __future__ import annotations

import csv
import functools
import glob
import io
import os
import re
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from amc_tf.core.errors import AmcError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
WNID_RE = re.compile(r"^n\d{8}$")
TFRECORD_GLOB = "validation-*-of-*"
GROUND_TRUTH_TXT = "ILSVRC2012_validation_ground_truth.txt"
GROUND_TRUTH_CSV = "LOC_val_solution.csv"


class DataError(AmcError):
    """The data folder is empty, unknown or inconsistent with the model."""


@functools.lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids in canonical (sorted) order: class i of a 1000-way model."""
    text = resources.files("amc_tf.core").joinpath("assets/imagenet_wnids.txt").read_text()
    return tuple(text.split())


@functools.lru_cache(maxsize=1)
def _wnid_index() -> dict[str, int]:
    return {w: i for i, w in enumerate(imagenet_wnids())}


@dataclass
class Dataset:
    """Samples in dataset order: `files` (image paths) or `records` (TFRecord shards).

    `labels` are folder indices (sorted class folders); `imagenet_labels` are ImageNet wnid
    indices, when the classes are wnids. TFRecords carry their labels (1..1000) inside."""

    layout: str
    root: str
    classes: tuple[str, ...]  # class names (wnids or folder names); empty for TFRecords
    files: list[str] = field(default_factory=list)
    labels: np.ndarray | None = None
    imagenet_labels: np.ndarray | None = None
    records: list[str] = field(default_factory=list)
    unknown_wnid: str | None = None  # wnid-named class folders with a name outside ImageNet-1k
    skipped: list[dict] = field(default_factory=list)  # entries not listed ({"file", "error"}): symlink loops, ...

    def default_labels_offset(self, num_classes: int) -> int:
        if self.layout == "tfrecord":
            return 1 if num_classes == 1000 else 0  # slim: 1..1000 with 0 = background
        if self.imagenet_labels is not None and num_classes == 1001:
            return -1  # a background class shifts the ImageNet classes up by one
        return 0

    def model_labels(self, num_classes: int, labels_offset: int | None = None) -> tuple[np.ndarray | None, int]:
        """(each file's class index in the model's output, offset); for TFRecords (None,
        offset): the reader subtracts the offset from the stored labels. Clear errors when
        the model's classes cannot be matched to the data's."""
        offset = self.default_labels_offset(num_classes) if labels_offset is None else labels_offset
        if self.layout == "tfrecord":
            if 1 - offset < 0 or 1000 - offset >= num_classes:
                raise DataError(f"slim TFRecords hold ImageNet labels 1..1000; the model has {num_classes} "
                                f"classes (labels offset {offset})")
            return None, offset
        if self.unknown_wnid and num_classes in (1000, 1001):
            raise DataError(self.unknown_wnid)
        if self.imagenet_labels is not None and num_classes in (1000, 1001):
            labels = self.imagenet_labels
        elif num_classes == len(self.classes):
            labels = self.labels
        else:
            raise DataError(
                f"the model has {num_classes} classes but {self.root} has {len(self.classes)} "
                f"({', '.join(self.classes[:3])}{', ...' if len(self.classes) > 3 else ''})")
        labels = labels - offset
        if labels.min() < 0 or labels.max() >= num_classes:
            raise DataError(f"labels offset {offset} maps the labels outside the model's 0..{num_classes - 1}")
        return labels, offset


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _wnid_label(wnid: str, where: str) -> int:
    try:
        return _wnid_index()[wnid]
    except KeyError:
        raise DataError(f"unknown ImageNet wnid {wnid!r} ({where})") from None


def describe_failure(exc: BaseException) -> str:
    """A short reason an image could not be read (first line of the message, with its type):
    the "error" of a skipped file, the same in every command."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def open_dataset(root: str | os.PathLike, ground_truth: str | None = None) -> Dataset:
    """Detect the layout of `root` and list its samples with their dataset labels."""
    root = os.fspath(root)
    if not os.path.isdir(root):  # --images is every command's name for the folder
        if os.path.exists(root):
            raise DataError(f"--images {root}: not a directory (give the folder that holds the images, "
                            "or their TFRecord shards)")
        raise DataError(f"--images {root}: no such directory")
    records = sorted(glob.glob(os.path.join(root, TFRECORD_GLOB)))
    if records:
        # a FIFO or a device named like a shard would block or never end: named, not read
        skipped = [{"file": r, "error": _entry_kind(r)} for r in records if _entry_kind(r) != "file"]
        records = [r for r in records if _entry_kind(r) == "file"]
        if not records:
            raise DataError(f"{root}: none of its {len(skipped)} TFRecord shard names is a regular file")
        return Dataset("tfrecord", root, (), records=records, skipped=skipped)
    subdirs, images, skipped = [], [], []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        kind = _entry_kind(entry.path)
        if kind == "dir":
            subdirs.append(entry.name)
        elif _is_image(entry.name):  # a device, FIFO or broken link named like an image: counted, skipped when read
            images.append(entry.name)
        elif kind != "file":
            skipped.append({"file": entry.path, "error": kind})
    if subdirs and not images:
        ds = _image_folder(root, subdirs)
    elif not images:
        raise DataError(f"{root}: no images (nor class folders, nor {TFRECORD_GLOB} TFRecords) found")
    elif ground_truth or any(n.startswith("ILSVRC2012_val_") for n in images):
        ds = _imagenet_val(root, images, ground_truth)
    else:
        ds = _flat(root, images)
    ds.skipped[:0] = skipped
    return ds


def _entry_kind(path: str) -> str:
    """"dir", "file" (regular), or why it is neither (a symlink loop, a broken link, a device...)."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    if stat.S_ISDIR(mode):
        return "dir"
    return "file" if stat.S_ISREG(mode) else "not a regular file"


def _walk(top: str, skipped: list[dict]):
    """os.walk(top, followlinks=True) in sorted order that follows each real folder once: a
    symlink back to a folder already walked (a loop) is named in `skipped`, not followed, as
    are entries that cannot be resolved (a symlink loop, a broken link)."""
    seen = set()
    walked = []
    for dirpath, dirnames, names in os.walk(top, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError as exc:
            skipped.append({"file": dirpath, "error": f"{type(exc).__name__}: {exc.strerror or exc}"})
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            skipped.append({"file": dirpath, "error": "symlink loop (a folder already read): not followed"})
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames.sort()
        for fname in names:
            if not _is_image(fname):
                kind = _entry_kind(os.path.join(dirpath, fname))
                if kind not in ("file", "not a regular file"):
                    skipped.append({"file": os.path.join(dirpath, fname), "error": kind})
        walked.append((dirpath, names))
    return sorted(walked)


def _image_folder(root: str, classes: list[str]) -> Dataset:
    files, labels, skipped = [], [], []
    for index, name in enumerate(classes):
        for dirpath, names in _walk(os.path.join(root, name), skipped):
            for fname in sorted(names):
                if _is_image(fname):
                    files.append(os.path.join(dirpath, fname))
                    labels.append(index)
    if not files:
        raise DataError(f"{root}: {len(classes)} class folders but no images in them")
    labels = np.asarray(labels, np.int64)
    ds = Dataset("imagefolder", root, tuple(classes), files, labels, skipped=skipped)
    if all(WNID_RE.match(c) for c in classes):  # wnid folders: a subset of ImageNet still scores right
        unknown = [c for c in classes if c not in _wnid_index()]
        if unknown:  # fine for a model trained on these folders; an error for a 1000-way ImageNet model
            ds.unknown_wnid = f"unknown ImageNet wnid {unknown[0]!r} (folder {os.path.join(root, unknown[0])})"
        else:
            ds.imagenet_labels = np.asarray([_wnid_index()[c] for c in classes], np.int64)[labels]
    return ds


def _flat(root: str, images: list[str]) -> Dataset:
    labels = []
    for name in images:
        wnid = name.split("_", 1)[0]
        if not WNID_RE.match(wnid):
            raise DataError(f"{os.path.join(root, name)}: a flat folder's files must be named <wnid>_*.JPEG")
        labels.append(_wnid_label(wnid, name))
    files = [os.path.join(root, n) for n in images]
    labels = np.asarray(labels, np.int64)
    return Dataset("flat", root, imagenet_wnids(), files, labels, labels)


def _find_ground_truth(root: str) -> str | None:
    for folder in (root, os.path.dirname(os.path.abspath(root))):
        for name in (GROUND_TRUTH_CSV, GROUND_TRUTH_TXT):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                return path
    return None


def _imagenet_val(root: str, images: list[str], ground_truth: str | None) -> Dataset:
    gt = ground_truth or _find_ground_truth(root)
    if gt is None:
        raise DataError(f"{root}: ImageNet validation images but no {GROUND_TRUTH_CSV} or {GROUND_TRUTH_TXT} "
                        "in it or its parent (or pass --ground-truth)")
    wnid_of = read_ground_truth(gt)
    files, labels = [], []
    for name in images:
        image_id = os.path.splitext(name)[0]
        if image_id not in wnid_of:
            raise DataError(f"{name}: not in the ground truth {gt}")
        files.append(os.path.join(root, name))
        labels.append(_wnid_label(wnid_of[image_id], gt))
    labels = np.asarray(labels, np.int64)
    return Dataset("imagenet-val", root, imagenet_wnids(), files, labels, labels)


MAX_GROUND_TRUTH_BYTES = 64 << 20  # the ImageNet validation ground truth is 2 MB


def read_ground_truth(path: str) -> dict[str, str]:
    """{image id (ILSVRC2012_val_00000001): wnid} from either ground-truth format."""
    from amc_tf.core.fileutil import read_regular

    text = read_regular(path, MAX_GROUND_TRUTH_BYTES).decode("utf-8", errors="replace")  # no FIFO, no device
    if path.endswith(".csv"):
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        if not rows or "ImageId" not in rows[0] or "PredictionString" not in rows[0]:
            raise DataError(f"{path}: expected the columns ImageId,PredictionString")
        return {r["ImageId"]: r["PredictionString"].split()[0] for r in rows}
    try:
        ids = [int(line) for line in text.split()]
    except ValueError:
        raise DataError(f"{path}: expected one ILSVRC2012_ID (an integer) per line") from None
    meta = os.path.join(os.path.dirname(path), "meta.mat")
    if not os.path.isfile(meta):
        raise DataError(f"{path} holds ILSVRC2012_IDs, which need the devkit's meta.mat beside it to map to wnids")
    id_to_wnid = read_devkit_meta(meta)
    return {f"ILSVRC2012_val_{i + 1:08d}": id_to_wnid[label] for i, label in enumerate(ids)}


def read_devkit_meta(path: str) -> dict[int, str]:
    """{ILSVRC2012_ID: wnid} for the 1000 leaf synsets of the devkit's meta.mat (needs scipy)."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError("reading the devkit's meta.mat needs scipy: pip install scipy") from None
    synsets = loadmat(path, squeeze_me=True)["synsets"]
    out = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets if int(s["num_children"]) == 0}
    if len(out) != 1000 or set(out.values()) != set(imagenet_wnids()):
        raise DataError(f"{path}: expected the 1000 ImageNet-1k leaf synsets, found {len(out)}")
    return out

"""The study's plan: its options, the measured images (calibration images left out), and
each task's content key.

Keys are sha256 over what decides a result: the checkpoint's sha256, the precision, the
conversion options (and the calibration images' content for int8), the amc-tf version, and
for an evaluation chunk its image list (path relative to --images, size, mtime, label).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field

from amc_tf.core.version import __version__
from amc_tf.services.study.discover import StudyInputError

PRECISIONS = ("fp32", "fp16", "dynamic", "int8")
DEFAULT_CHUNK = 250


@dataclass(frozen=True)
class Latency:
    kind: str  # none | local | lut | adb
    lut: str | None = None
    serials: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "Latency":
        text = (text or "none").strip()
        if text in ("none", "local"):
            return cls(text)
        kind, _, rest = text.partition(":")
        if kind == "lut" and rest:
            if not os.path.isfile(rest):
                raise StudyInputError(f"--latency lut:{rest}: no such file")
            return cls("lut", lut=os.path.abspath(rest))
        if kind == "adb" and rest:
            serials = tuple(s.strip() for s in rest.split(",") if s.strip())
            if not serials or len(set(serials)) != len(serials):
                raise StudyInputError(f"--latency adb:{rest}: give distinct serials, comma-separated")
            return cls("adb", serials=serials)
        raise StudyInputError(f"--latency {text!r}: expected none, local, lut:FILE or adb:SERIAL[,SERIAL...]")

    def describe(self) -> str:
        if self.kind == "lut":
            return f"lut:{self.lut}"
        if self.kind == "adb":
            return "adb:" + ",".join(self.serials)
        return self.kind


@dataclass(frozen=True)
class StudyOptions:
    precisions: tuple[str, ...] = ("fp32",)
    images: str | None = None
    limit: int | None = None
    chunk_size: int = DEFAULT_CHUNK
    latency: Latency = Latency("none")
    calibration: str | None = None  # int8: default the --images folder
    calibration_size: int = 100
    input_size: int | None = None
    benchmark_binary: str | None = None  # adb latency
    protocol: dict = field(default_factory=dict)  # Protocol fields (default: the Pixel-1 protocol)

    @staticmethod
    def parse_precisions(text: str) -> tuple[str, ...]:
        items = [p.strip() for p in (text or "").split(",") if p.strip()]
        bad = [p for p in items if p not in PRECISIONS]
        if not items or bad:
            raise StudyInputError(f"--precision {text!r}: a comma-separated list of {', '.join(PRECISIONS)}")
        return tuple(dict.fromkeys(items))


def digest(*parts) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(parts, sort_keys=True, default=str).encode())
    return h.hexdigest()


@dataclass
class Images:
    """The measured images: a Dataset (files in dataset order, calibration images left out)."""

    dataset: object  # amc_tf.core.data.Dataset
    entries: list  # per file: [relative path, size, mtime_ns] (the cache key's image list)
    excluded: int = 0  # calibration images left out
    note: str | None = None

    def chunks(self, size: int) -> list[tuple[int, int]]:
        n = len(self.dataset.files) if self.dataset.files else 1  # TFRecords: one chunk
        return [(a, min(a + size, n)) for a in range(0, n, size)]

    def subset(self, start: int, stop: int):
        import numpy as np

        ds = self.dataset
        if not ds.files:
            return ds
        pick = np.arange(start, stop)
        return dataclasses.replace(ds, files=ds.files[start:stop], skipped=[],
                                   labels=None if ds.labels is None else ds.labels[pick],
                                   imagenet_labels=None if ds.imagenet_labels is None else ds.imagenet_labels[pick])

    def key(self, start: int, stop: int) -> str:
        ds = self.dataset
        labels = None
        if ds.files:
            lab = ds.imagenet_labels if ds.imagenet_labels is not None else ds.labels
            labels = None if lab is None else [int(v) for v in lab[start:stop]]
        return digest(ds.layout, self.entries[start:stop], labels, ds.classes)


def _entry(path: str, root: str) -> list:
    st = os.stat(path)
    return [os.path.relpath(path, root), st.st_size, st.st_mtime_ns]


def select_images(options: StudyOptions) -> tuple[Images | None, dict | None]:
    """(the measured images, the int8 calibration {"dir", "size", "key"}); calibration images
    (by content) are never measured."""
    from amc_tf.core.data import open_dataset

    calibration = None
    if "int8" in options.precisions:
        calibration = _calibration(options)
    if options.images is None:
        return None, calibration
    ds = open_dataset(options.images)
    excluded = 0
    if ds.files:
        keep = list(range(len(ds.files)))
        if calibration is not None and calibration["hashes"]:
            from amc_tf.core.fileutil import sha256_file

            held = set(calibration["hashes"])
            keep = [i for i in keep if sha256_file(ds.files[i]) not in held]
            excluded = len(ds.files) - len(keep)
        if options.limit is not None:
            keep = keep[: options.limit]
        if not keep:
            raise StudyInputError(f"--images {options.images}: no images left to measure"
                                  + (f" ({excluded} are calibration images)" if excluded else ""))
        ds = _pick(ds, keep)
        entries = [_entry(f, ds.root) for f in ds.files]
    else:  # TFRecords: evaluated as one chunk, keyed by the shards' names, sizes and mtimes
        if options.limit is not None:
            raise StudyInputError("--limit is for image folders; TFRecords are measured whole")
        entries = [_entry(f, ds.root) for f in ds.records]
    note = f"{excluded} calibration image(s) of --images left out" if excluded else None
    return Images(ds, entries, excluded, note), calibration


def _pick(ds, keep: list[int]):
    import numpy as np

    idx = np.asarray(keep, np.int64)
    return dataclasses.replace(ds, files=[ds.files[i] for i in keep],
                               labels=None if ds.labels is None else ds.labels[idx],
                               imagenet_labels=None if ds.imagenet_labels is None else ds.imagenet_labels[idx])


def _calibration(options: StudyOptions) -> dict:
    from amc_tf.core import calibration as C

    root = options.calibration or options.images
    if root is None:
        raise StudyInputError("--precision int8 needs calibration images: --images DIR or --calibration-images DIR")
    if root == C.SYNTHETIC:
        return {"dir": C.SYNTHETIC, "size": options.calibration_size, "hashes": [], "key": "synthetic"}
    split = C.split(root, options.calibration_size)
    hashes = sorted(split.hashes[i] for i in split.calibration)
    return {"dir": os.path.abspath(root), "size": options.calibration_size, "hashes": hashes,
            "key": digest(hashes)}


def convert_options(options: StudyOptions, precision: str, profile: str | None, calibration: dict | None) -> dict:
    """ConvertOptions fields for one model x precision (the conversion as `amc-tf convert` does it)."""
    opts = {"profile": profile, "input_size": options.input_size}
    if precision != "fp32":
        opts["quantize"] = precision
    if precision == "int8":
        opts["calibration"] = calibration["dir"]
        opts["calibration_size"] = calibration["size"]
    return opts


def convert_key(sha256: str, precision: str, conv_options: dict, calibration: dict | None) -> str:
    cal = calibration["key"] if precision == "int8" and calibration else None
    opts = {k: v for k, v in conv_options.items() if k != "calibration"}
    return digest("convert", __version__, sha256, precision, opts, cal)

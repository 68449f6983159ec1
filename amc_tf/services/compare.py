"""Side by side: conversion OUTDIRs' model.tflite files by size, latency (the benchmark
protocol through the local target of `benchmarks/`) and agreement with fp32 on real images.

Each OUTDIR's model.tflite is compared with *its own* fp32 model: model_fp32.tflite when
it was quantized, else itself. Images are preprocessed by evaluation's pipeline; any image
whose content is in an OUTDIR's calibration set (calibration.txt) is left out, so
calibration and measurement never share an image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from amc_tf.core import calibration
from amc_tf.core.agreement import accuracy, agreement
from amc_tf.core.errors import AmcError
from amc_tf.core.fileutil import sha256_file
from amc_tf.core.outdir import read_outdir
from amc_tf.core.preprocess import Preprocessing, check_input_size

@dataclass
class Candidate:
    name: str
    outdir: Path
    report: dict
    model: Path  # the deployable model.tflite
    fp32: Path  # its fp32 reference (itself when not quantized)
    mode: str  # fp32 | fp16 | dynamic | int8
    calibration_hashes: set[str] = field(default_factory=set)

    @property
    def io(self) -> str:
        return self.report.get("quantization", {}).get("io", "float32")


def open_candidate(path: str | os.PathLike) -> Candidate:
    out = read_outdir(path)
    from amc_tf.benchmarks.runlog import safe_name

    return Candidate(safe_name(out.path.resolve().name), out.path, out.report, out.tflite, out.tflite_fp32, out.quantization_mode,
                     calibration.read_manifest(out.path / calibration.MANIFEST))


def open_candidates(paths) -> list[Candidate]:
    """The OUTDIRs, named by their folder names (made unique with -2, -3... for the logs).
    Every model.tflite (and its fp32 reference) is loaded once here, so a corrupt one is
    refused before any measurement starts."""
    from amc_tf.core.tflite_io import TFLiteModel

    cands = [open_candidate(p) for p in paths]
    for c in cands:
        for path in dict.fromkeys((c.model, c.fp32)):
            TFLiteModel(path).close()  # in a child process; ModelFileError (exit 2) naming the file
    seen: dict[str, int] = {}
    for c in cands:
        seen[c.name] = seen.get(c.name, 0) + 1
        if seen[c.name] > 1:
            c.name = f"{c.name}-{seen[c.name]}"
    return cands


@dataclass
class Images:
    dataset: object  # amc_tf.core.data.Dataset (the files measured)
    excluded: int  # images left out because they calibrated one of the models
    by_size: dict = field(default_factory=dict)  # input size -> (images, indices into dataset.files)
    skipped: list = field(default_factory=list)  # unreadable files ({"file", "error"}), each named once

    def get(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        if size not in self.by_size:
            failed: list[dict] = []
            self.by_size[size] = calibration.load(self.dataset, Preprocessing.for_input_size(size), failed)
            named = {item["file"] for item in self.skipped}
            self.skipped += [item for item in failed if item["file"] not in named]
        return self.by_size[size]

    @property
    def measured(self) -> int:
        """Images every model was measured on (the readable ones)."""
        return min(len(kept) for _, kept in self.by_size.values()) if self.by_size else len(self.dataset.files)


def open_images(root: str | os.PathLike, cands: list[Candidate], limit: int | None = None) -> Images:
    from dataclasses import replace

    dataset = calibration.open_images(root)  # its messages name --images, compare's option too
    taken = set().union(*(c.calibration_hashes for c in cands))
    keep = [i for i, f in enumerate(dataset.files)
            if not taken or sha256_file(f, calibration.MAX_IMAGE_BYTES, what=f"--images image {f}") not in taken]
    excluded = len(dataset.files) - len(keep)
    if limit is not None:
        keep = keep[:limit]
    if not keep:
        raise AmcError(f"{root}: no images left to measure ({excluded} calibrated one of the models)")
    pick = np.asarray(keep, np.int64)
    dataset = replace(dataset, files=[dataset.files[i] for i in keep],
                      labels=None if dataset.labels is None else dataset.labels[pick],
                      imagenet_labels=None if dataset.imagenet_labels is None else dataset.imagenet_labels[pick])
    return Images(dataset, excluded, skipped=list(dataset.skipped))


def _labels(dataset, num_classes: int, kept: np.ndarray) -> np.ndarray | None:
    from amc_tf.core.data import DataError

    if not dataset.classes:
        return None
    try:
        labels, _ = dataset.model_labels(num_classes)
    except DataError:
        return None
    return labels[kept]


def measure_agreement(cands: list[Candidate], images: Images, progress: Callable[[str], None]) -> list[dict]:
    from amc_tf.core.tflite_io import TFLiteModel

    fp32_logits: dict[str, np.ndarray] = {}
    rows = []
    for c in cands:
        with TFLiteModel(c.model) as model:
            check_input_size(model.input_size, f"{c.model}: the model's input")
            x, kept = images.get(model.input_size)
            progress(f"{c.name}: {c.mode} and fp32 on {len(x)} images")
            key = sha256_file(c.fp32)
            if key not in fp32_logits:
                with TFLiteModel(c.fp32) as fp32:
                    fp32_logits[key] = fp32.predict(x)
            ref = fp32_logits[key]
            out = ref if c.fp32 == c.model else model.predict(x)
        row = {"vs_fp32": agreement(ref, out)}
        labels = _labels(images.dataset, model.num_classes, kept)
        if labels is not None:
            row["accuracy"] = accuracy(out, labels)
            row["accuracy_fp32"] = accuracy(ref, labels)
        rows.append(row)
    return rows


def measure_latency(cands: list[Candidate], protocol, logdir: Path, progress: Callable[[str], None]) -> list[dict]:
    """Each model.tflite through `benchmarks.local.bench_local` (logs in LOGDIR); the
    headline is the mean of the runs' averages, as `amc-tf bench` reports it."""
    from amc_tf.benchmarks.local import bench_local

    rows = []
    for c in cands:
        rec = bench_local(c.model, c.name, protocol, logdir, progress=progress)
        avgs = [r.inference_avg_us for r in rec.runs if r.status == "ok" and r.inference_avg_us is not None]
        if len(avgs) != len(rec.runs):
            bad = next(r for r in rec.runs if r.status != "ok")
            raise AmcError(f"{c.name}: benchmark run {bad.k} failed ({bad.error}); logs in {logdir}")
        rows.append({"latency_ms": float(np.mean(avgs)) / 1000.0,
                     "latency_runs_ms": [a / 1000.0 for a in avgs]})
    return rows


def size_row(c: Candidate) -> dict:
    size = c.model.stat().st_size
    fp32 = c.fp32.stat().st_size
    return {"name": c.name, "outdir": str(c.outdir), "mode": c.mode, "io": c.io, "bytes": size,
            "fp32_bytes": fp32, "size_ratio": size / fp32,
            "warnings": list(c.report.get("quantization", {}).get("warnings", []))}

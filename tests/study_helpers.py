"""Shared by the study tests: a folder of checkpoints (the trained digits model, a random
10-class MobileNetV1 and one file that is not a checkpoint) and the digits images."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DIGITS_CKPT = ROOT / "tests" / "data" / "digits" / "mobilenet_v1_digits.pth.tar"
AMC_TF = [sys.executable, "-m", "amc_tf"]


def make_inputs(root: Path) -> tuple[Path, Path]:
    """(models folder, images folder) under root."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import digits_recipe

    from amc_tf.core import torch_models
    from amc_tf.core.netspec import V1, NetSpec, make_blocks

    models = root / "models"
    models.mkdir(parents=True)
    shutil.copy(DIGITS_CKPT, models / "digits.pth.tar")
    widths = [(None, w) for w in (8, 12, 12, 16, 16, 20, 20, 20, 20, 20, 20, 24, 24)]
    spec = NetSpec(V1, 8, make_blocks(V1, widths, 8), num_classes=10, activation="relu", input_size=64)
    torch_models.save(torch_models.randomize(torch_models.build(spec, "amc"), 3), models / "tiny.pth.tar")
    (models / "notes.pth").write_text("these are notes, not a checkpoint\n")
    _, held = digits_recipe.split()
    images = digits_recipe.write_image_folder(root / "images", held[:80])
    return models, Path(images)


def env() -> dict:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))


def study(*args, timeout=900, **kw):
    return subprocess.run([*AMC_TF, "study", *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=kw.pop("env", None) or env(), **kw)


def records(studydir: Path) -> dict:
    data = json.loads((Path(studydir) / "study.json").read_text())
    return {(r["name"], r["precision"]): r for r in data["records"]}


FIGURES = ("macs", "params", "images", "evaluated", "correct_top1", "correct_top5", "top1", "top5", "agreement",
           "size_bytes")


def figures(recs: dict) -> dict:
    return {k: {f: r[f] for f in FIGURES} for k, r in recs.items() if r["status"] == "ok"}


def top1_classes(studydir: Path, name: str, precision: str) -> np.ndarray:
    return np.load(Path(studydir) / "models" / name / precision / "top1_classes.npy")

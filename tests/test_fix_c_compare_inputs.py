"""Fix c (audit 19): `compare` validates every input before any work: a corrupt second OUTDIR's
model is refused before the first model runs, and an empty --images folder is named as --images."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

AMC_TF = [sys.executable, "-m", "amc_tf"]
DIGITS = Path(__file__).parent / "data" / "digits" / "mobilenet_v1_digits.pth.tar"


def run(*args, cwd=None, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([*AMC_TF, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


def one_error_line(proc) -> str:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return errors[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("compare")
    proc = run("convert", DIGITS, "-o", "digits", "--input-size", "64", "--no-verify", "-q", cwd=root)
    assert proc.returncode == 0, proc.stderr
    (root / "odd").mkdir()
    shutil.copytree(root / "digits", root / "odd" / "garb")
    (root / "odd" / "garb" / "model.tflite").write_bytes(np.random.default_rng(0).bytes(3000))
    for c in range(10):
        (root / "ev" / "data" / str(c)).mkdir(parents=True)
        Image.fromarray(np.full((80, 80, 3), c * 20, np.uint8)).save(root / "ev" / "data" / str(c) / "a.png")
    (root / "ev" / "empty").mkdir()
    return root


def test_corrupt_second_model_refused_before_the_first_runs(work):
    proc = run("compare", "digits", "odd/garb", "--images", "ev/data", "--no-latency", cwd=work)
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert line.startswith("error: odd/garb/model.tflite: not a loadable .tflite")
    assert "fp32 on" not in proc.stderr  # no model ran
    assert proc.stdout == ""


def test_empty_images_named_as_images(work):
    proc = run("compare", "digits", "digits", "--images", "ev/empty", "--no-latency", cwd=work)
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert line == "error: --images ev/empty: no images found"
    assert "--calibration" not in proc.stderr


def test_good_inputs_still_compare(work):
    proc = run("compare", "digits", "--images", "ev/data", "--no-latency", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "10 images from ev/data" in proc.stdout

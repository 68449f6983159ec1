"""`compare` validates every input before any work: a corrupt second OUTDIR's
model is refused before the first model runs, and an empty --images folder is named as --images."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from cli_run import DIGITS, one_error_line, run


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

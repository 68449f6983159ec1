"""`parity --images` with unreadable files: one `error:` line (exit 2) naming them when
none can be read, the true image count, and a skipped file named (not fatal) otherwise."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from cli_run import DIGITS, run


@pytest.fixture(scope="module")
def digits_out(tmp_path_factory):
    root = tmp_path_factory.mktemp("conv")
    proc = run("convert", DIGITS, "-o", root / "digits", "--input-size", "64", "--no-verify", "-q")
    assert proc.returncode == 0, proc.stderr
    return root / "digits"


def test_parity_only_junk_images_is_one_error_line(digits_out, tmp_path):
    images = tmp_path / "junk"
    images.mkdir()
    (images / "n01440764_a.JPEG").write_bytes(b"not a jpeg at all")
    (images / "n01440764_b.JPEG").write_bytes(b"\xff\xd8\xff garbage")
    before = set(os.listdir(digits_out))
    proc = run("parity", digits_out, "--images", images)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "need at least one array" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "none of the 2 images could be read" in errors[0]
    assert str(images / "n01440764_a.JPEG") in errors[0] and str(images / "n01440764_b.JPEG") in errors[0]
    assert "preparing 2 images" in proc.stderr and "preparing 100" not in proc.stderr
    assert set(os.listdir(digits_out)) == before


def test_parity_skips_and_names_a_junk_image(digits_out, tmp_path):
    from PIL import Image

    images = tmp_path / "mixed"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (80, 90, 3), dtype=np.uint8)).save(images / "n01440764_good.png")
    (images / "n01440764_junk.JPEG").write_bytes(b"not a jpeg")
    proc = run("parity", digits_out, "--images", images, "--json")
    assert proc.returncode in (0, 1), proc.stderr  # the gate may pass or fail; the run completes
    result = json.loads(proc.stdout)
    assert result["n"] == 1
    assert f"skipped (unreadable): {images / 'n01440764_junk.JPEG'}" in proc.stderr
    assert any("junk.JPEG" in note for note in result["notes"])
    assert "preparing 2 images" in proc.stderr

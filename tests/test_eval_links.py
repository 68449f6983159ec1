"""Symlink loops and links to devices in --data are skipped and named (never
abort the eval, never silently left out), and --save-logits in a folder where no file can be
created (/sys) is refused before any work."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from cli_run import DIGITS, run


@pytest.fixture
def linked_data(tmp_path):
    """10 class folders of one image each, plus: a file symlink loop and a link to /dev/zero
    named like images, a folder link back to its parent (a loop), and a top-level link loop."""
    from PIL import Image

    root = tmp_path / "data"
    for c in range(10):
        (root / str(c)).mkdir(parents=True)
        Image.fromarray(np.full((80, 80, 3), c * 20, np.uint8)).save(root / str(c) / "a.png")
    os.symlink("loop.png", root / "0" / "loop.png")
    os.symlink("/dev/zero", root / "0" / "zero.png")
    os.symlink(".", root / "1" / "again")
    os.symlink("toploop", root / "toploop")
    return root


@pytest.mark.parametrize("mode", ["pil", "tf"])
def test_links_skipped_and_named(linked_data, mode):
    proc = run("eval", DIGITS, "--input-size", 64, "--data", linked_data, "--preprocess", mode, "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    # the two image-named links are counted and skipped; the folder loop is not walked again
    assert (result["images"], result["evaluated"], result["skipped"]) == (12, 10, 2)
    reasons = {item["file"]: item["error"] for item in result["skipped_files"]}
    assert "Too many levels of symbolic links" in reasons[str(linked_data / "0" / "loop.png")]
    assert reasons[str(linked_data / "0" / "zero.png")] == "ValueError: not a regular file (a device, FIFO or socket)"
    assert "symlink loop" in reasons[str(linked_data / "1" / "again")]
    assert "Too many levels of symbolic links" in reasons[str(linked_data / "toploop")]
    for name in reasons:
        assert f"skipped (unreadable): {name}: " in proc.stderr


def test_flat_folder_lists_device_and_loop_links(tmp_path):
    from amc_tf.core.data import open_dataset

    from PIL import Image

    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "n01440764_1.JPEG")
    os.symlink("n01440764_2.JPEG", tmp_path / "n01440764_2.JPEG")
    os.symlink("/dev/zero", tmp_path / "n01440764_3.JPEG")
    ds = open_dataset(tmp_path)
    assert ds.layout == "flat"
    assert [os.path.basename(f) for f in ds.files] == ["n01440764_1.JPEG", "n01440764_2.JPEG", "n01440764_3.JPEG"]


def test_save_logits_where_no_file_can_be_created_refused_up_front(linked_data):
    t0 = time.monotonic()
    proc = run("eval", DIGITS, "--input-size", 64, "--data", linked_data, "--save-logits", "/sys/x.npy")
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert errors[0].startswith("error: --save-logits /sys/x.npy: ")  # as root: "cannot create a file in /sys"
    assert "top-1" not in proc.stdout  # no evaluation ran
    assert not os.path.exists("/sys/x.npy")
    assert time.monotonic() - t0 < 60

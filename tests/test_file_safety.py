"""Special files (a FIFO, a link to /dev/zero, a socket, a directory) named like an input are
refused before a byte is read or hashed: every reader goes through amc_tf.core.fileutil, so
nothing blocks on a FIFO or reads a device forever. Run in real processes with a time limit."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from cli_run import DIGITS, one_error_line, run


def _specials(folder, suffix: str) -> list:
    """A FIFO (no writer: opening it for reading would block), a link to /dev/zero (endless) and a
    socket, each named like an input file."""
    folder.mkdir(parents=True, exist_ok=True)
    fifo, zero, sock = folder / f"fifo{suffix}", folder / f"zero{suffix}", folder / f"sock{suffix}"
    os.mkfifo(fifo)
    zero.symlink_to("/dev/zero")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock))
    s.close()
    return [fifo, zero, sock]


READERS = {  # every kind of untrusted file and the function that reads it
    "sha256_file": "from amc_tf.core.fileutil import sha256_file as f",
    "read_regular": "from amc_tf.core.fileutil import read_regular; f = lambda p: read_regular(p, 1 << 20)",
    "log": "from amc_tf.benchmarks.logparse import parse_file as f",
    "lut": "from amc_tf.benchmarks.latency_lut import load_lut as f",
    "json": "from amc_tf.core.jsonfile import load_json; f = lambda p: load_json(p, 1 << 20)",
    "image": "from amc_tf.core.preprocess import pil_open as f",
    "image-header": "from amc_tf.core.preprocess import check_pixels as f",
    "checkpoint": "from amc_tf.core.checkpoint import load_pickled as f",
    "calibration-manifest": "from amc_tf.core.calibration import read_manifest as f",
}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_refuses_special_files_at_once(tmp_path, reader):
    paths = _specials(tmp_path / "in", ".json") + [tmp_path]
    code = (f"import sys, time\n{READERS[reader]}\n"
            "for p in sys.argv[1:]:\n"
            "    t = time.perf_counter()\n"
            "    try:\n"
            "        f(p); print('READ', p)\n"
            "    except Exception as exc:\n"
            "        print('REFUSED', type(exc).__name__, round(time.perf_counter() - t, 3))\n")
    proc = subprocess.run([sys.executable, "-c", code, *map(str, paths)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.split("\n")[:-1]
    assert len(rows) == len(paths) and all(r.startswith("REFUSED") for r in rows), proc.stdout
    assert all(float(r.split()[-1]) < 1.0 for r in rows)


def test_a_fifo_and_a_dev_zero_link_named_png_in_calibration(tmp_path):
    _specials(tmp_path / "cal", ".png")
    t0 = time.perf_counter()
    proc = run("convert", DIGITS, "-o", tmp_path / "out", "--quantize", "int8", "--calibration", tmp_path / "cal",
               "--calibration-size", "1", timeout=120)
    assert time.perf_counter() - t0 < 60
    assert proc.returncode == 2
    assert one_error_line(proc) == (f"error: --images {tmp_path / 'cal'}: no images found (none of its 3 image "
                                    "names is a regular file)")
    assert not (tmp_path / "out").exists()


def test_calibration_split_skips_special_files_without_hashing_them(tmp_path):
    from PIL import Image

    _specials(tmp_path / "cal", ".png")
    for i in range(3):
        Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(tmp_path / "cal" / f"img{i}.png")
    code = ("import sys; from amc_tf.core import calibration\n"
            "s = calibration.split(sys.argv[1], 2)\n"
            "print(len(s.dataset.files), len(s.calibration), len(s.held_out), len(s.dataset.skipped))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "cal")], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["3", "2", "1", "3"]


@pytest.fixture(scope="module")
def outdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    proc = run("convert", DIGITS, "-o", "digits", "--input-size", "64", "--no-verify", "-q", cwd=root)
    assert proc.returncode == 0, proc.stderr
    return root


def test_compare_images_with_a_dev_zero_link_and_a_fifo(outdir):
    from PIL import Image

    images = outdir / "imgs"
    if not images.exists():
        _specials(images, ".png")
        for i in range(2):
            Image.fromarray(np.full((70, 70, 3), 90 * i, np.uint8)).save(images / f"img{i}.png")
    # a calibration set in the OUTDIR: compare then hashes every image to leave those out
    calibrated = outdir / "calibrated"
    if not calibrated.exists():
        shutil.copytree(outdir / "digits", calibrated)
        (calibrated / "calibration.txt").write_text("0" * 64 + "  elsewhere.png\n")
    t0 = time.perf_counter()
    proc = run("compare", "calibrated", "--images", "imgs", "--no-latency", "--json", cwd=outdir, timeout=300)
    assert time.perf_counter() - t0 < 240
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["images"]["measured"] == 2


def test_compare_images_of_special_files_only_is_one_line(outdir):
    _specials(outdir / "only-special", ".png")
    t0 = time.perf_counter()
    proc = run("compare", "digits", "--images", "only-special", "--no-latency", cwd=outdir, timeout=300)
    assert time.perf_counter() - t0 < 240
    assert proc.returncode == 2
    assert one_error_line(proc) == "error: --images only-special: no images found (none of its 3 image names is a regular file)"


@pytest.mark.parametrize("what", ["report.json", "calibration.txt"])
def test_an_outdir_file_that_is_a_fifo_is_refused(outdir, what):
    bad = outdir / f"fifo-{what}"
    if not bad.exists():
        shutil.copytree(outdir / "digits", bad)
        (bad / what).unlink(missing_ok=True)
        os.mkfifo(bad / what)
    (outdir / "some").mkdir(exist_ok=True)
    proc = run("compare", bad.name, "--images", "some", "--no-latency", cwd=outdir, timeout=120)
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert f"{bad.name}/{what}: a FIFO, not a regular file" in line


def test_logs_and_luts_that_are_fifos_are_refused(tmp_path):
    fifo, zero, _ = _specials(tmp_path / "x", ".txt")
    for args in (("logs", "parse", fifo), ("logs", "parse", zero),
                 ("latency", "predict", "--profile", "0.5flops", "--lut", fifo, "--ignore-fingerprint")):
        t0 = time.perf_counter()
        proc = run(*args, timeout=120)
        assert time.perf_counter() - t0 < 60
        assert proc.returncode == 2, (args, proc.stderr)
        assert "not a regular file" in one_error_line(proc) or "not found" in one_error_line(proc)


@pytest.mark.parametrize("mode", ["pil", "tf"])
def test_eval_skips_a_fifo_and_a_dev_zero_link_named_png(outdir, mode):
    from PIL import Image

    data = outdir / "evdata"
    if not data.exists():
        for c in range(10):
            (data / str(c)).mkdir(parents=True)
            Image.fromarray(np.full((70, 70, 3), 20 * c, np.uint8)).save(data / str(c) / "a.png")
        os.mkfifo(data / "0" / "fifo\x1b[31m.png")
        (data / "1" / "zero.png").symlink_to("/dev/zero")
    t0 = time.perf_counter()
    proc = run("eval", "digits", "--data", "evdata", "--preprocess", mode, "-q", "--json", cwd=outdir, timeout=300)
    assert time.perf_counter() - t0 < 240
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["evaluated"] == 10 and result["skipped"] == 2
    skips = [line for line in proc.stderr.splitlines() if line.startswith("amc-tf: skipped")]
    assert len(skips) == 2 and "fifo\\x1b[31m.png" in skips[0] and "\x1b" not in proc.stderr

"""`latency predict --plot` refuses an empty name, a name without .png,
a non-regular target even with --force, names the user's path (not a temp file) when it
cannot write, and writes the PNG with the umask's permissions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_latency_lut import synthetic_lut

AMC_TF = Path(sys.executable).with_name("amc-tf")


@pytest.fixture
def lut(tmp_path):
    path = tmp_path / "lut.json"
    synthetic_lut().save(path)
    return path


def _predict(lut, *extra, umask=None):
    pre = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run([str(AMC_TF), "latency", "predict", "--profile", "0.5flops", "--lut", str(lut),
                           "--ignore-fingerprint", *extra], capture_output=True, text=True, timeout=300,
                          preexec_fn=pre)


def _one_error(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    assert proc.stdout == ""


def test_empty_plot_name_is_refused(lut):
    _one_error(_predict(lut, "--plot", ""), "--plot")


def test_plot_needs_a_png_suffix_even_with_force(lut, tmp_path):
    report = tmp_path / "digits" / "report.json"
    report.parent.mkdir()
    report.write_text('{"keep": true}')
    _one_error(_predict(lut, "--plot", report, "--force"), ".png")
    assert report.read_text() == '{"keep": true}'


def test_non_regular_target_is_refused_even_with_force(lut, tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    _one_error(_predict(lut, "--plot", fifo, "--force"), str(fifo), "regular file")


def test_unwritable_place_names_the_users_path(lut):
    proc = _predict(lut, "--plot", "/proc/x.png")
    _one_error(proc, "/proc/x.png")
    assert ".x.png." not in proc.stderr  # no temp file name


def test_png_follows_the_umask(lut, tmp_path):
    png = tmp_path / "layers.png"
    proc = _predict(lut, "--plot", png, umask=0o022)
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (png.stat().st_mode & 0o777) == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

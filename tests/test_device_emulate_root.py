"""`device emulate --root` refuses /, an empty value, a system directory
and a folder holding other things (one line, exit 2, nothing created); it accepts a new or
empty folder and an earlier emulator root (marker file)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

AMC_TF = [sys.executable, "-c", "from amc_tf.cli import main; main()"]


def emulate(root, cwd, seconds=1):
    return subprocess.run([*AMC_TF, "device", "emulate", "--port", "0", "--root", str(root), "-q",
                           "--max-seconds", str(seconds)], cwd=cwd, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("root", ["/", "", "  ", "/etc", "/usr", "/var", "/lib", "/root", "/proc", "/usr/../"])
def test_system_or_empty_root_is_refused(tmp_path, root):
    before = {p: os.path.exists(p) for p in ("/data", "/sdcard", "/system/bin/getprop", "/.amc-tf-emulator-root")}
    res = emulate(root, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --root"), res.stderr
    assert list(tmp_path.iterdir()) == []  # '' did not fall back to the working directory
    assert {p: os.path.exists(p) for p in before} == before


def test_a_folder_with_other_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    res = emulate(tmp_path, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines() == [f"error: --root {tmp_path} is neither empty nor an earlier emulator root "
                                       "(it holds notes.txt); give a new or empty directory"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_new_empty_and_earlier_roots_are_accepted(tmp_path):
    new = tmp_path / "new"
    res = emulate(new, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (new / ".amc-tf-emulator-root").is_file() and (new / "system/bin/getprop").is_file()
    (new / "data/local/tmp/kept.bin").write_bytes(b"x")
    res = emulate(new, cwd=tmp_path)  # the same root again, its files kept
    assert res.returncode == 0, res.stderr
    assert (new / "data/local/tmp/kept.bin").read_bytes() == b"x"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert emulate(empty, cwd=tmp_path).returncode == 0
    old = tmp_path / "old"  # a root of an emulator from before the marker
    (old / "data/local/tmp").mkdir(parents=True)
    (old / "sdcard").mkdir()
    assert emulate(old, cwd=tmp_path).returncode == 0

"""Odd `bench --name` values are refused (one line, exit 2, nothing
written); `device emulate` takes -q as well as --quiet."""

from __future__ import annotations

import subprocess
import sys

import pytest

AMC_TF = [sys.executable, "-c", "from amc_tf.cli import main; main()"]
FAKE_TFLITE = b"\x1c\x00\x00\x00TFL3" + bytes(200)


def run(*args, cwd):
    return subprocess.run([*AMC_TF, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("name", ["", ".", "..", "-rf", ".hidden", "a/b", "a b", "x_run1"])
def test_odd_names_are_refused_before_any_work(tmp_path, name):
    model = tmp_path / "m.tflite"
    model.write_bytes(FAKE_TFLITE)
    res = run("bench", model, "--name", name, "--logdir", tmp_path / "logs", "--warmup", 0, "--runs", 1,
              "--repeats", 1, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --name"), res.stderr
    assert not (tmp_path / "logs").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]


def test_a_plain_name_is_still_accepted():
    from amc_tf.benchmarks.runlog import check_name

    for ok in ("mnet", "a_fp32", "m@host", "v1.0+x", "0.5flops", "_x"):
        assert check_name(ok) == ok


def test_device_emulate_accepts_short_q(tmp_path):
    proc = subprocess.Popen([*AMC_TF, "device", "emulate", "--port", "0", "--root", str(tmp_path / "root"), "-q",
                             "--max-seconds", "1"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "listening on 127.0.0.1:" in err and "commands run on this host" not in err

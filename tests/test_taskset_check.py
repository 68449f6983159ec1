"""A --taskset mask that selects none of the CPUs a run could use is refused before any run,
naming the real cause: locally against this process's CPU affinity, over adb against the
device's CPUs (/sys/devices/system/cpu/present)."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from amc_tf.cli import main
from bench_helpers import install_fake
from cli_run import one_error_line, run
from test_bench_android import FakeAdb

FAKE_TFLITE = b"\x1c\x00\x00\x00TFL3" + bytes(200)


def test_cpu_list_and_the_check():
    from amc_tf.benchmarks.protocol import check_taskset, cpu_list
    from amc_tf.core.errors import AmcError

    assert cpu_list("0-3,6\n") == [0, 1, 2, 3, 6] and cpu_list("0") == [0] and cpu_list("") == [] and cpu_list("x") == []
    check_taskset("f0", [0, 1, 2, 3, 4], "here")  # one selected CPU is enough
    check_taskset("f0", [], "here")  # unknown: not refused
    with pytest.raises(AmcError, match=r"--taskset f0 selects CPUs 4-7, but here CPUs 0,1 only; nothing was run"):
        check_taskset("f0", [0, 1], "here")


def test_local_mask_outside_the_affinity_is_refused_before_any_run(tmp_path):
    allowed = sorted(os.sched_getaffinity(0))
    mask = format(1 << (max(allowed) + 1), "x")  # the first CPU this process may not use
    (tmp_path / "m.tflite").write_bytes(FAKE_TFLITE)
    proc = run("bench", "m.tflite", "--taskset", mask, "--logdir", "logs", cwd=tmp_path)
    line = one_error_line(proc)
    assert proc.returncode == 2 and f"--taskset {mask} selects CPU {max(allowed) + 1}" in line
    assert "this machine lets amc-tf use" in line and "nothing was run" in line
    assert not (tmp_path / "logs").exists()


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    root = tmp_path / "adbroot"
    install_fake("adb", root / "bin")
    monkeypatch.setenv("PATH", f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_ROOT", str(root))
    monkeypatch.delenv("ADB", raising=False)
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    fake = FakeAdb(root)
    fake.devices(S1={"state": "device", "cpus": 2})
    return fake


def test_adb_mask_the_device_lacks_is_refused_before_any_run(fake_adb, tmp_path):
    bm = install_fake("benchmark_model", tmp_path / "build")
    model = tmp_path / "m.tflite"
    model.write_bytes(FAKE_TFLITE)
    res = CliRunner().invoke(main, ["bench", str(model), "--target", "adb", "--benchmark-binary", str(bm),
                                    "--taskset", "f0", "--logdir", str(tmp_path / "logs")])
    assert res.exit_code == 2
    assert "--taskset f0 selects CPUs 4-7, but device S1 has CPUs 0,1 only; nothing was run" in res.stderr
    assert [c for c in fake_adb.calls() if c["cmd"] == "push"] == []
    assert not (tmp_path / "logs").exists()

"""The adb target through a stand-in `adb` on PATH (tests/fakes/adb: `devices`, `-s`,
`get-state`, `push`, `shell` over a temporary directory) and a stand-in benchmark_model
that prints the real format and applies the real minimum-count rules."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from amc_tf.cli import main
from bench_helpers import install_fake
from amc_tf.benchmarks.logparse import parse_file


class FakeAdb:
    def __init__(self, root):
        self.root = root

    def devices(self, **specs):
        (self.root / "devices.json").write_text(json.dumps(specs))

    def calls(self):
        p = self.root / "calls.jsonl"
        return [json.loads(l) for l in p.read_text().splitlines()] if p.exists() else []

    def device_root(self, serial):
        return self.root / "devices" / serial

    def bm_calls(self, serial):
        p = self.device_root(serial) / "data/local/tmp/.fake_bm_calls.jsonl"
        return [json.loads(l) for l in p.read_text().splitlines()]


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    root = tmp_path / "adbroot"
    bindir = root / "bin"
    bindir.mkdir(parents=True)
    install_fake("adb", bindir)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_ROOT", str(root))
    monkeypatch.delenv("ADB", raising=False)
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    fa = FakeAdb(root)
    fa.devices(S1={"state": "device", "props": {"ro.product.model": "Pixel", "ro.build.version.release": "10"},
                   "governor": "performance"})
    return fa


@pytest.fixture
def bm(tmp_path):
    """The stand-in benchmark_model (an Android build in real life), to be pushed."""
    return install_fake("benchmark_model", tmp_path / "build")


@pytest.fixture
def model(tmp_path):
    p = tmp_path / "models" / "mnet.tflite"
    p.parent.mkdir()
    p.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(200))
    return p


@pytest.fixture
def bench(bm):
    return lambda model, logdir, *extra: _bench(bm, model, logdir, *extra)


def _bench(bm, model, logdir, *extra):
    args = ["bench", str(model), "--target", "adb", "--benchmark-binary", str(bm),
            "--warmup", "3", "--runs", "5", "--logdir", str(logdir), *map(str, extra)]
    return CliRunner().invoke(main, args)


def test_happy_path_exact_counts_serial_everywhere(fake_adb, bench, model, tmp_path):
    logdir = tmp_path / "logs"
    res = bench(model, logdir, "--json")
    assert res.exit_code == 0, res.output
    # every device call names the device; only `devices` does not
    calls = fake_adb.calls()
    assert calls and all(c["serial"] == "S1" for c in calls if c["cmd"] != "devices")
    pushes = [c["argv"][-1] for c in calls if c["cmd"] == "push"]
    assert pushes == ["/data/local/tmp/benchmark_model", "/data/local/tmp/mnet.tflite"]
    shells = [c["argv"][3] for c in calls if c["cmd"] == "shell"]
    assert "chmod 755 /data/local/tmp/benchmark_model" in shells
    # one benchmark_model invocation per run, with the exact-count flags
    runs_argv = [c["argv"] for c in fake_adb.bm_calls("S1")]
    assert len(runs_argv) == 3
    assert runs_argv[0][0].endswith("/data/local/tmp/mnet.tflite")
    assert runs_argv[0][1:] == ["--num_threads=1", "--warmup_runs=3", "--warmup_min_secs=0", "--num_runs=5",
                                 "--min_secs=0", "--max_secs=100000", "--use_xnnpack=true"]
    for k in (1, 2, 3):
        r = parse_file(logdir / f"mnet_run{k}.txt")
        assert r.ok and (r.count, r.warmup_count) == (5, 3)
        assert r.inference_avg_us == pytest.approx(2000 * (1 + 0.01 * k))
    out = json.loads(res.stdout)
    (m,) = out["models"]
    assert m["mean_ms"] == pytest.approx(2.04) and m["std_ms"] == pytest.approx(0.02) and m["complete"]
    # device state before and after each run
    runs = out["runs"][0]["runs"]
    assert [r["status"] for r in runs] == ["ok", "ok", "ok"]
    before, after = runs[0]["device_before"], runs[0]["device_after"]
    assert before["model"] == "Pixel" and before["android"] == "10"
    assert before["cpus"]["cpu0"] == {"governor": "performance", "cur_khz": 1593600} and len(before["cpus"]) == 4
    assert (before["battery_temp_c"], after["battery_temp_c"]) == (25.0, 25.5)
    assert (before["thermal_c"]["cpu-thermal"], after["thermal_c"]["cpu-thermal"]) == (35.0, 36.0)
    assert runs[2]["device_before"]["battery_temp_c"] == 26.0
    assert "[S1] mnet: run 3/3" in res.stderr


def test_second_run_skips_pushes_when_size_and_sha_match(fake_adb, bench, model, tmp_path):
    assert bench(model, tmp_path / "logs", "--repeats", 1).exit_code == 0
    n = len(fake_adb.calls())
    res = bench(model, tmp_path / "logs", "--repeats", 1, "--force")
    assert res.exit_code == 0, res.output
    assert [c for c in fake_adb.calls()[n:] if c["cmd"] == "push"] == []
    assert "up to date, push skipped" in res.stderr
    # a changed model is pushed again
    model.write_bytes(model.read_bytes() + b"x")
    n = len(fake_adb.calls())
    assert bench(model, tmp_path / "logs", "--repeats", 1, "--force").exit_code == 0
    assert [c["argv"][-1] for c in fake_adb.calls()[n:] if c["cmd"] == "push"] == ["/data/local/tmp/mnet.tflite"]


@pytest.mark.parametrize("delegate,flag", [("xnnpack", "--use_xnnpack=true"), ("none", "--use_xnnpack=false"),
                                           ("gpu", "--use_gpu=true"), ("nnapi", "--use_nnapi=true")])
def test_delegate_flags(fake_adb, bench, model, tmp_path, delegate, flag):
    res = bench(model, tmp_path / "logs", "--repeats", 1, "--delegate", delegate, "--threads", 4)
    assert res.exit_code == 0, res.output
    argv = fake_adb.bm_calls("S1")[0]["argv"]
    assert argv[-1] == flag and "--num_threads=4" in argv


def test_taskset_and_cleanup(fake_adb, bench, model, tmp_path):
    fake_adb.devices(S1={"state": "device", "cpus": 8})  # f0: the big cores of an 8-core phone
    res = bench(model, tmp_path / "logs", "--taskset", "f0", "--cleanup")
    assert res.exit_code == 0, res.output
    assert (fake_adb.device_root("S1") / ".taskset").read_text().split() == ["f0", "f0", "f0"]
    runs = [c["argv"][3] for c in fake_adb.calls() if c["cmd"] == "shell" and "--graph=" in c["argv"][3]]
    assert len(runs) == 3 and all(r.startswith("taskset f0 /data/local/tmp/benchmark_model ") for r in runs)
    tmp = fake_adb.device_root("S1") / "data/local/tmp"
    assert not (tmp / "benchmark_model").exists() and not (tmp / "mnet.tflite").exists()


@pytest.mark.parametrize(
    "devices,serials,msg",
    [
        ({}, [], "no Android device found"),
        ({"S1": {"state": "unauthorized"}}, [], "device S1 is unauthorized"),
        ({"S1": {"state": "offline"}}, [], "device S1 is offline"),
        ({"S1": {}, "S2": {}}, [], "several devices connected (S1 (device), S2 (device)): choose with --serial"),
        ({"S1": {}}, ["S9"], "device S9 not found (connected: S1)"),
        ({"S1": {}, "S2": {"state": "unauthorized"}}, ["S1", "S2"], "device S2 is unauthorized"),
        ({"S1": {"noexec": True}}, [], "is not executable after chmod +x"),
    ],
    ids=["no-device", "unauthorized", "offline", "several-no-serial", "unknown-serial", "one-of-two-unauthorized",
         "noexec"],
)
def test_device_problems_exit_2_and_say_which(fake_adb, bench, model, tmp_path, devices, serials, msg):
    fake_adb.devices(**devices)
    extra = [a for s in serials for a in ("--serial", s)]
    res = bench(model, tmp_path / "logs", *extra)
    assert res.exit_code == 2, res.output
    assert res.stderr.strip().splitlines()[-1].startswith("error: ") and msg in res.stderr
    assert not list((tmp_path / "logs").glob("*_run*.txt"))  # nothing was run


@pytest.mark.parametrize("how", ["flag", "env"])
def test_adb_path_override_and_missing_adb(fake_adb, bench, model, tmp_path, monkeypatch, how):
    if how == "flag":
        res = bench(model, tmp_path / "logs", "--adb", tmp_path / "no-adb")
    else:
        monkeypatch.setenv("ADB", str(tmp_path / "no-adb"))
        res = bench(model, tmp_path / "logs")
    assert res.exit_code == 2 and "adb not found" in res.stderr and "apt-get install adb" in res.stderr
    # and a real path works through the same override
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("ADB", str(fake_adb.root / "bin" / "adb"))
    assert bench(model, tmp_path / "logs2", "--repeats", 1).exit_code == 0


def test_missing_local_binary(fake_adb, model, tmp_path):
    res = CliRunner().invoke(main, ["bench", str(model), "--target", "adb", "--benchmark-binary",
                                    str(tmp_path / "nope"), "--logdir", str(tmp_path / "logs")])
    assert res.exit_code == 2 and "benchmark binary not found" in res.stderr
    assert fake_adb.calls() == []  # nothing was asked of the device


def test_binary_failing_at_run_2(fake_adb, bench, model, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_BM_FAIL_AT", "2")
    logdir = tmp_path / "logs"
    res = bench(model, logdir, "--json")
    assert res.exit_code == 3
    runs = json.loads(res.stdout)["runs"][0]["runs"]
    assert [r["status"] for r in runs] == ["ok", "failed", "ok"]
    assert runs[1]["returncode"] == 1 and runs[1]["error"] == "Benchmarking failed: Failed to apply XNNPACK delegate."
    r2 = parse_file(logdir / "mnet_run2.txt")  # the failing run's raw output is kept
    assert r2.status == "failed" and "XNNPACK" in r2.error
    (m,) = json.loads(res.stdout)["models"]
    assert m["n_ok"] == 2 and m["mean_ms"] == pytest.approx((2.02 + 2.06) / 2)
    assert m["problems"] == ["run 2 failed: Benchmarking failed: Failed to apply XNNPACK delegate."]
    assert "run 2 failed" in res.stderr


def test_device_vanishing_mid_run_keeps_earlier_runs(fake_adb, bench, model, tmp_path):
    fake_adb.devices(S1={"vanish_during_run": 3})
    logdir = tmp_path / "logs"
    res = bench(model, logdir, "--json")
    assert res.exit_code == 3
    assert sorted(p.name for p in logdir.glob("*.txt")) == ["mnet_run1.txt", "mnet_run2.txt", "mnet_run3.partial.txt"]
    assert parse_file(logdir / "mnet_run3.partial.txt").status == "no_result"
    out = json.loads(res.stdout)
    runs = out["runs"][0]["runs"]
    assert [r["status"] for r in runs] == ["ok", "ok", "lost"]
    assert "device S1 lost during run 3" in runs[2]["error"]
    assert out["errors"] and "lost during run 3" in out["errors"][0]
    # the summary, then and later, says what is missing
    (m,) = out["models"]
    assert m["n_ok"] == 2 and m["mean_ms"] == pytest.approx(2.03) and not m["complete"]
    later = CliRunner().invoke(main, ["logs", "summarize", str(logdir)])
    assert later.exit_code == 3
    assert "mnet: run 3 lost: device S1 lost during run 3" in later.output and "2/3" in later.output


def test_device_lost_between_models_marks_the_rest_missing(fake_adb, bench, bm, model, tmp_path):
    other = model.parent / "other.tflite"
    other.write_bytes(model.read_bytes() + b"o")
    fake_adb.devices(S1={"vanish_during_run": 2})
    res = CliRunner().invoke(main, ["bench", str(model), str(other), "--target", "adb", "--benchmark-binary",
                                    str(bm), "--warmup", "1", "--runs", "1",
                                    "--logdir", str(tmp_path / "logs"), "--json"])
    assert res.exit_code == 3
    by = {m["name"]: m for m in json.loads(res.stdout)["models"]}
    assert [r["status"] for r in by["mnet"]["runs"]] == ["ok", "lost", "missing"]
    assert [r["status"] for r in by["other"]["runs"]] == ["missing"] * 3


def test_several_devices_run_in_parallel(fake_adb, bench, model, tmp_path, monkeypatch):
    fake_adb.devices(S1={}, S2={"props": {"ro.product.model": "Pixel 2"}})
    monkeypatch.setenv("FAKE_BM_SLEEP", "0.3")
    logdir = tmp_path / "logs"
    res = bench(model, logdir, "--serial", "S1", "--serial", "S2", "--json")
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in logdir.glob("*.txt"))
    assert names == [f"mnet@S{d}_run{k}.txt" for d in (1, 2) for k in (1, 2, 3)]
    by = {m["name"]: m for m in json.loads(res.stdout)["models"]}
    assert by["mnet@S1"]["complete"] and by["mnet@S2"]["complete"]
    assert by["mnet@S2"]["mean_ms"] == pytest.approx(2.04)
    # one worker per device: the devices' benchmark runs overlap in time
    runs = [c for c in fake_adb.calls() if c["cmd"] == "shell" and "--graph=" in c["argv"][3]]
    first_s2 = min(c["t"] for c in runs if c["serial"] == "S2")
    last_s1 = max(c["t"] for c in runs if c["serial"] == "S1")
    assert first_s2 < last_s1
    models = {r["runner"]["device"]["model"] for r in json.loads(res.stdout)["runs"]}
    assert models == {"Pixel", "Pixel 2"}


def test_binary_that_cannot_run_on_the_device(fake_adb, model, tmp_path):
    wrong = tmp_path / "x86" / "benchmark_model"
    wrong.parent.mkdir()
    wrong.write_text('#!/bin/sh\necho "/system/bin/sh: $0: not executable: 64-bit ELF file" >&2\nexit 126\n')
    res = CliRunner().invoke(main, ["bench", str(model), "--target", "adb", "--benchmark-binary", str(wrong),
                                    "--repeats", "2", "--logdir", str(tmp_path / "logs"), "--json"])
    assert res.exit_code == 3
    runs = json.loads(res.stdout)["runs"][0]["runs"]
    assert [(r["status"], r["returncode"]) for r in runs] == [("failed", 126), ("failed", 126)]
    assert runs[0]["error"].startswith("benchmark_model exited with code 126: ")
    assert runs[0]["error"].endswith("not executable: 64-bit ELF file")


def test_two_outdirs_each_holding_model_tflite_go_to_the_device_under_their_log_names(fake_adb, bm, tmp_path,
                                                                                      monkeypatch):
    # `amc-tf bench out out-fp16 --target adb` as it works locally: both folders hold a model.tflite
    monkeypatch.chdir(tmp_path)
    for folder, size in (("out", 1000), ("out-fp16", 500)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "model.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(size - 8))
    res = CliRunner().invoke(main, ["bench", "out", "out-fp16", "--target", "adb", "--benchmark-binary", str(bm),
                                    "--warmup", "1", "--runs", "2", "--logdir", "logs", "--json"])
    assert res.exit_code == 0, res.output
    pushes = [c["argv"][-1] for c in fake_adb.calls() if c["cmd"] == "push"]
    assert pushes == ["/data/local/tmp/benchmark_model", "/data/local/tmp/out.tflite", "/data/local/tmp/out-fp16.tflite"]
    tmp = fake_adb.device_root("S1") / "data/local/tmp"
    for folder in ("out", "out-fp16"):  # each device file is its own model, byte for byte
        assert (tmp / f"{folder}.tflite").read_bytes() == (tmp_path / folder / "model.tflite").read_bytes()
    graphs = [c["argv"][0] for c in fake_adb.bm_calls("S1")]
    assert [g.rsplit("/", 1)[-1] for g in graphs] == ["out.tflite"] * 3 + ["out-fp16.tflite"] * 3
    for name, mb in (("out", "0.001"), ("out-fp16", "0.0005")):  # each log timed its own model
        assert f"The input model file size (MB): {mb}\n" in (tmp_path / "logs" / f"{name}_run1.txt").read_text()
    out = json.loads(res.stdout)
    assert [m["name"] for m in out["models"]] == ["out", "out-fp16"] and all(m["complete"] for m in out["models"])
    assert [r["runner"]["remote_model"] for r in out["runs"]] == ["/data/local/tmp/out.tflite",
                                                                  "/data/local/tmp/out-fp16.tflite"]
    assert "pushed out/model.tflite -> /data/local/tmp/out.tflite" in res.stderr

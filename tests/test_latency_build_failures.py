"""How `latency build` ends when it cannot finish.

* a device lost mid-build: exit 3, one `error:` line that names the kept partial file;
* a hanging benchmark_model: each point is stopped after --run-timeout (default derived as
  `bench`'s), exit 3, one line, the points so far kept;
* a corrupt partial file: refused with one line (delete it or --force), never exit 70; the
  "kept in" hint only when points were really measured and kept.
Real subprocesses through the project's stand-ins (tests/fakes: adb, benchmark_model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench_helpers import install_fake

AMC_TF = Path(sys.executable).with_name("amc-tf")
TINY = ["--grid", "tiny", "--family", "v1", "--input-size", "32", "--no-calibrate", "--no-probe", "-q"]  # runs counted per grid point


def _build(cwd, *extra, env=None, timeout=600):
    return subprocess.run([str(AMC_TF), "latency", "build", "-o", "lut.json", *TINY, *extra], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)


def _one_error(proc, code):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def _points(path: Path) -> dict:
    return json.loads(path.read_text())["points"]


def test_device_lost_mid_build_is_exit_3_one_line_partial_kept(tmp_path):
    root = tmp_path / "adbroot"
    install_fake("adb", root / "bin")
    (root / "devices.json").write_text(json.dumps(
        {"S1": {"state": "device", "props": {"ro.product.model": "Pixel"}, "vanish_during_run": 4}}))
    bm = install_fake("benchmark_model", tmp_path / "build")
    env = {k: v for k, v in os.environ.items() if k != "ADB"}
    env.update(PATH=f"{root / 'bin'}:{os.environ['PATH']}", FAKE_ADB_ROOT=str(root))
    work = tmp_path / "w"
    work.mkdir()
    proc = _build(work, "--target", "adb", "--serial", "S1", "--benchmark-binary", str(bm), env=env)
    line = _one_error(proc, 3)
    partial = work / "lut.json.partial.json"
    assert "S1" in line and f"kept in {partial.name}" in line and "resume" in line
    assert len(_points(partial)) == 3  # runs 1-3 finished, run 4 was cut
    assert sorted(p.name for p in work.iterdir()) == ["lut.json.partial.json"]


@pytest.fixture
def sleepy_bm(tmp_path):
    bm = install_fake("benchmark_model", tmp_path / "build")
    return bm


def test_hanging_binary_times_out_exit_3_points_kept(tmp_path, sleepy_bm):
    work = tmp_path / "w"
    work.mkdir()
    env = dict(os.environ, FAKE_BM_SLEEP="60", FAKE_BM_SLEEP_AT="3")
    proc = _build(work, "--benchmark-binary", str(sleepy_bm), "--run-timeout", "2", env=env, timeout=120)
    line = _one_error(proc, 3)
    assert "timed out after 2 s" in line and "kept in lut.json.partial.json" in line
    assert len(_points(work / "lut.json.partial.json")) == 2
    assert sorted(p.name for p in work.iterdir()) == ["lut.json.partial.json"]
    # the same command resumes and finishes once the binary behaves
    proc = _build(work, "--benchmark-binary", str(sleepy_bm), "--run-timeout", "30", "--json",
                  env=dict(os.environ, FAKE_BM_SLEEP="0"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["resumed_points"] == 2
    assert sorted(p.name for p in work.iterdir()) == ["lut.json"]


def test_timeout_on_the_first_point_leaves_nothing_and_no_hint(tmp_path, sleepy_bm):
    work = tmp_path / "w"
    work.mkdir()
    env = dict(os.environ, FAKE_BM_SLEEP="60", FAKE_BM_SLEEP_AT="1")
    line = _one_error(_build(work, "--benchmark-binary", str(sleepy_bm), "--run-timeout", "1", env=env,
                             timeout=120), 3)
    assert "timed out" in line and "kept" not in line
    assert list(work.iterdir()) == []


def test_default_run_timeout_is_benchs_derivation():
    from amc_tf.benchmarks.latency_timers import make_timer
    from amc_tf.benchmarks.protocol import Protocol

    timer = make_timer("local", 1, sys.executable)
    assert timer.protocol.timeout_s() == Protocol(warmup=10, runs=30).timeout_s() == 200.0
    assert make_timer("local", 1, sys.executable, run_timeout=7).protocol.timeout_s() == 7.0


def test_run_timeout_is_refused_for_the_in_process_timer_and_when_not_positive(tmp_path):
    assert "--run-timeout" in _one_error(_build(tmp_path, "--run-timeout", "5"), 2)
    assert "--run-timeout" in _one_error(_build(tmp_path, "--run-timeout", "nan", "--benchmark-binary",
                                                sys.executable), 2)
    assert list(tmp_path.iterdir()) == []


BAD_PARTIALS = {
    "list": "[]",
    "string": '"x"',
    "points-list": json.dumps({"header": {}, "points": [1, 2]}),
    "points-strings": json.dumps({"header": {}, "points": {"null": "12.5"}}),
    "points-nan": '{"header": {}, "points": {"null": NaN}}',
    "calibration-number": json.dumps({"header": {}, "points": {}, "calibration": 5}),
    "calibration-entry": json.dumps({"header": {}, "points": {}, "calibration": {"x": {"spec": 1, "rounds_us": []}}}),
    "not-json": "{",
}


@pytest.mark.parametrize("case", sorted(BAD_PARTIALS))
def test_bad_partial_file_is_refused_in_one_line(tmp_path, case):
    partial = tmp_path / "lut.json.partial.json"
    partial.write_text(BAD_PARTIALS[case])
    line = _one_error(_build(tmp_path), 2)
    assert str(partial.name) in line and "delete it" in line and "--force" in line and "kept" not in line
    assert partial.read_text() == BAD_PARTIALS[case]
    assert sorted(p.name for p in tmp_path.iterdir()) == [partial.name]


def test_bad_partial_file_with_force_starts_over(tmp_path):
    partial = tmp_path / "lut.json.partial.json"
    partial.write_text(BAD_PARTIALS["points-list"])
    proc = _build(tmp_path, "--force", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["resumed_points"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lut.json"]


def test_before_work_refusal_has_no_kept_hint(tmp_path):
    partial = tmp_path / "lut.json.partial.json"
    partial.write_text(json.dumps({"header": {"input_size": 1}, "points": {"null": 3.0}}))
    line = _one_error(_build(tmp_path), 2)
    assert "other settings" in line and "kept" not in line


def test_interrupt_mid_build_names_the_kept_points_in_its_one_line(tmp_path, sleepy_bm):
    import signal
    import time

    work = tmp_path / "w"
    work.mkdir()
    env = dict(os.environ, FAKE_BM_SLEEP="60", FAKE_BM_SLEEP_AT="3")
    proc = subprocess.Popen([str(AMC_TF), "latency", "build", "-o", "lut.json", *TINY, "--benchmark-binary",
                             str(sleepy_bm)], cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    calls = sleepy_bm.parent / ".fake_bm_calls.jsonl"
    deadline = time.monotonic() + 120
    while not (calls.exists() and len(calls.read_text().splitlines()) >= 3) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: interrupted (SIGINT)"), err
    assert "kept in lut.json.partial.json" in lines[0]
    assert len(_points(work / "lut.json.partial.json")) == 2
    assert sorted(p.name for p in work.iterdir()) == ["lut.json.partial.json"]

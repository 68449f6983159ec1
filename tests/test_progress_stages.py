"""Progress on every stage that takes seconds: convert says it is starting TensorFlow (not
"reading" while TensorFlow imports), parity and eval name each stage before the first result,
latency build's bar starts before the first point with readable labels, and "built in" after a
resume counts the whole build."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from cli_run import DIGITS, run


def _stages(stderr: str) -> list[str]:
    return [line[len("amc-tf: "):] for line in stderr.splitlines() if line.startswith("amc-tf: ")]


def _in_order(stages: list[str], *prefixes: str) -> None:
    at = 0
    for prefix in prefixes:
        found = next((i for i in range(at, len(stages)) if stages[i].startswith(prefix)), None)
        assert found is not None, f"{prefix!r} not after position {at} in {stages}"
        at = found + 1


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = tmp_path_factory.mktemp("progress")
    shutil.copy(DIGITS, work / "ck.pth.tar")
    proc = run("convert", "ck.pth.tar", "-o", "out", "--input-size", "64", "--no-verify", cwd=work)
    assert proc.returncode == 0, proc.stderr
    (work / "convert-stderr.txt").write_text(proc.stderr)
    return work


def test_convert_names_the_tensorflow_import(work):
    stages = _stages((work / "convert-stderr.txt").read_text())
    assert stages[:3] == ["reading ck.pth.tar", "starting TensorFlow", "building the TF graph"]
    _in_order(stages, "building the TF graph", "writing model.tflite", "writing saved_model/")


def test_parity_names_each_stage(work):
    proc = run("parity", "out", "--limit", "2", cwd=work)
    assert proc.returncode == 0, proc.stderr
    _in_order(_stages(proc.stderr), "starting TensorFlow", "starting PyTorch with", "loading out/saved_model",
              "preparing 2 images", "running torch", "running tf", "running tflite")


def test_eval_names_each_stage(work):
    from PIL import Image

    for c in range(10):  # the digits model's 10 classes
        (work / "images" / str(c)).mkdir(parents=True)
        Image.new("RGB", (64, 64), (20 * c, 10, 10)).save(work / "images" / str(c) / "a.png")
    proc = run("eval", "ck.pth.tar", "--images", "images", "--input-size", "64", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert _stages(proc.stderr)[0] == "loading ck.pth.tar (starting PyTorch)"
    proc = run("eval", "out", "--images", "images", "--backend", "tf", cwd=work)
    assert proc.returncode == 0, proc.stderr
    _in_order(_stages(proc.stderr), "starting TensorFlow", "loading out (SavedModel)")


class SlowTimer:
    """A stand-in timer: each point takes `delay` seconds; its "time" is the model's size."""

    def __init__(self, delay: float):
        self.delay = delay

    def fingerprint(self):
        return {"target": "local", "cpu": "test", "device": None, "runtime": "size", "threads": 1, "delegate": "xnnpack"}

    def time_model(self, path, budget_s=None):
        time.sleep(self.delay)
        return Path(path).stat().st_size / 100.0


def test_latency_bar_starts_at_zero_with_readable_labels_and_resume_counts_the_whole_build(tmp_path):
    from amc_tf.benchmarks.latency_build import build_lut
    from amc_tf.core.netspec import V1

    calls = []

    def stop(done, total, label):
        calls.append((done, total, label))
        if done == 8:
            raise KeyboardInterrupt

    out = tmp_path / "lut.json"
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        build_lut(out, SlowTimer(0.3), [V1], 96, tiny=True, calibrate=False, progress=stop, save_every_s=0)
    first = time.monotonic() - t0
    assert calls[0] == (0, calls[0][1], "starting TensorFlow and the timer")
    assert calls[1][0] == 1 and calls[1][2] == "empty model (timer overhead)"
    labels = [label for _, _, label in calls[2:]]
    assert all(":" not in label and "@" not in label and label.endswith(" ch") for label in labels), labels
    assert json.loads(out.with_name("lut.json.partial.json").read_text())["elapsed_s"] >= 8 * 0.3

    seen = []
    t1 = time.monotonic()
    lut = build_lut(out, SlowTimer(0.0), [V1], 96, tiny=True, calibrate=False,
                    progress=lambda d, t, label: seen.append((d, label)))
    second = time.monotonic() - t1
    assert seen[0] == (8, "starting TensorFlow and the timer")  # the bar starts where the first build stopped
    assert lut.meta["resumed_points"] == 8
    assert first - 0.5 <= lut.meta["build_s"] <= first + second + 0.5  # both parts, not the resumed part only
    assert lut.meta["build_s"] >= second + 8 * 0.3 - 0.2

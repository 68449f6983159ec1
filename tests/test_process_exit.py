"""The CLI process: its start-up is accounted for in report.json, Keras is not loaded during
TensorFlow's start-up, and the fast exit (os._exit once TensorFlow is loaded) keeps exit codes,
output and cleanup exactly as a normal exit would. Real subprocesses throughout: an in-process
runner cannot see how a process ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from cli_run import DIGITS, one_error_line, run

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**ENV, **env})


def test_convert_report_accounts_for_every_second_of_the_process(tmp_path):
    proc = run("convert", DIGITS, "-o", tmp_path / "out", "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # the whole JSON arrived: the fast exit flushed stdout
    timings = report["timings_s"]
    for stage in ("startup", "read", "reference_start", "import_tensorflow", "build", "tflite", "saved_model",
                  "slim", "report", "reference_wait", "verify", "write", "other"):
        assert stage in timings, timings
        assert timings[stage] >= 0
    assert timings["startup"] > 0  # the interpreter and amc-tf's imports, before the command began
    parts = sum(v for k, v in timings.items() if k != "total")
    assert abs(parts - timings["total"]) < 0.01 * len(timings), timings
    # nothing large is left unclaimed
    assert timings["other"] < 0.25 * timings["total"], timings


def test_keras_is_not_loaded_while_tensorflow_starts_but_loads_on_first_use():
    code = ("import sys; from amc_tf.core import tf_startup; tf_startup.install(); import tensorflow as tf; "
            "print('keras' in sys.modules); print(tf.keras.layers.Dense.__name__); print('keras' in sys.modules)")
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "Dense", "True"]


def test_keras_loads_with_tensorflow_when_asked():
    code = ("import sys; from amc_tf.core import tf_startup; tf_startup.install(); import tensorflow; "
            "print('keras' in sys.modules)")
    proc = _python(code, AMC_TF_LOAD_KERAS="1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True"]


def test_fast_exit_keeps_the_exit_code_and_the_one_error_line(tmp_path):
    # TensorFlow loaded first, so the fast exit path is taken; the command then fails on bad input
    bad = tmp_path / "notes.pth"
    bad.write_text("not a checkpoint")
    code = ("import tensorflow, sys; from amc_tf.cli.app import run; "
            f"run(['convert', {str(bad)!r}, '-o', {str(tmp_path / 'out')!r}])")
    proc = _python(code)
    assert proc.returncode == 2, proc.stderr
    assert one_error_line(proc)
    assert not (tmp_path / "out").exists()


def test_fast_exit_runs_atexit_handlers_and_removes_temporary_folders(tmp_path):
    marker = tmp_path / "atexit-ran"
    code = ("import atexit, tempfile, tensorflow; from amc_tf.cli.app import run; "
            "d = tempfile.TemporaryDirectory(prefix='amc-exit-', dir=%r); open(d.name + '/f', 'w').close(); "
            "atexit.register(lambda: open(%r, 'w').write('yes')); "
            "run(['--version'])" % (str(tmp_path), str(marker)))
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert "amc-tf" in proc.stdout
    assert marker.read_text() == "yes"
    assert not list(tmp_path.glob("amc-exit-*"))


def test_a_reader_that_leaves_early_is_exit_141_and_silent(tmp_path):
    """`amc-tf convert ... | true`: the reader is gone before convert prints its summary; the
    command ends with 141 (as a shell reports SIGPIPE), prints nothing on stderr, and its OUTDIR
    is complete (`| head -1` does the same whenever head leaves before the last line)."""
    out = tmp_path / "out"
    cmd = f"{sys.executable} -m amc_tf convert {DIGITS} -o {out} --input-size 64 --no-verify -q | true"
    proc = subprocess.run(["bash", "-c", cmd + "; echo \"exit ${PIPESTATUS[0]}\" >&2"], capture_output=True,
                          text=True, timeout=300, env=ENV)
    assert proc.stdout == ""
    assert proc.stderr.strip() == "exit 141", proc.stderr
    assert (out / "report.json").is_file()

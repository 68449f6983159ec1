"""LiteRT runs untrusted models in a child process: a model that crashes it (SIGSEGV, SIGABRT)
or never returns costs one `error:` line and a meaningful exit code, never the CLI itself, and
leaves no process and no file behind. Every CLI case runs the real `amc-tf` as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tflite_makers as mk
from cli_run import AMC_TF, DIGITS


def services_of(parent_pid: int) -> list[int]:
    """Pids of LiteRT service processes started by `parent_pid` (its pid is in their argv)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 5 and b"serve_main" in argv[2] and argv[5] == str(parent_pid).encode():
            found.append(int(entry.name))
    return found


def run_cli(args, cwd, tmp: Path, timeout_s: float | None = None, wall: float = 120):
    """(the finished process, its pid, seconds); TMPDIR is `tmp`, which must stay empty."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TMPDIR=str(tmp))
    env.pop("AMC_TF_LITERT_TIMEOUT", None)
    if timeout_s is not None:
        env["AMC_TF_LITERT_TIMEOUT"] = str(timeout_s)
    t0 = time.monotonic()
    proc = subprocess.Popen([*AMC_TF, *map(str, args)], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=wall)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), proc.pid, time.monotonic() - t0


def only_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def assert_clean(pid: int, tmp: Path) -> None:
    assert services_of(pid) == []  # the parent has exited: any left would be an orphan
    assert list(tmp.iterdir()) == []


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("isolation")
    for name, make in {**mk.CRASHING, "hang": mk.hangs_at_first_invoke, "classifier": mk.classifier}.items():
        (root / f"{name}.tflite").write_bytes(make())
        mk.outdir(root / "out" / name, (root / f"{name}.tflite").read_bytes())
    mk.image_folder(root / "images")
    return root


@pytest.fixture
def tmp(tmp_path):
    d = tmp_path / "tmpdir"
    d.mkdir()
    return d


CRASHES = [("call-once-cycle", "SIGSEGV", "running"), ("uint8-add", "SIGABRT", "loading")]


@pytest.mark.parametrize("name,sig,doing", CRASHES)
def test_eval_of_a_model_that_crashes_litert_is_one_line_naming_model_and_signal(work, tmp, name, sig, doing):
    proc, pid, _ = run_cli(["eval", f"{name}.tflite", "--data", "images", "-q"], work, tmp)
    assert proc.returncode == 2, proc.stderr
    assert only_line(proc) == (f"error: {name}.tflite: LiteRT crashed with {sig} while {doing} the model "
                               "(it ran in a separate process; nothing else was affected)")
    assert proc.stdout == ""
    assert_clean(pid, tmp)


def test_eval_of_a_model_that_never_returns_is_stopped_after_the_timeout(work, tmp):
    proc, pid, seconds = run_cli(["eval", "hang.tflite", "--data", "images", "-q"], work, tmp, timeout_s=2)
    assert proc.returncode == 3, proc.stderr
    assert only_line(proc) == ("error: hang.tflite: LiteRT made no progress running the model for 2 s; "
                               "stopped it (the limit is AMC_TF_LITERT_TIMEOUT)")
    assert seconds < 30
    assert_clean(pid, tmp)


def test_compare_of_a_crashing_model_is_one_line(work, tmp):
    proc, pid, _ = run_cli(["compare", "out/classifier", "out/call-once-cycle", "--images", "images",
                            "--no-latency", "-q"], work, tmp)
    assert proc.returncode == 2, proc.stderr
    assert only_line(proc).startswith("error: out/call-once-cycle/model.tflite: LiteRT crashed with SIGSEGV "
                                      "while running the model")
    assert_clean(pid, tmp)


def test_compare_of_a_hanging_model_is_stopped(work, tmp):
    proc, pid, _ = run_cli(["compare", "out/hang", "--images", "images", "--no-latency", "-q"], work, tmp,
                           timeout_s=2)
    assert proc.returncode == 3, proc.stderr
    assert "out/hang/model.tflite: LiteRT made no progress running the model for 2 s" in only_line(proc)
    assert_clean(pid, tmp)


def test_diff_against_a_crashing_model_is_one_line(work, tmp):
    proc, pid, _ = run_cli(["diff", DIGITS, "--against", "uint8-add.tflite", "--random", "1", "--input-size", "32",
                            "-q"], work, tmp)
    assert proc.returncode == 2, proc.stderr
    assert only_line(proc).startswith("error: uint8-add.tflite: LiteRT crashed with SIGABRT while loading")
    assert_clean(pid, tmp)


def test_a_bad_timeout_setting_is_refused(work, tmp):
    proc, pid, _ = run_cli(["eval", "classifier.tflite", "--data", "images", "-q"], work, tmp, timeout_s="soon")
    assert proc.returncode == 2
    assert only_line(proc) == "error: AMC_TF_LITERT_TIMEOUT='soon': want a number of seconds > 0"


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGKILL, -9)])
def test_the_litert_child_ends_with_a_signalled_cli(work, tmp, sig, code):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TMPDIR=str(tmp), AMC_TF_LITERT_TIMEOUT="600")
    proc = subprocess.Popen([*AMC_TF, "eval", "hang.tflite", "--data", "images", "-q"], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not services_of(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert services_of(proc.pid), "no LiteRT child appeared"
        time.sleep(1.0)  # inside the endless invoke by now
    finally:
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    deadline = time.monotonic() + 10  # SIGKILL: the kernel's PR_SET_PDEATHSIG, asynchronously
    while services_of(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert services_of(proc.pid) == []
    assert list(tmp.iterdir()) == []


# --- the transport, in process ------------------------------------------------------------

def test_batches_through_the_child_match_litert_in_process(work):
    from ai_edge_litert.interpreter import Interpreter

    from amc_tf.core.litert_worker import IsolatedInterpreter

    here = Interpreter(model_path=str(work / "classifier.tflite"))
    here.allocate_tensors()
    inp, out = here.get_input_details()[0], here.get_output_details()[0]
    rng = np.random.default_rng(3)
    with IsolatedInterpreter(work / "classifier.tflite") as child:
        for n in (1, 7, 300, 2):  # the shared memory grows for 300 and is reused after
            x = rng.standard_normal((n, mk.SIZE, mk.SIZE, 3)).astype(np.float32)
            want = []
            for sample in x:
                here.set_tensor(inp["index"], sample[None])
                here.invoke()
                want.append(here.get_tensor(out["index"]))
            (got,) = child.run(x)
            assert got.shape == (n, 1, mk.CLASSES)
            np.testing.assert_array_equal(got, np.stack(want))
        pid = child._service.pid
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_a_crash_in_process_api_is_a_model_error_and_reaps_the_child(work):
    from amc_tf.core.errors import ModelCrashedError
    from amc_tf.core.litert_worker import IsolatedInterpreter

    with pytest.raises(ModelCrashedError, match=r"SIGABRT while loading"):
        IsolatedInterpreter(work / "uint8-add.tflite")
    assert services_of(os.getpid()) == []
    child = IsolatedInterpreter(work / "call-once-cycle.tflite")
    with pytest.raises(ModelCrashedError, match=r"SIGSEGV while running"):
        child.run(np.zeros((2, mk.SIZE, mk.SIZE, 3), np.float32))
    assert services_of(os.getpid()) == []


def test_latency_timer_turns_a_crash_into_a_failed_run_and_goes_on(work):
    from amc_tf.benchmarks.latency_timers import LocalTimer
    from amc_tf.core.errors import RunFailedError

    timer = LocalTimer(budget_s=0.01, min_runs=3, max_runs=5)
    try:
        assert timer.time_model(work / "classifier.tflite") > 0
        first = timer._interp._service.pid
        assert timer.time_model(work / "classifier.tflite") > 0
        assert timer._interp._service.pid == first  # one child serves every model
        with pytest.raises(RunFailedError, match=r"timing call-once-cycle.tflite: .*LiteRT crashed with SIGSEGV"):
            timer.time_model(work / "call-once-cycle.tflite")
        assert timer.time_model(work / "classifier.tflite") > 0  # a fresh child
    finally:
        timer.close()
    assert services_of(os.getpid()) == []


VARIANTS = [(lambda: mk.call_once_cycle(1), "failed running the model"),  # LiteRT checks a self-call
            *[(lambda n=n: mk.call_once_cycle(n), "crashed with SIGSEGV while running") for n in (2, 3, 5)],
            *[(lambda op=op: mk.unquantized_uint8_add(op), "crashed with SIGABRT while loading") for op in ("ADD", "SUB")],
            (lambda: mk.unquantized_uint8_add("MUL"), None)]  # MUL copes: it runs


@pytest.mark.parametrize("make,outcome", VARIANTS, ids=["ring1", "ring2", "ring3", "ring5", "u8-add", "u8-sub", "u8-mul"])
def test_crash_variants_are_model_errors_in_this_process(make, outcome):
    from amc_tf.core.errors import ModelFileError
    from amc_tf.core.litert_worker import IsolatedInterpreter

    def run():
        with IsolatedInterpreter(make()) as child:
            (out,) = child.run(np.zeros((2, mk.SIZE, mk.SIZE, 3), child.get_input_details()[0]["dtype"]))
            return out

    if outcome is None:
        assert run().shape[0] == 2
    else:
        with pytest.raises(ModelFileError, match=f"^the model: LiteRT {outcome}"):
            run()
    assert services_of(os.getpid()) == []


def test_a_service_that_exits_is_named_with_its_last_stderr_line():
    from amc_tf.core.service import Service, ServiceDied

    with Service("amc_tf.core.no_such_module", timeout=60, capture_stderr=True) as service:
        with pytest.raises(ServiceDied, match=r"^exited \(exit code 1: ModuleNotFoundError: No module named "
                                              r"'amc_tf.core.no_such_module'\)$"):
            service.request({"op": "load"})

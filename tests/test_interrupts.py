"""Interrupting a real conversion (a subprocess of the real CLI) while its torch reference
worker is running: SIGINT exits 130 and SIGTERM 143 with one line and nothing half-written;
after SIGKILL the next run removes the staging directory left behind; in every case the
worker and multiprocessing's resource tracker are gone within seconds (no orphans)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hostile import child_env, cli_command, run_measured
from test_hostile_inputs import assert_one_error_line

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find child processes")


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, state) of a process, None when it does not exist."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return int(fields[1]), fields[0].decode()


def descendants(pid: int) -> set[int]:
    """Living (not zombie) descendants of `pid`."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) and st[1] != "Z":
            table[int(entry)] = st[0]
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in table.items() if parent in frontier} - found
        found |= frontier
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pids) -> list[int]:
    return [p for p in pids if (st := _stat(p)) is not None and st[1] != "Z"]


def staging_dirs(parent: Path) -> list[Path]:
    return sorted(parent.glob(".out.*.tmp"))


def interrupt_during_reference(ckpt, parent: Path, sig: int, group: bool = False):
    """Start a conversion, wait until its spawned worker runs (it imports torch), send `sig` to
    the CLI process (`group`: to its whole process group, as a terminal's Ctrl-C does); return
    (exit code, stderr, the processes it had when signalled)."""
    proc = subprocess.Popen(cli_command("convert", ckpt, "-o", parent / "out", "--input-size", "96"),
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=child_env(), text=True,
                            start_new_session=group)
    deadline = time.monotonic() + 120
    workers: set[int] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        kids = descendants(proc.pid)
        workers = {k for k in kids if "multiprocessing.spawn" in _cmdline(k)}
        if workers:
            break
        time.sleep(0.05)
    assert workers, "the conversion never started its reference worker"
    time.sleep(0.5)  # inside the worker's work (importing torch, running the model)
    kids = descendants(proc.pid)
    t_signal = time.monotonic()
    if group:
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    print(f"\n[figure] {signal.Signals(sig).name}{' to the group' if group else ''}: exit {proc.returncode} "
          f"{time.monotonic() - t_signal:.2f} s after the signal")
    return proc.returncode, err, kids | workers


def assert_no_orphans(pids, within: float = 5.0):
    t0 = time.monotonic()
    deadline = t0 + within
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    print(f"[figure] {len(pids)} child processes gone {time.monotonic() - t0:.2f} s after the parent exited")
    left = alive(pids)
    assert not left, [(p, _cmdline(p)) for p in left]


@pytest.fixture(scope="module")
def ckpt(make_checkpoint):
    return make_checkpoint("odd-v1", "amc", "zip")[0]


@pytest.mark.parametrize("sig, code, group", [(signal.SIGINT, 130, False), (signal.SIGINT, 130, True),
                                              (signal.SIGTERM, 143, False)], ids=["sigint", "ctrl-c-group", "sigterm"])
def test_sigint_sigterm_exit_cleanly_with_one_line(sig, code, group, ckpt, tmp_path):
    t0 = time.monotonic()
    rc, err, kids = interrupt_during_reference(ckpt, tmp_path, sig, group)
    assert rc == code, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "SpawnProcess" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: interrupted ({signal.Signals(sig).name}); nothing half-written was kept"]
    assert err.strip().splitlines()[-1] == errors[0]
    assert not (tmp_path / "out").exists() and not staging_dirs(tmp_path)
    assert_no_orphans(kids)
    assert time.monotonic() - t0 < 90


def test_sigkill_leaves_no_orphan_and_the_next_run_removes_its_staging_dir(ckpt, tmp_path):
    rc, err, kids = interrupt_during_reference(ckpt, tmp_path, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    assert_no_orphans(kids)
    left = staging_dirs(tmp_path)
    # the killed run had claimed OUTDIR (made it, empty); the next run takes an empty folder without --force
    assert len(left) == 1 and os.listdir(tmp_path / "out") == []
    again = run_measured(cli_command("convert", ckpt, "-o", tmp_path / "out", "--input-size", "96", "--no-verify"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"amc-tf: removed {left[0].name}, left by a conversion that was killed" in again.stderr
    assert not staging_dirs(tmp_path) and (tmp_path / "out" / "model.tflite").is_file()


def test_a_live_conversions_staging_dir_is_left_alone(tmp_path):
    """Only provably stale directories go: one whose process is alive (this one) stays, as does
    one of a pid that was reused by another process (different start time) - that one goes."""
    from amc_tf.converters.staging import make_staging_dir, remove_stale

    out = tmp_path / "out"
    mine = make_staging_dir(out)
    pid, start = mine.name.split(".amc-")[1].split(".")[0].split("-")
    reused = tmp_path / f".out.amc-{pid}-{int(start) + 1}.abc123.tmp"
    reused.mkdir()
    unrelated = tmp_path / ".out.something.tmp"
    unrelated.mkdir()
    assert remove_stale(out) == [reused]
    assert mine.is_dir() and unrelated.is_dir() and not reused.exists()

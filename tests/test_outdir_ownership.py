"""An OUTDIR belongs to the one command that claimed it (amc_tf/core/outdir.OutdirClaim): two
conversions racing into one OUTDIR end with one conversion and one error line (exit 2), never two
exit 0s; a file another process puts into OUTDIR while a conversion runs survives and the
conversion publishes nothing; on failure only what the command made is removed. The CLI runs
as real subprocesses; the claim and the file helpers are also checked in-process."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from hostile import child_env, cli_command

CONVERT = ("--input-size", "96", "-q")


def _convert(ckpt, out, *extra) -> subprocess.Popen:
    return subprocess.Popen(cli_command("convert", ckpt, "-o", out, *CONVERT, *extra), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=child_env())


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, list[str]]:
    _, err = proc.communicate(timeout=timeout)
    assert "Traceback" not in err, err[-2000:]
    return proc.returncode, err.strip().splitlines()


def _wait_for_claim(proc: subprocess.Popen, parent: Path, name: str) -> None:
    """Until the conversion's staging dir exists beside OUTDIR (it has claimed OUTDIR by then)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if list(parent.glob(f".{name}.amc-*.tmp")):
            return
        time.sleep(0.02)
    raise AssertionError(f"the conversion never started (exit {proc.poll()})")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def ckpts(make_checkpoint):
    return make_checkpoint("odd-v1", "amc", "zip", seed=1)[0], make_checkpoint("odd-v1", "amc", "zip", seed=2)[0]


def test_two_conversions_racing_into_one_outdir_one_wins_one_fails_with_one_line(ckpts, tmp_path):
    out = tmp_path / "out"
    procs = [_convert(ckpts[0], out, "--no-verify"), _convert(ckpts[1], out, "--no-verify")]  # started together: a real race
    results = [_finish(p) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    winner = [i for i, (code, _) in enumerate(results) if code == 0][0]
    lines = results[1 - winner][1]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "another amc-tf process" in lines[0] or "exists; pass --force" in lines[0], lines
    report = json.loads((out / "report.json").read_text())
    assert report["source"]["sha256"] == _sha(ckpts[winner])  # the winner's conversion, whole
    assert sorted(p.name for p in out.iterdir()) == ["model.tflite", "report.json", "saved_model", "slim"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging dir left by either


def test_a_second_conversion_while_the_first_runs_fails_at_once_even_with_force(ckpts, tmp_path):
    out = tmp_path / "out"
    first = _convert(ckpts[0], out)
    _wait_for_claim(first, tmp_path, "out")
    t0 = time.monotonic()
    code, lines = _finish(_convert(ckpts[1], out, "--force"))
    print(f"\n[figure] the second conversion refused {time.monotonic() - t0:.1f} s after it started")
    assert first.poll() is None, "the first conversion ended before the second was refused: test too slow"
    assert code == 2 and len(lines) == 1, lines
    assert lines[0] == (f"error: {out} is being written by another amc-tf process; wait for it to finish or "
                        "choose another -o")
    assert _finish(first) == (0, [])
    assert json.loads((out / "report.json").read_text())["source"]["sha256"] == _sha(ckpts[0])


def test_a_file_put_into_outdir_during_the_conversion_survives_and_nothing_is_published(ckpts, tmp_path):
    out = tmp_path / "out"
    assert not out.exists()
    proc = _convert(ckpts[0], out, "--no-verify")
    _wait_for_claim(proc, tmp_path, "out")
    # another process (not this test's): `mkdir -p` finds OUTDIR (the conversion made it) and writes a file
    subprocess.run(["sh", "-c", f"mkdir -p '{out}' && printf mine > '{out}/notes.txt'"], check=True)
    code, lines = _finish(proc)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {out} changed while this command ran: another process wrote notes.txt "
                               "there; nothing was published"), lines
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the staging dir is gone


def test_force_replacing_an_earlier_conversion_keeps_a_file_added_meanwhile(ckpts, tmp_path):
    out = tmp_path / "out"
    assert _finish(_convert(ckpts[0], out, "--no-verify")) == (0, [])
    before = (out / "report.json").read_bytes()
    proc = _convert(ckpts[1], out, "--force", "--no-verify")
    _wait_for_claim(proc, tmp_path, "out")
    (out / "mine.txt").write_text("mine")
    code, lines = _finish(proc)
    assert code == 2 and "another process wrote mine.txt there" in lines[-1], lines
    assert (out / "report.json").read_bytes() == before  # the earlier conversion is untouched
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt", "model.tflite", "report.json", "saved_model",
                                                      "slim"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --- the claim and the file helpers, in-process (fast) ---

def test_claim_is_exclusive_and_a_failed_claim_removes_only_the_empty_folders_it_made(tmp_path):
    from amc_tf.core.outdir import OutdirBusyError, OutdirClaim

    out = tmp_path / "a" / "b" / "out"
    first = OutdirClaim(out)
    first.acquire()
    assert out.is_dir() and [c.name for c in first.created] == ["a", "b", "out"]
    with pytest.raises(OutdirBusyError):
        OutdirClaim(out, force=True).acquire()
    assert out.is_dir()  # the refused claim did not touch the first one's folder
    first.release()
    assert list(tmp_path.iterdir()) == []  # failure: every folder it made was empty, all removed
    # a file appears inside before the failure: it and the folders holding it stay
    claim = OutdirClaim(out)
    claim.acquire()
    (out / "theirs.txt").write_text("x")
    claim.release()
    assert (out / "theirs.txt").read_text() == "x"


def test_claim_refuses_a_symlink_and_a_non_empty_folder_without_force(tmp_path):
    from amc_tf.core.errors import OutputExistsError
    from amc_tf.core.outdir import OutdirClaim

    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    for force in (False, True):
        with pytest.raises(OutputExistsError):
            OutdirClaim(link, force=force).acquire()
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    with pytest.raises(OutputExistsError, match="pass --force"):
        OutdirClaim(full).acquire()
    assert list(target.iterdir()) == [] and (full / "x").read_text() == "x"
    empty = tmp_path / "empty"
    empty.mkdir()
    with OutdirClaim(empty) as claim:  # an empty folder is taken; it existed, so failure keeps it
        assert claim.created == []
    assert empty.is_dir()


def test_publish_with_force_replaces_the_old_entries_only_after_the_new_are_in(tmp_path):
    from amc_tf.core.outdir import OutdirClaim

    out = tmp_path / "out"
    (out / "slim").mkdir(parents=True)
    (out / "report.json").write_text("old")
    (out / "slim" / "old.ckpt").write_text("old")
    staging = tmp_path / ".out.amc-1-2.abc.tmp"
    (staging / "slim").mkdir(parents=True)
    (staging / "slim" / "new.ckpt").write_text("new")
    (staging / "report.json").write_text("new")
    with OutdirClaim(out, force=True) as claim:
        claim.publish(staging)
    assert (out / "report.json").read_text() == "new" and os.listdir(out / "slim") == ["new.ckpt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # staging and the moved-aside old entries gone


def test_write_file_never_replaces_nor_writes_through_a_link(tmp_path):
    from amc_tf.core.fileutil import publish, write_file

    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / "out.json"
    link.symlink_to(victim)
    with pytest.raises(FileExistsError):
        write_file(link, "new")
    assert victim.read_text() == "keep" and link.is_symlink()
    write_file(link, "new", overwrite=True)  # replaces the link itself, not its target
    assert victim.read_text() == "keep" and not link.is_symlink() and link.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "victim"]  # no temp file left
    (tmp_path / "d").mkdir()
    (tmp_path / "e").mkdir()
    with pytest.raises(FileExistsError):  # even an empty folder is not replaced
        publish(tmp_path / "d", tmp_path / "e")
    publish(tmp_path / "d", tmp_path / "f")
    assert (tmp_path / "f").is_dir() and not (tmp_path / "d").exists()


# --- single-file outputs: one that appears while the command runs is kept ---

def test_a_second_lut_build_is_refused_and_a_lut_file_created_meanwhile_is_kept(tmp_path):
    from bench_helpers import install_fake

    bm = install_fake("benchmark_model", tmp_path / "build")
    work = tmp_path / "w"
    work.mkdir()
    env = dict(child_env(), FAKE_BM_SLEEP="8", FAKE_BM_SLEEP_AT="2")
    proc = subprocess.Popen(cli_command("latency", "build", "-o", "lut.json", "--grid", "tiny", "--family", "v1",
                                        "--input-size", "32", "--no-calibrate", "-q", "--benchmark-binary", bm),
                            cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    calls = bm.parent / ".fake_bm_calls.jsonl"
    deadline = time.monotonic() + 120
    while not (calls.exists() and len(calls.read_text().splitlines()) >= 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(cli_command("latency", "build", "-o", "lut.json", "--grid", "tiny", "--family", "v1",
                                        "--input-size", "32", "--no-calibrate", "-q", "--force", "--benchmark-binary",
                                        bm), cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and second.stderr.splitlines() == [
        "error: another amc-tf latency build is writing lut.json; wait for it to finish or choose another -o"]
    (work / "lut.json").write_text("mine")  # another process writes the output name meanwhile
    code, lines = _finish(proc)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0] == ("error: lut.json was created by another process while the LUT was built; it was left as "
                        "it is (the measured points are in lut.json.partial.json): pass --force to replace it")
    assert (work / "lut.json").read_text() == "mine"
    assert sorted(p.name for p in work.iterdir()) == ["lut.json", "lut.json.partial.json"]


def test_two_benches_of_one_name_into_one_logdir_one_fails_at_once(tmp_path):
    from adb_helpers import tiny_tflite
    from bench_helpers import install_fake

    model = tiny_tflite(tmp_path / "tiny.tflite")
    bm = install_fake("benchmark_model", tmp_path / "build")
    logdir = tmp_path / "logs"
    env = dict(child_env(), FAKE_BM_SLEEP="12", FAKE_BM_SLEEP_AT="1")

    def bench(name):
        return subprocess.Popen(cli_command("bench", model, "--benchmark-binary", bm, "--logdir", logdir, "--name",
                                            name, "--warmup", "1", "--runs", "1", "--repeats", "2", "-q"),
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    first = bench("m")
    calls = bm.parent / ".fake_bm_calls.jsonl"
    deadline = time.monotonic() + 120
    while not calls.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    other = bench("other")  # another name in the same LOGDIR is not held up
    code, lines = _finish(bench("m"))
    assert first.poll() is None, "the first bench ended before the second was refused: test too slow"
    assert code == 2 and lines == [f"error: another amc-tf bench is writing logs named m in {logdir}; wait for it "
                                   "to finish or choose another --name/--logdir"], lines
    assert _finish(first)[0] == 0 and _finish(other)[0] == 0
    assert sorted(p.name for p in logdir.iterdir()) == ["m.bench.json", "m_run1.txt", "m_run2.txt",
                                                         "other.bench.json", "other_run1.txt", "other_run2.txt"]


def test_hold_name_is_exclusive_per_folder_and_name_and_freed_on_close(tmp_path):
    from amc_tf.core.fileutil import hold_name

    first = hold_name(tmp_path, "lut.json", "lut")
    assert first is not None
    with pytest.raises(BlockingIOError):
        hold_name(tmp_path, "lut.json", "lut")
    other = hold_name(tmp_path, "other.json", "lut")  # another name in the same folder is free
    first.close()
    hold_name(tmp_path, "lut.json", "lut").close()  # freed
    other.close()
    assert list(tmp_path.iterdir()) == []  # no lock file

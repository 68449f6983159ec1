"""What every command shares, run as a user runs it: quiet progress, skipped files named,
numbers and output places checked before any work, no TensorFlow import where none is needed,
and OUTDIRs that never collide. The real `amc-tf` in a subprocess, checking exit codes, stderr
line by line, what is left on disk and which modules were imported."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bench_helpers import install_fake
from eval_helpers import jpeg_bytes, tiny_spec

AMC = Path(sys.executable).parent / "amc-tf"
ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd=None, env=None, timeout=300):
    full_env = {**os.environ, **(env or {})}
    full_env.pop("AMC_TF_VERBOSE", None)
    return subprocess.run([str(AMC), *map(str, args)], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def one_error_line(res, code=2):
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny 1000-class MobileNetV1 (32x32): checkpoint and conversion OUTDIR, converted with -q."""
    from amc_tf.core import torch_models

    root = tmp_path_factory.mktemp("common")
    ckpt = root / "tiny.pth.tar"
    torch_models.save(torch_models.randomize(torch_models.build(tiny_spec(), "amc"), 5), ckpt)
    res = run("convert", ckpt, "-o", root / "out", "--input-size", 32, "-q")
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""  # -q: no progress, no TensorFlow / absl / oneDNN / XNNPACK lines
    return ckpt, root / "out"


@pytest.fixture
def images(tmp_path):
    from amc_tf.core.data import imagenet_wnids

    d = tmp_path / "images"
    d.mkdir()
    wnids = imagenet_wnids()
    for i in range(4):
        (d / f"{wnids[i]}_{i}.JPEG").write_bytes(jpeg_bytes(i))
    (d / f"{wnids[4]}_4.JPEG").write_bytes(jpeg_bytes(4)[:300])  # truncated
    return d


def test_default_progress_has_no_library_chatter(tiny, tmp_path):
    ckpt, _ = tiny
    res = run("convert", ckpt, "-o", tmp_path / "o", "--input-size", 32, "--no-verify")
    assert res.returncode == 0, res.stderr
    assert all(line.startswith("amc-tf: ") for line in res.stderr.splitlines()), res.stderr


def test_eval_names_skipped_images_and_prints_before_writing_logits(tiny, images, tmp_path):
    _, out = tiny
    logits = tmp_path / "no" / "such" / "dir" / "l.npy"
    res = run("eval", out / "model.tflite", "--data", images, "--save-logits", logits, "-q")
    assert res.returncode == 0, res.stderr
    assert "top-1" in res.stdout and logits.is_file()
    bad = next(images.glob("*_4.JPEG"))
    assert res.stderr.splitlines() == [f"amc-tf: skipped (unreadable): {bad}: " + res.stderr.split(f"{bad}: ", 1)[1].strip()]
    data = json.loads(run("eval", out / "model.tflite", "--data", images, "--json", "-q").stdout)
    assert data["skipped"] == 1 and [s["file"] for s in data["skipped_files"]] == [str(bad)]


def test_save_logits_where_no_folder_can_be_made_is_refused_before_work(tiny, images, tmp_path):
    _, out = tiny
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = run("eval", out / "model.tflite", "--data", images, "--save-logits", blocker / "l.npy")
    assert "--save-logits" in one_error_line(res)
    assert res.stdout == ""  # refused before any image was read


def test_tflite_eval_and_local_bench_never_import_tensorflow(tiny, images, tmp_path):
    _, out = tiny
    code = ("import sys\nfrom amc_tf.cli import main\n"
            "try:\n    main(sys.argv[1:], standalone_mode=False)\nfinally:\n"
            "    print('TF-IMPORTED' if 'tensorflow' in sys.modules else 'TF-FREE', file=sys.stderr)\n")
    for args in (["eval", out / "model.tflite", "--data", images, "-q"],
                 ["bench", out, "--warmup", 1, "--runs", 2, "--repeats", 1, "--logdir", tmp_path / "l", "-q"]):
        res = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                             timeout=300)
        assert res.returncode == 0 and res.stderr.strip().endswith("TF-FREE"), (args, res.stderr)


def test_bn_eps_and_other_numbers_are_checked_before_work(tiny, tmp_path):
    ckpt, _ = tiny
    for opt, value in (("--bn-eps", "-1"), ("--bn-eps", "nan"), ("--bn-eps", "0")):
        res = run("convert", ckpt, "-o", tmp_path / "o", opt, value)
        assert res.returncode == 2 and opt in res.stderr and "Traceback" not in res.stderr, res.stderr
        assert "amc-tf: reading" not in res.stderr and not (tmp_path / "o").exists()
    res = run("parity", ckpt, "--max-diff", "-1")
    assert res.returncode == 2 and "--max-diff" in res.stderr


def test_an_existing_empty_outdir_is_accepted(tiny, tmp_path):
    ckpt, _ = tiny
    (tmp_path / "o").mkdir()
    res = run("convert", ckpt, "-o", tmp_path / "o", "--input-size", 32, "--no-verify", "-q")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "o" / "model.tflite").is_file()


def test_benchmark_binary_dot_slash_is_a_path_and_a_bare_name_is_looked_up_on_path(tiny, tmp_path):
    _, out = tiny
    install_fake("benchmark_model", tmp_path)
    os.rename(tmp_path / "benchmark_model", tmp_path / "bm")
    res = run("bench", out, "--benchmark-binary", "./bm", "--repeats", 1, "--logdir", "l1", "-q", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "l1" / "out_run1.txt").is_file()  # an OUTDIR is logged under its folder's name
    res = run("bench", out, "--benchmark-binary", "bm", "--repeats", 1, "-q", cwd=tmp_path,
              env={"PATH": "/usr/bin:/bin"})
    assert "./bm" in one_error_line(res)
    assert not (tmp_path / "logs").exists()  # nothing made before the refusal
    res = run("bench", out, "--benchmark-binary", "bm", "--repeats", 1, "--logdir", "l2", "-q", cwd=tmp_path,
              env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr


def test_two_outdirs_and_repeated_calls_do_not_collide(tiny, tmp_path):
    _, out = tiny
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.tflite").write_bytes((out / "model.tflite").read_bytes())
    args = ("--warmup", 1, "--runs", 2, "--repeats", 1, "-q")
    first = run("bench", "a", "b/model.tflite", *args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = run("bench", "a", *args, "--json", cwd=tmp_path)  # the same model again: a folder of its own
    assert second.returncode == 0, second.stderr
    folders = sorted(p for p in (tmp_path / "logs").iterdir())
    assert len(folders) == 2
    assert sorted(p.name for p in folders[0].glob("*.txt")) == ["a_run1.txt", "b_run1.txt"]
    assert json.loads(second.stdout)["logdir"] == str(folders[1].relative_to(tmp_path))
    summary = run("logs", "summarize", "logs", cwd=tmp_path)
    assert folders[1].name in one_error_line(summary)  # points at the per-call folders


def test_bench_logs_follow_the_umask(tiny, tmp_path):
    _, out = tiny
    res = subprocess.run(f"umask 022; {AMC} bench {out} --warmup 1 --runs 2 --repeats 1 --logdir {tmp_path}/l -q",
                         shell=True, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stderr == "", res.stderr  # -q: not even LiteRT's XNNPACK notice
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "l").iterdir()}
    assert modes == {"out_run1.txt": 0o644, "out.bench.json": 0o644}


def test_logs_parse_of_a_binary_file_is_bad_input(tiny):
    _, out = tiny
    assert "binary file (a TFLite model)" in one_error_line(run("logs", "parse", out / "model.tflite"))


def test_calibration_says_which_images_were_unreadable(tiny, images, tmp_path):
    ckpt, _ = tiny
    res = run("convert", ckpt, "-o", tmp_path / "q", "--input-size", 32, "--quantize", "int8",
              "--calibration", images, "--calibration-size", 5, "--no-verify", "-q")
    assert res.returncode == 0, res.stderr
    bad = next(images.glob("*_4.JPEG"))
    assert "calibrated on 4 images" in res.stdout
    assert f"1 of the 5 requested calibration images were unreadable and skipped: {bad}" in res.stdout

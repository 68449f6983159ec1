"""What bench and compare take: an OUTDIR of any folder name gets a safe log name by itself
(no option blamed that the user did not pass), two models never share one, and a checkpoint
given to bench points at `amc-tf convert`."""

from __future__ import annotations

import json
import shutil

import pytest

from cli_run import DIGITS, one_error_line, run

ODD = "my model ü 0.5"  # a space, a non-ASCII letter, a dot
QUICK = ("--warmup", "1", "--runs", "2", "--repeats", "1")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = tmp_path_factory.mktemp("bench-inputs")
    proc = run("convert", DIGITS, "-o", work / ODD, "--input-size", "64", "--no-verify", "-q")
    assert proc.returncode == 0, proc.stderr
    (work / "b").mkdir()
    shutil.copytree(work / ODD, work / "b" / ODD)
    return work


def test_safe_name_keeps_letters_of_any_script():
    from amc_tf.benchmarks.runlog import check_name, safe_name

    assert safe_name(ODD) == "my_model_ü_0.5"
    assert safe_name("модель v2") == "модель_v2" and safe_name("模型") == "模型"
    assert safe_name(".hidden") == "hidden" and safe_name("-x") == "x" and safe_name("a/b\\c") == "a_b_c"
    assert safe_name("x_run1") == "x_run1_" and safe_name("   ") == "_" and safe_name("") == "model"
    assert len(safe_name("é" * 300).encode()) <= 120
    for raw in (ODD, "a b", "x_run1", "..", "", "é" * 300, "tab\there"):
        assert check_name(safe_name(raw)) == safe_name(raw)


def test_bench_an_outdir_with_any_name(work):
    proc = run("bench", ODD, "b/" + ODD, *QUICK, "--logdir", "logs", "--json", "-q", cwd=work)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [m["name"] for m in data["models"]] == ["my_model_ü_0.5", "my_model_ü_0.5-2"]
    assert sorted(p.name for p in (work / "logs").glob("*.txt")) == ["my_model_ü_0.5-2_run1.txt",
                                                                     "my_model_ü_0.5_run1.txt"]


def test_a_bad_name_given_is_blamed_on_name(work):
    proc = run("bench", ODD, "--name", "a b", *QUICK, "--logdir", "logs2", cwd=work)
    assert proc.returncode == 2 and one_error_line(proc).startswith("error: --name 'a b' is not usable")
    assert not (work / "logs2").exists()


def test_compare_takes_the_same_folder(work):
    import numpy as np
    from PIL import Image

    images = work / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(images / f"{i}.png")
    proc = run("compare", ODD, "b/" + ODD, "--images", "images", *QUICK, "--logdir", "clogs", "--json", "-q",
               cwd=work)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    assert [r["name"] for r in rows] == ["my_model_ü_0.5", "my_model_ü_0.5-2"]
    assert rows[0]["vs_fp32"]["top1_agreement"] == 1.0 and rows[1]["latency_ms"] > 0


@pytest.mark.parametrize("name", ["model.pth.tar", "model.pth", "model.onnx"])
def test_bench_of_a_checkpoint_says_convert_it_first(tmp_path, name):
    shutil.copy(DIGITS, tmp_path / name)
    proc = run("bench", name, *QUICK, "--logdir", "logs", cwd=tmp_path)
    line = one_error_line(proc)
    assert proc.returncode == 2 and "not a TFLite model" in line
    assert f"convert it first (amc-tf convert {name} -o OUTDIR)" in line
    assert not (tmp_path / "logs").exists()

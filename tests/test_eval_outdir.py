"""An OUTDIR means one model everywhere: eval of a quantized OUTDIR evaluates its model.tflite
(the model bench and compare time), --backend picks another, and the result names the file."""

from __future__ import annotations

import json
import shutil

import pytest

from cli_run import DIGITS, run


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = tmp_path_factory.mktemp("eval-outdir")
    shutil.copy(DIGITS, work / "ck.pth.tar")
    proc = run("convert", "ck.pth.tar", "-o", "fp16", "--input-size", "64", "--quantize", "fp16", "--no-verify", "-q",
               cwd=work)
    assert proc.returncode == 0, proc.stderr
    import numpy as np
    from PIL import Image

    images = work / "images"
    rng = np.random.default_rng(0)
    for c in range(10):
        (images / str(c)).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(images / str(c) / f"{i}.png")
    return work


def _eval(work, *args):
    proc = run("eval", "fp16", "--images", "images", "-q", *args, cwd=work)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_an_outdir_means_its_model_tflite(work):
    data = json.loads(_eval(work, "--json").stdout)
    assert data["backend"] == "tflite" and data["model"].endswith("fp16/model.tflite") and data["argument"] == "fp16"
    first = _eval(work).stdout.splitlines()[0]
    assert first.startswith("fp16 (") and "fp16/model.tflite) [tflite, pil preprocessing] on images" in first


def test_backend_picks_another_model_of_the_outdir(work):
    tf = json.loads(_eval(work, "--json", "--backend", "tf").stdout)
    assert tf["backend"] == "tf" and tf["model"].endswith("fp16/saved_model")
    torch = json.loads(_eval(work, "--json", "--backend", "torch").stdout)
    assert torch["backend"] == "torch" and torch["model"] == str((work / "ck.pth.tar").resolve())
    tflite = json.loads(_eval(work, "--json").stdout)
    # fp16 vs fp32 on the same 20 images: the same labels, nearly the same top-1
    assert tflite["evaluated"] == tf["evaluated"] == torch["evaluated"] == 20
    assert tf["correct_top1"] == torch["correct_top1"]
    assert abs(tflite["correct_top1"] - tf["correct_top1"]) <= 1


def test_backend_torch_without_the_checkpoint_says_why(work, tmp_path):
    shutil.copytree(work / "fp16", tmp_path / "fp16")
    report = json.loads((tmp_path / "fp16" / "report.json").read_text())
    report["source"]["file"] = str(tmp_path / "gone.pth.tar")
    (tmp_path / "fp16" / "report.json").write_text(json.dumps(report))
    proc = run("eval", tmp_path / "fp16", "--images", work / "images", "--backend", "torch", "-q")
    assert proc.returncode == 2 and "no longer at the path" in proc.stderr and proc.stderr.count("\n") == 1

"""`amc-tf convert --quantize ...` and `amc-tf compare` from the command line: what is
written, what report.json records, the refusals, and an int8 model with uint8 io through
the local benchmark and the comparison table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from amc_tf.cli import main

SIZE = 40
N_IMAGES = 30


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """An ImageFolder of N_IMAGES small photos-like PNGs (smooth colour fields + noise) in 3
    classes, two of them byte-identical copies (a copy must never be both a calibration
    and a measured image)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:48, 0:56] / 48.0
    for i in range(N_IMAGES - 1):
        cls = root / f"class{i % 3}"
        cls.mkdir(exist_ok=True)
        a, b, c = rng.uniform(-3, 3, 3)
        base = np.stack([np.sin(a * xx + b * yy + c + k) for k in range(3)], -1) * 90 + 128
        pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(cls / f"img{i:02d}.png")
    (root / "class0" / "copy_of_img00.png").write_bytes((root / "class0" / "img00.png").read_bytes())
    return root


_OUT: dict = {}


def converted(tmp_path_factory, make_checkpoint, profile, *args):
    """Convert once per (profile, args); returns (outdir, CliRunner result)."""
    key = (profile, args)
    if key not in _OUT:
        ckpt, _, _ = make_checkpoint(profile, "amc", "zip")
        out = tmp_path_factory.mktemp("q") / "out"
        result = run_cli("convert", ckpt, "-o", out, "--input-size", SIZE, "-q", *args)
        _OUT[key] = (out, result)
    return _OUT[key]


def _contents(root: Path, manifest: list[str] | None = None) -> set[bytes]:
    """Distinct file contents of the folder (or of the manifest's files)."""
    files = [root / line.split()[1] for line in manifest] if manifest is not None else root.rglob("*.png")
    return {f.read_bytes() for f in files}


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


@pytest.mark.parametrize("profile,mode", [("odd-v1", "int8"), ("odd-v2", "fp16")])
def test_convert_quantized_writes_both_models_and_reports_vs_fp32(tmp_path_factory, make_checkpoint, images,
                                                                 profile, mode):
    extra = ("--calibration", images, "--calibration-size", 12) if mode == "int8" else ()
    out, result = converted(tmp_path_factory, make_checkpoint, profile, "--quantize", mode, *extra)
    assert result.exit_code == 0, result.output
    rep = _report(out)
    q, art = rep["quantization"], rep["artifacts"]
    # model.tflite is the quantized model; the fp32 one (which passed the 1e-4 self-check) is beside it
    assert art["tflite"]["path"] == "model.tflite" and art["tflite_fp32"]["path"] == "model_fp32.tflite"
    assert (out / "model.tflite").stat().st_size == q["bytes"] == art["tflite"]["bytes"]
    assert (out / "model_fp32.tflite").stat().st_size == q["fp32_bytes"]
    assert rep["verification"]["passed"] is True and rep["verification"]["reference"] == "torch"
    assert q["mode"] == mode and q["input"]["dtype"] == "float32" and q["output"]["dtype"] == "float32"
    assert q["size_ratio"] == pytest.approx(q["bytes"] / q["fp32_bytes"], abs=1e-4)
    assert q["size_ratio"] < (0.55 if mode == "fp16" else 0.4)
    vs = q["vs_fp32"]
    assert 0 < vs["max_logit_error"] < 0.3 * vs["max_abs_logit"]
    assert vs["mean_logit_error"] <= vs["max_logit_error"]
    assert 0.5 <= vs["top1_agreement"] <= 1.0 and vs["top5_agreement"] >= vs["top1_agreement"]
    if mode == "int8":
        for op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w = art["tflite"]["weights"][op]
            assert w["filter_dtypes"] == ["int8"] and w["per_channel"] == w["ops"]
        # the default recipe is the accurate one, and all the conv MACs run in int8 kernels
        assert q["recipe"]["recipe"] == "accurate" and q["recipe"]["calibration_images"] == 12
        assert q["recipe"]["options"]["ranges"] == "percentile"
        assert q["int8_macs"]["share"] == 1.0 and q["int8_macs"]["not_int8"] == []
        assert "recipe: accurate" in result.output and "int8 kernels" in result.output
        cal = q["calibration"]
        assert cal["images"] == 12 and cal["preprocess"] == "pil" and cal["preprocessing"]["size"] == SIZE
        manifest = (out / "calibration.txt").read_text().splitlines()
        assert len(manifest) == 12
        # held out: every other distinct image content, none equal to a calibration image's
        assert vs["images"] == len(_contents(images) - _contents(images, manifest)) == N_IMAGES - 12 - 1
        assert vs["inputs"].endswith("held out from calibration")
        assert "labels_note" in cal  # 3 image classes, not the model's: no accuracy claimed
        assert "accuracy_fp32" not in vs
    else:
        assert not (out / "calibration.txt").exists()
        assert "calibration" not in q and "standard normal" in vs["inputs"]


@pytest.mark.parametrize("args,message", [
    (("--quantize", "int8"), "--quantize int8 needs --images DIR"),
    (("--quantize", "fp16", "--io", "uint8"), "--io uint8 needs --quantize int8"),
    (("--quantize", "dynamic", "--calibration", "synthetic"), "--images is only for --quantize int8"),
    (("--quantize", "fp16", "--int8-recipe", "tf"), "--int8-recipe is only for --quantize int8"),
    (("--quantize", "int8", "--calibration", "no/such/dir"), "no/such/dir: no such directory"),
    (("--quantize", "int8", "--calibration", "{images}", "--calibration-size", 500),
     "holds 30 images, fewer than --calibration-size 500"),
])
def test_refusals_exit_2_and_write_nothing(tmp_path, make_checkpoint, images, args, message):
    ckpt, _, _ = make_checkpoint("odd-v1", "amc", "zip")
    out = tmp_path / "out"
    args = [str(images) if a == "{images}" else a for a in args]
    result = run_cli("convert", ckpt, "-o", out, "--input-size", SIZE, "-q", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_tf_recipe_stays_reachable(tmp_path_factory, make_checkpoint, images):
    out, result = converted(tmp_path_factory, make_checkpoint, "odd-v1", "--quantize", "int8", "--int8-recipe", "tf",
                            "--calibration", images, "--calibration-size", 12)
    assert result.exit_code == 0, result.output
    q = _report(out)["quantization"]
    assert q["recipe"]["recipe"] == "tf" and q["int8_macs"]["share"] == 1.0
    assert "recipe: tf (minmax" in result.output


def test_synthetic_calibration_warns_loudly(tmp_path_factory, make_checkpoint, images):
    out, result = converted(tmp_path_factory, make_checkpoint, "odd-v2", "--quantize", "int8",
                            "--calibration", "synthetic", "--calibration-size", 8)
    assert result.exit_code == 0, result.output
    assert "WARNING: calibrated on SYNTHETIC" in result.stderr  # printed even with -q
    q = _report(out)["quantization"]
    assert q["calibration"]["source"] == "synthetic" and q["calibration"]["images"] == 8
    assert len(q["warnings"]) == 1 and "SYNTHETIC" in q["warnings"][0]
    assert not (out / "calibration.txt").exists()
    table = run_cli("compare", out, "--images", images, "--no-latency", "-q")
    assert table.exit_code == 0, table.output
    assert "WARNING: out: calibrated on SYNTHETIC" in table.stdout  # and in every comparison of it


def test_int8_uint8_io_through_local_bench_and_compare(tmp_path_factory, tmp_path, make_checkpoint, images):
    from amc_tf.core.tflite_io import TFLiteModel
    from amc_tf.benchmarks.logparse import parse_text

    fp32, r1 = converted(tmp_path_factory, make_checkpoint, "odd-v1")
    q8, r2 = converted(tmp_path_factory, make_checkpoint, "odd-v1", "--quantize", "int8", "--io", "uint8",
                       "--calibration", images, "--calibration-size", 12)
    assert r1.exit_code == 0 and r2.exit_code == 0, r2.output
    q = _report(q8)["quantization"]
    assert q["input"]["dtype"] == "uint8" and q["output"]["dtype"] == "uint8"
    assert q["input"]["scale"] > 0 and 0 <= q["input"]["zero_point"] <= 255
    assert TFLiteModel(q8 / "model.tflite").input["dtype"] == np.uint8

    logs = tmp_path / "logs"
    bench = run_cli("bench", q8 / "model.tflite", "--warmup", 2, "--runs", 5, "--repeats", 2, "--logdir", logs,
                    "--name", "u8", "--json")
    assert bench.exit_code == 0, bench.output
    runs = json.loads(bench.stdout)["runs"][0]["runs"]
    assert [r["status"] for r in runs] == ["ok", "ok"] and all(r["count"] == 5 for r in runs)
    assert parse_text((logs / "u8_run1.txt").read_text()).inference_avg_us > 0

    cmp = run_cli("compare", fp32, q8, "--images", images, "--warmup", 1, "--runs", 3, "--repeats", 1, "--json", "-q")
    assert cmp.exit_code == 0, cmp.output
    table = json.loads(cmp.stdout)
    manifest = (q8 / "calibration.txt").read_text().splitlines()
    calibrated = _contents(images, manifest)
    excluded = sum(f.read_bytes() in calibrated for f in images.rglob("*.png"))  # copies of one too
    assert excluded in (12, 13)
    assert table["images"]["excluded_calibration"] == excluded
    assert table["images"]["measured"] == N_IMAGES - excluded
    a, b = table["rows"]
    assert (a["name"], b["name"]) == ("out", "out-2")  # both OUTDIRs are called out
    assert (a["mode"], b["mode"], b["io"]) == ("fp32", "int8", "uint8")
    assert a["vs_fp32"]["max_logit_error"] == 0 and a["vs_fp32"]["top1_agreement"] == 1.0
    assert b["bytes"] == q["bytes"] and b["size_ratio"] == pytest.approx(q["size_ratio"], abs=1e-3)
    assert 0 < b["vs_fp32"]["max_logit_error"] < 0.3 * b["vs_fp32"]["max_abs_logit"]
    assert a["latency_ms"] > 0 and b["latency_ms"] > 0 and a["latency_ratio"] == 1.0
    assert table["protocol"] == {"warmup": 1, "runs": 3, "repeats": 1, "threads": 1, "delegate": "xnnpack",
                                 "taskset": None, "max_secs": 100000}

    text = run_cli("compare", fp32, q8, "--images", images, "--no-latency", "-q")
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0].split()[:4] == ["model", "mode", "io", "MB"]
    assert lines[3].split()[1:3] == ["int8", "uint8"]
    assert f"({excluded} left out: calibration images)" in text.stdout


@pytest.mark.parametrize("args,message", [
    (("{images}",), "not a conversion output directory"),
    (("{fp32}", "{broken}"), "quantized, but its fp32 model model_fp32.tflite is missing"),
    (("{fp32}", "--images", "no/such"), "no/such: no such directory"),
])
def test_compare_refusals(tmp_path, tmp_path_factory, make_checkpoint, images, args, message):
    import shutil

    fp32, _ = converted(tmp_path_factory, make_checkpoint, "odd-v1")
    q8, _ = converted(tmp_path_factory, make_checkpoint, "odd-v1", "--quantize", "int8", "--io", "uint8",
                      "--calibration", images, "--calibration-size", 12)
    broken = tmp_path / "broken"
    shutil.copytree(q8, broken)
    (broken / "model_fp32.tflite").unlink()
    subs = {"{images}": images, "{fp32}": fp32, "{broken}": broken}
    args = [str(subs.get(a, a)) for a in args]
    if "--images" not in args:
        args += ["--images", str(images)]
    result = run_cli("compare", *args, "--no-latency", "-q")
    assert result.exit_code == 2, result.output
    assert message in result.stderr

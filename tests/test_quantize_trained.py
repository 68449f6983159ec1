"""Quantization on a *trained* model: the digits MobileNetV1 (tests/data/digits, issue 4's
recipe), calibrated on training-split images and measured on the held-out split, which
never overlap. The issue's target: int8 top-1 within 1 point of fp32."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from amc_tf.cli import main

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "tests" / "data" / "digits" / "mobilenet_v1_digits.pth.tar"
CALIBRATION = 200


def _recipe():
    spec = importlib.util.spec_from_file_location("digits_recipe", ROOT / "scripts" / "digits_recipe.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """(calibration folder: CALIBRATION training images, held-out folder: the 360 test images)."""
    recipe = _recipe()
    root = tmp_path_factory.mktemp("digits")
    train, held_out = recipe.split()
    calib = recipe.write_image_folder(root / "calib", train[:CALIBRATION])
    test = recipe.write_image_folder(root / "test", held_out)
    return calib, test


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory):
    """(built TF model, fp32 .tflite path) of the digits checkpoint."""
    from amc_tf.converters.exporters import write_tflite
    from amc_tf.converters.frontends import load
    from amc_tf.converters.tf_builder import build

    model = build(load(CHECKPOINT, input_size=64)[0])
    path = tmp_path_factory.mktemp("fp32") / "fp32.tflite"
    write_tflite(model, path)
    return model, path


def _held_out(test_dir):
    """(normalised held-out images, labels) through evaluation's pipeline."""
    from amc_tf.core import calibration
    from amc_tf.core.data import open_dataset
    from amc_tf.core.preprocess import Preprocessing

    ds = open_dataset(test_dir)
    x, kept = calibration.load(ds, Preprocessing.for_input_size(64))
    labels, _ = ds.model_labels(10)
    return x, labels[kept]


def test_calibration_and_held_out_images_do_not_overlap(digits):
    from amc_tf.core.calibration import sha256_file

    calib, test = digits
    a = {sha256_file(p) for p in calib.rglob("*.png")}
    b = {sha256_file(p) for p in test.rglob("*.png")}
    assert len(a) == CALIBRATION and len(b) == 360 and not a & b


@pytest.mark.parametrize("mode", ["fp16", "dynamic", "int8"])
def test_trained_accuracy_per_mode(digits, fp32_model, tmp_path, mode):
    from amc_tf.core import calibration
    from amc_tf.core.agreement import accuracy, agreement
    from amc_tf.core.preprocess import Preprocessing
    from amc_tf.core.tflite_io import TFLiteModel
    from amc_tf.converters.quantize import QuantizeRequest, quantized_tflite_bytes

    calib, test = digits
    model, fp32_path = fp32_model
    rep = None
    if mode == "int8":
        images, _ = calibration.load(calibration.open_images(calib), Preprocessing.for_input_size(64))
        assert len(images) == CALIBRATION
        rep = lambda: (images[i:i + 1] for i in range(len(images)))  # noqa: E731
    q = tmp_path / "q.tflite"
    q.write_bytes(quantized_tflite_bytes(model, QuantizeRequest(mode), rep))
    x, labels = _held_out(test)
    ref, out = TFLiteModel(fp32_path).predict(x), TFLiteModel(q).predict(x)
    fp32_acc, q_acc = accuracy(ref, labels), accuracy(out, labels)
    assert fp32_acc["top1"] > 0.9  # it is a trained model
    assert q_acc["top1"] >= fp32_acc["top1"] - 0.01, (fp32_acc, q_acc)  # within 1 point
    fig = agreement(ref, out)
    assert fig["top1_agreement"] >= 0.98 and fig["top5_agreement"] == 1.0, fig


def test_trained_int8_through_convert_and_compare(digits, tmp_path):
    """The CLI path with uint8 io: report.json's held-out figures, `compare` and `eval` on the test split."""
    calib, test = digits
    out = {}
    for name, args in (("fp32", ()), ("int8", ("--quantize", "int8", "--io", "uint8", "--calibration", calib,
                                               "--calibration-size", 150))):
        out[name] = tmp_path / name
        r = CliRunner().invoke(main, [str(a) for a in ("convert", CHECKPOINT, "-o", out[name], "-q", "--input-size",
                                                       64, *args)])
        assert r.exit_code == 0, r.output
    q = json.loads((out["int8"] / "report.json").read_text())["quantization"]
    vs = q["vs_fp32"]
    assert q["calibration"]["images"] == 150 and vs["images"] == 50  # the other 50 calibration-folder images
    assert vs["accuracy_quantized"]["top1"] >= vs["accuracy_fp32"]["top1"] - 0.02  # 1 image of 50
    r = CliRunner().invoke(main, ["compare", str(out["fp32"]), str(out["int8"]), "--images", str(test),
                                  "--no-latency", "--json", "-q"])
    assert r.exit_code == 0, r.output
    table = json.loads(r.stdout)
    assert table["images"] == {"root": str(test), "measured": 360, "excluded_calibration": 0, "skipped": 0,
                               "skipped_files": []}
    fp32_row, int8_row = table["rows"]
    assert fp32_row["accuracy"]["top1"] > 0.9
    assert int8_row["accuracy"]["top1"] >= fp32_row["accuracy"]["top1"] - 0.01
    assert int8_row["accuracy_fp32"] == fp32_row["accuracy"]
    assert int8_row["vs_fp32"]["top1_agreement"] >= 0.98
    # amc-tf eval finds the quantized model.tflite and feeds its uint8 input through its scale
    r = CliRunner().invoke(main, ["eval", str(out["int8"]), "--backend", "tflite", "--data", str(test), "--json", "-q"])
    assert r.exit_code == 0, r.output
    evaluated = json.loads(r.stdout)
    assert evaluated["model"].endswith("model.tflite") and evaluated["model_input"] == "float"
    assert evaluated["top1"] == pytest.approx(int8_row["accuracy"]["top1"])

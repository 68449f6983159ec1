"""`amc-tf diff`: per-layer comparison of PyTorch, TF, TFLite fp32 and quantized TFLite.

References are real: PyTorch 2.13 (the checkpoint's own tensors, and the nn.Module's logits),
TensorFlow, and the LiteRT interpreter with every tensor preserved.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from quant_helpers import quantized_twin

from amc_tf.core import torch_models
from amc_tf.cli import main
from amc_tf.services.layerdiff.metrics import tap_points
from amc_tf.core.netspec import NetSpec
from amc_tf.converters.convert import ConvertOptions, convert
from amc_tf.services.layerdiff.subject import open_checkpoint, random_inputs, run_diff
from amc_tf.converters.tf_builder import build

TOL = 1e-4


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# (profile, layout, input size): every family and layout the converter reads, odd sizes
CORRECT = [
    ("odd-v1", "amc", 97),
    ("odd-v1", "community", 64),
    ("odd-v2", "torchvision", 96),
    ("odd-v2", "amc", 65),
    ("0.5time", "amc", 128),
]


@pytest.mark.parametrize("case", CORRECT, ids=["-".join(map(str, c)) for c in CORRECT])
def test_correct_conversion_has_no_layer_over_tolerance(case, make_checkpoint):
    profile, layout, size = case
    path, torch_model, spec = make_checkpoint(profile, layout, "zip")
    subject = open_checkpoint(str(path), input_size=size)
    x = random_inputs(subject.network.spec, 2)
    result = run_diff(subject, None, x, TOL)

    assert result["passed"] is True and result["reference"] == "torch"
    assert [(c["candidate"], c["reference"]) for c in result["comparisons"]] == [("tf", "torch"), ("tflite", "torch")]
    points = tap_points(subject.network.spec)
    assert len(points) == len(spec.layers()) + 1  # every layer and the pooling
    for comparison in result["comparisons"]:
        rows = comparison["layers"]
        assert [r["layer"] for r in rows] == [p.key for p in points]
        assert comparison["first_over"] is None
        assert max(r["rel"] for r in rows) < TOL
        assert min(r["cosine"] for r in rows) > 0.99999
        # shapes follow the network description (NHWC), logits [N, classes]
        sizes = subject.network.spec.spatial_sizes()
        for row, layer, s in zip([r for r in rows if r["role"] != "pool"], spec.layers(), sizes):
            expected = [2, layer.cout] if layer.role == "logits" else [2, s, s, layer.cout]
            assert row["shape"] == expected, row["layer"]
    # the names each runtime gives a layer: the module path in PyTorch, the tensor in TFLite
    stem, logits = result["comparisons"][1]["layers"][0], result["comparisons"][1]["layers"][-1]
    torch_stem = {"amc": "conv1.0", "community": "model.0.0", "torchvision": "features.0.0"}[layout]
    if spec.family == "mobilenet_v2" and layout == "amc":
        torch_stem = "features.0.0"
    assert stem["names"]["torch"] == torch_stem
    assert f"{spec.scope}/{'Conv' if spec.family == 'mobilenet_v2' else 'Conv2d_0'}/Relu" in stem["names"]["tflite"]
    assert logits["names"]["tflite"].endswith("Identity")
    # the PyTorch reference's logits are the nn.Module's own
    ref = subject.taps("torch", x).tensors[spec.layers()[-1].scope]
    np.testing.assert_allclose(ref, torch_models.logits(torch_model, x), rtol=1e-5, atol=1e-5)


def _first_even_stride2(spec):
    """The first 3x3 stride-2 conv whose input size is even: where TF 'SAME' pads (0,1), not (1,1)."""
    size = spec.input_size
    for layer, out in zip(spec.layers(), spec.spatial_sizes()):
        if layer.kernel == 3 and layer.stride == 2 and size % 2 == 0:
            return layer.scope
        size = out
    return None


# (profile, input size, the first wrong layer)
SAME_PADDING = [
    ("odd-v1", 224, "MobilenetV1/Conv2d_0"),  # the stem sees an even input
    ("odd-v1", 227, "MobilenetV1/Conv2d_2_depthwise"),  # odd stem input: 'SAME' is symmetric there
    ("odd-v2", 224, "MobilenetV2/Conv"),
    ("odd-v2", 227, "MobilenetV2/expanded_conv_1/depthwise"),
]


@pytest.mark.parametrize("case", SAME_PADDING, ids=[f"{p}-{s}" for p, s, _ in SAME_PADDING])
def test_same_padding_is_localised_to_the_first_wrong_layer(case, make_checkpoint):
    profile, size, first_wrong = case
    path, _, _ = make_checkpoint(profile, "amc", "zip")
    subject = open_checkpoint(str(path), input_size=size)
    assert _first_even_stride2(subject.network.spec) == first_wrong
    subject._model = build(subject.network, padding_mode="same")  # a deliberately broken conversion
    result = run_diff(subject, "torch", random_inputs(subject.network.spec, 2), TOL)
    assert result["passed"] is False
    for comparison in result["comparisons"]:  # TF and the TFLite built from it
        assert comparison["first_over"] == first_wrong
        rows = comparison["layers"]
        k = next(i for i, r in enumerate(rows) if r["layer"] == first_wrong)
        assert all(r["rel"] < TOL for r in rows[:k])  # everything before it is right
        assert rows[k]["rel"] > 100 * TOL
        assert all(r["over"] for r in rows[k:-2])  # and the error propagates


@pytest.mark.parametrize("profile", ["odd-v1", "odd-v2"])
def test_bn_epsilon_is_localised_to_the_first_batchnorm(profile, make_checkpoint):
    path, _, spec = make_checkpoint(profile, "amc", "zip")
    subject = open_checkpoint(str(path), input_size=64)
    subject._model = build(subject.network, bn_eps=1e-3)  # slim/Keras's default instead of PyTorch's
    result = run_diff(subject, "torch", random_inputs(subject.network.spec, 2), TOL)
    first_bn = next(layer for layer in spec.layers() if layer.has_bn)
    assert [c["first_over"] for c in result["comparisons"]] == [first_bn.scope, first_bn.scope]
    assert result["comparisons"][0]["layers"][0]["rel"] > 5 * TOL  # eps 1e-3 vs 1e-5 on variances ~1


@pytest.fixture(scope="module")
def converted(make_checkpoint, tmp_path_factory):
    """fp32 conversions and their int8 / fp16 twins: {profile: {"fp32"|"int8"|"fp16": OUTDIR}}."""
    root = tmp_path_factory.mktemp("diff")
    out = {}
    for profile, layout, size in (("odd-v1", "community", 96), ("odd-v2", "torchvision", 80)):
        path, _, _ = make_checkpoint(profile, layout, "legacy")
        fp32 = root / f"{profile}-fp32"
        convert(path, fp32, ConvertOptions(input_size=size, verify=False))
        out[profile] = {"fp32": fp32}
        for mode in ("int8", "fp16"):
            out[profile][mode] = quantized_twin(fp32, root / f"{profile}-{mode}", mode)
    return out


@pytest.mark.parametrize("mode", ["int8", "fp16"])
@pytest.mark.parametrize("profile", ["odd-v1", "odd-v2"])
def test_quantized_vs_fp32_gives_a_finite_error_for_every_layer(profile, mode, converted):
    fp32, twin = converted[profile]["fp32"], converted[profile][mode]
    result = run_cli("diff", twin, "--against", fp32, "--json", "--tolerance", "1e9", "-q")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (comparison,) = data["comparisons"]
    assert comparison["reference"] == f"tflite:{fp32.name}" and comparison["candidate"] == f"tflite:{twin.name}"
    rows = comparison["layers"]
    spec = NetSpec.from_dict(json.loads((fp32 / "report.json").read_text())["network"])
    assert [r["layer"] for r in rows] == [p.key for p in tap_points(spec)]
    for row in rows:
        assert all(math.isfinite(row[k]) for k in ("max_abs", "mean_abs", "rel", "cosine")), row
        assert row["max_abs"] > 0, row  # quantization changes every layer
        assert row["cosine"] > 0.9, row
    stem = rows[0]
    if mode == "int8":
        # int8 activations carry ~1/255 of their range of rounding error on average; the largest
        # error is larger where the recipe's percentile range clips the rare largest values
        ref_max = stem["max_abs"] / stem["rel"]
        assert stem["mean_abs"] < 0.01 * ref_max and stem["rel"] < 0.5, stem
    else:  # fp16 weights: far less
        assert stem["rel"] < 2e-3, stem
    # as a gate: the tight default tolerance fails (exit 1) at the first layer
    gate = run_cli("diff", twin, "--against", fp32, "-q")
    assert gate.exit_code == 1
    first_row = next(line for line in gate.stdout.splitlines() if line.startswith("  0 "))
    assert first_row.endswith("<-- first over tolerance"), gate.stdout
    assert gate.stderr.strip().endswith(f"at {rows[0]['layer']}")


def test_outdir_table_against_pytorch_and_against_tf(converted):
    out = converted["odd-v2"]["fp32"]
    result = run_cli("diff", out, "-q")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "tf vs torch (reference)" in text and "tflite vs torch (reference)" in text
    assert text.count("all 54 layers within tolerance") == 2  # 52 convs, pooling, logits
    assert "expanded_conv_2/add" in text  # a residual block's output is the add
    result = run_cli("diff", out, "--against", "tflite", "--json", "--random", "3", "-q")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["inputs"]["count"] == 3 and data["reference"] == "tflite"
    assert [c["candidate"] for c in data["comparisons"]] == ["torch", "tf"]


def test_outdir_without_its_checkpoint_compares_tf_and_tflite(converted, tmp_path):
    import shutil

    out = tmp_path / "moved"
    shutil.copytree(converted["odd-v1"]["fp32"], out)
    report = json.loads((out / "report.json").read_text())
    report["source"]["file"] = str(tmp_path / "gone.pth")
    (out / "report.json").write_text(json.dumps(report))
    result = run_cli("diff", out, "-q", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["reference"] == "tf" and "no longer at the path" in data["skipped"]["torch"]
    result = run_cli("diff", out, "--against", "torch", "-q")
    assert result.exit_code == 2 and result.stderr.startswith("error: cannot use torch")


BAD = {
    "missing": (["diff", "/nonexistent/x.pth"], "no such file"),
    "bad-against": (["diff", "{ckpt}", "--against", "onnx"], "not torch, tf, tflite"),
    "images-and-random": (["diff", "{ckpt}", "--images", "{tmp}", "--random", "2"], "not both"),
    "no-images": (["diff", "{ckpt}", "--images", "{tmp}"], "no images"),
    "not-an-outdir": (["diff", "{tmp}"], "no report.json"),
    "other-network": (["diff", "{v1}", "--against", "{v2}"], "different networks"),
    "outdir-with-input-size": (["diff", "{v1}", "--input-size", "64"], "apply to a CHECKPOINT"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_exit_2(case, make_checkpoint, converted, tmp_path):
    args, message = BAD[case]
    ckpt, _, _ = make_checkpoint("odd-v1", "amc", "zip")
    fill = {"ckpt": ckpt, "tmp": tmp_path, "v1": converted["odd-v1"]["fp32"], "v2": converted["odd-v2"]["fp32"]}
    result = run_cli(*[a.format(**fill) for a in args], "-q")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_images_as_inputs(converted, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(3)
    for i, (h, w) in enumerate([(300, 260), (120, 200), (96, 96)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / f"img{i}.png")
    result = run_cli("diff", converted["odd-v1"]["fp32"], "--images", tmp_path, "--limit", "2", "--json", "-q")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["inputs"] == {"count": 2, "source": str(tmp_path), "skipped": 0, "skipped_files": []}
    assert data["passed"] is True



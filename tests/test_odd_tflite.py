"""Odd but valid .tflite files (no inputs, no outputs, a scalar output, a rank-2 input, a
[32768, 2, 2, 3] output, an invoke that always fails) in every command that takes a model:
eval, compare and diff refuse them with one `error:` line naming the file and what it has
(`tflite_io.check_classifier`, the one signature check), exit 2; bench times any valid model
as benchmark_model does, and a failing invoke is a failed run (exit 3, one line); latency
predict reads checkpoints, never a .tflite. None of them is a traceback or exit 70."""

from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner

import tflite_makers as mk
from amc_tf.cli.app import main
from cli_run import DIGITS

WHAT = {  # what the one line says the model has instead of an image classifier's signature
    "no-inputs": "it has 0 input(s) and 1 output(s)",
    "no-outputs": "it has 1 input(s) and 0 output(s)",
    "scalar-output": "its output is []",
    "rank2-input": "its input is [1, 48]",
    "huge-output": "its output is [32768, 2, 2, 3]",
}
NOT_A_CLASSIFIER = "not an image classifier (one input [1, S, S, 3], one output [1, classes])"
FAILED_INVOKE = "LiteRT failed running the model (gather index out of bounds"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("odd")
    for name, make in mk.ODD.items():
        data = make()
        (root / f"{name}.tflite").write_bytes(data)
        mk.outdir(root / "out" / name, data)
    mk.image_folder(root / "images")
    from test_latency_lut import synthetic_lut

    synthetic_lut().save(root / "lut.json")
    return root


def cli(work, monkeypatch, *args):
    monkeypatch.chdir(work)
    result = CliRunner().invoke(main, [str(a) for a in args])
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and result.exit_code != 70, result.stderr
    return result, [line for line in lines if line.startswith("error:")]


def expected(name: str, where: str) -> str:
    return f"error: {where}: " + (f"{NOT_A_CLASSIFIER}: {WHAT[name]}" if name in WHAT else FAILED_INVOKE)


@pytest.mark.parametrize("name", list(mk.ODD))
def test_eval_refuses_with_one_line(work, monkeypatch, name):
    result, errors = cli(work, monkeypatch, "eval", f"{name}.tflite", "--data", "images", "-q")
    assert result.exit_code == 2
    assert len(errors) == 1 and errors[0].startswith(expected(name, f"{name}.tflite")), result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("name", list(mk.ODD))
def test_compare_refuses_with_one_line(work, monkeypatch, name):
    result, errors = cli(work, monkeypatch, "compare", f"out/{name}", "--images", "images", "--no-latency", "-q")
    assert result.exit_code == 2
    assert len(errors) == 1 and errors[0].startswith(expected(name, f"out/{name}/model.tflite")), result.stderr


@pytest.mark.parametrize("name", list(WHAT))
def test_diff_against_refuses_with_one_line(work, monkeypatch, name):
    result, errors = cli(work, monkeypatch, "diff", DIGITS, "--against", f"{name}.tflite", "--random", "1",
                         "--input-size", "32", "-q")
    assert result.exit_code == 2
    assert errors == [expected(name, f"{name}.tflite")], result.stderr


@pytest.mark.parametrize("name", list(WHAT))
def test_bench_times_any_valid_model(work, monkeypatch, tmp_path, name):
    result, errors = cli(work, monkeypatch, "bench", f"{name}.tflite", "--warmup", "1", "--runs", "2",
                         "--repeats", "1", "--logdir", tmp_path / "logs", "--json", "-q")
    assert result.exit_code == 0 and errors == [], result.stderr


def test_bench_of_a_model_whose_invoke_fails_is_a_failed_run(work, monkeypatch, tmp_path):
    result, errors = cli(work, monkeypatch, "bench", "fails-at-first-invoke.tflite", "--warmup", "1", "--runs", "2",
                         "--repeats", "1", "--logdir", tmp_path / "logs", "-q")
    assert result.exit_code == 3
    assert len(errors) == 1 and "gather index out of bounds" in errors[0], result.stderr


@pytest.mark.parametrize("name", ["no-inputs", "huge-output"])
def test_latency_predict_names_a_tflite_as_not_a_checkpoint(work, monkeypatch, name):
    result, errors = cli(work, monkeypatch, "latency", "predict", f"{name}.tflite", "--lut", "lut.json", "-q")
    assert result.exit_code == 2
    assert len(errors) == 1 and "is a TFLite model, not a PyTorch checkpoint" in errors[0], result.stderr


def test_the_classifier_check_accepts_what_amc_tf_writes():
    from amc_tf.core.errors import ModelFileError
    from amc_tf.core.tflite_io import check_classifier

    def detail(shape, dtype=np.float32, scale=0.0):
        return {"shape": np.asarray(shape), "dtype": dtype, "quantization": (scale, 0),
                "quantization_parameters": {"scales": np.asarray([scale] if scale else []),
                                            "zero_points": np.asarray([0] if scale else [])}}

    check_classifier("m", [detail([1, 224, 224, 3])], [detail([1, 1000])])  # fp32
    check_classifier("m", [detail([1, 64, 64, 3], np.uint8)], [detail([1, 10])])  # --with-preprocessing pixels
    check_classifier("m", [detail([1, 96, 96, 3], np.int8, 0.02)], [detail([1, 1001], np.int8, 0.1)])  # --io int8
    refused = {
        "its input is [1, 224, 224, 1]": ([detail([1, 224, 224, 1])], [detail([1, 1000])]),
        "its input is [2, 8, 8, 3]": ([detail([2, 8, 8, 3])], [detail([2, 1000])]),
        "its input is [1, 8, 9, 3]": ([detail([1, 8, 9, 3])], [detail([1, 1000])]),
        "its input is int8 (want": ([detail([1, 8, 8, 3], np.int8)], [detail([1, 10])]),
        "its input is int32": ([detail([1, 8, 8, 3], np.int32)], [detail([1, 10])]),
        "its output is [1, 1, 1, 10]": ([detail([1, 8, 8, 3])], [detail([1, 1, 1, 10])]),
        "its output is [1, 200000] (at most 100,000 classes)": ([detail([1, 8, 8, 3])], [detail([1, 200000])]),
        "its output is int8 without a scale": ([detail([1, 8, 8, 3])], [detail([1, 10], np.int8)]),
        "it has 1 input(s) and 2 output(s)": ([detail([1, 8, 8, 3])], [detail([1, 10])] * 2),
    }
    for what, (inputs, outputs) in refused.items():
        with pytest.raises(ModelFileError, match=r"^m: not an image classifier .*: " + re.escape(what)):
            check_classifier("m", inputs, outputs)


def is_classifier(inp: list, dtype: str, out: list) -> bool:
    """The oracle: what check_classifier should accept, written from the rule, not the code."""
    return (len(inp) == 4 and inp[0] == 1 and inp[1] == inp[2] >= 1 and inp[3] == 3 and dtype in ("float32", "uint8")
            and len(out) == 2 and out[0] == 1 and 1 <= out[1] <= 100_000)


@pytest.mark.parametrize("seed", range(10))
def test_random_signatures_run_or_are_refused_with_one_line(work, monkeypatch, tmp_path, seed):
    inp, dtype, out = mk.random_signature(np.random.default_rng(seed))
    (tmp_path / "m.tflite").write_bytes(mk.signature(inp, dtype, out))
    result, errors = cli(tmp_path, monkeypatch, "eval", "m.tflite", "--data", work / "images", "-q")
    if is_classifier(inp, dtype, out) and out[1] == mk.CLASSES:
        assert result.exit_code == 0 and errors == [], result.stderr
        return
    assert result.exit_code == 2 and len(errors) == 1, result.stderr
    if is_classifier(inp, dtype, out):
        assert errors[0].startswith(f"error: the model has {out[1]} classes but"), errors
    else:
        assert errors[0].startswith(f"error: m.tflite: {NOT_A_CLASSIFIER}: "), (inp, dtype, out, errors)

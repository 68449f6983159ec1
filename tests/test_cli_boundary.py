"""The one CLI error boundary, seen from outside (a real subprocess): usage errors, unusable
paths, broken models of every kind and an unexpected exception each print exactly one line."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest

from hostile import child_env, cli_command, run_measured
from test_hostile_inputs import assert_one_error_line


@pytest.mark.parametrize("args, pattern", [
    (["convert"], r"Missing argument 'CHECKPOINT_OR_OUTDIR'\. \(see amc-tf convert --help\)"),
    (["convert", "x.pth"], r"Missing option '-o'"),
    (["bogus"], r"No such command 'bogus'"),
    (["--bogus"], r"No such option '--bogus'"),
    (["bench", "--threads", "many", "m.tflite"], r"'many' is not a valid integer"),
    (["convert", "missing.pth", "-o", "out", "-q"], r"missing.pth: no such file"),
])
def test_usage_and_input_errors_are_one_line(tmp_path, args, pattern):
    run = run_measured(cli_command(*args), cwd=tmp_path)
    assert_one_error_line(run, pattern=pattern)
    assert "Usage:" not in run.stderr and not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def converted(make_checkpoint, tmp_path_factory):
    """A real conversion of a small odd MobileNetV1 (no self-check: quick)."""
    ckpt, _, _ = make_checkpoint("odd-v1", "amc", "zip")
    out = tmp_path_factory.mktemp("conv") / "good"
    run = run_measured(cli_command("convert", ckpt, "-o", out, "-q", "--input-size", "64", "--no-verify"))
    assert run.returncode == 0, run.stderr
    return ckpt, out


def test_output_that_would_delete_the_cwd_or_the_input_is_refused_up_front(tmp_path, converted):
    ckpt, _ = converted
    work = tmp_path / "work"
    work.mkdir()
    local = work / "in.pth.tar"
    shutil.copy(ckpt, local)
    for out, cwd in ((".", work), ("..", work / "sub"), (str(work), tmp_path)):
        (work / "sub").mkdir(exist_ok=True)
        run = run_measured(cli_command("convert", local, "-o", out, "--force", "-q"), cwd=cwd)
        assert_one_error_line(run, pattern=r"refusing to write to .*(current directory|contains the input)")
        assert run.wall_s < 20 and local.is_file() and (work / "sub").is_dir()


def test_unwritable_output_is_one_line(converted):
    ckpt, _ = converted
    run = run_measured(cli_command("convert", ckpt, "-o", "/proc/amc-tf-test/out", "-q", "--no-verify"))
    assert_one_error_line(run, pattern=r"/proc/amc-tf-test")


@pytest.fixture(scope="module")
def garbage_tflite(converted, tmp_path_factory):
    """A .tflite with a valid header (the first 64 bytes of a real one) and garbage after it,
    alone and inside an otherwise good conversion OUTDIR."""
    _, good = converted
    root = tmp_path_factory.mktemp("garbage")
    bad = root / "bad.tflite"
    head = (good / "model.tflite").read_bytes()[:64]
    assert head[4:8] == b"TFL3"
    bad.write_bytes(head + np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    outdir = root / "outdir"
    shutil.copytree(good, outdir)
    shutil.copy(bad, outdir / "model.tflite")
    images = root / "images"
    images.mkdir()
    from PIL import Image

    for i in range(2):
        Image.fromarray(np.full((40, 40, 3), 40 * i, np.uint8)).save(images / f"n0144076{i}_{i}.JPEG")
    return bad, outdir, good, images


@pytest.mark.parametrize("command", ["bench", "diff", "diff-against", "compare"])
def test_garbage_tflite_is_one_line(command, garbage_tflite, tmp_path):
    bad, outdir, good, images = garbage_tflite
    args = {
        "bench": ["bench", bad, "--logdir", tmp_path / "logs", "--repeats", "1", "--warmup", "1", "--runs", "1"],
        "diff": ["diff", outdir],
        "diff-against": ["diff", good, "--against", bad],
        "compare": ["compare", outdir, "--images", images, "--repeats", "1", "--warmup", "1", "--runs", "1", "-q"],
    }[command]
    run = run_measured(cli_command(*args))
    # bench and diff have no --quiet: their progress lines may precede the one error line
    assert_one_error_line(run, pattern=r"not a loadable \.tflite", progress=command != "compare")
    assert not list((tmp_path / "logs").glob("*")) if (tmp_path / "logs").exists() else True


@pytest.mark.parametrize("case", ["huge-dims-no-data", "no-data"])
def test_bad_onnx_initializer_is_one_line(case, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    dims = [100000, 100000, 3, 3] if case == "huge-dims-no-data" else [8, 3, 3, 3]
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=dims)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[weight])
    path = tmp_path / f"{case}.onnx"
    onnx.save(helper.make_model(graph), path)
    run = run_measured(cli_command("convert", path, "-o", tmp_path / "out", "-q"))
    assert_one_error_line(run, file=path, pattern=r"more than 67108864 elements" if case.startswith("huge")
                          else r"\(216 elements\) but no data")
    assert not (tmp_path / "out").exists()


BUG_SCRIPT = (
    "import sys, amc_tf.converters.convert as c\n"
    "def broken(*a, **k):\n"
    "    raise ZeroDivisionError('planted bug')\n"
    "c.convert = broken\n"
    "from amc_tf.cli import main\n"
    "main(sys.argv[1:], prog_name='amc-tf')\n"
)


@pytest.mark.parametrize("debug", ["none", "flag", "env"])
def test_unexpected_exception_is_a_bug_line_exit_70(debug, tmp_path):
    args = (["--debug"] if debug == "flag" else []) + ["convert", "in.pth", "-o", "out"]
    env = dict(child_env(), **({"AMC_TF_DEBUG": "1"} if debug == "env" else {}))
    run = run_measured([sys.executable, "-c", BUG_SCRIPT, *args], cwd=tmp_path, env=env)
    assert run.returncode == 70
    last = run.lines[-1]
    assert last.startswith("error: internal error (a bug in amc-tf") and "ZeroDivisionError: planted bug" in last
    assert "--debug" in last and "AMC_TF_DEBUG=1" in last
    if debug == "none":
        assert len(run.lines) == 1 and "Traceback" not in run.stderr
    else:
        assert "Traceback (most recent call last)" in run.stderr and "def broken" not in last


@pytest.mark.parametrize("command", ["profile", "diff", "eval", "parity"])
def test_every_command_reading_a_checkpoint_refuses_a_hostile_one(command, tmp_path):
    """The reader is shared: a negative-stride record is refused the same way by every command."""
    from hostile import Storages, legacy_checkpoint, state_dict_node

    sto = Storages()
    record = sto.add("0", np.arange(64, dtype=np.float32))
    record.offset, record.size, record.stride = 63, (64,), (-1,)
    ckpt = legacy_checkpoint(tmp_path / "neg.pth", state_dict_node({"conv.weight": record}), sto.data)
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(images / "n01440764_1.JPEG")
    extra = {"eval": ["--data", images, "-q"], "parity": ["--images", images]}.get(command, [])
    run = run_measured(cli_command(command, ckpt, *extra))
    # eval/parity/diff start TensorFlow, whose C++ start-up notice may precede the error line
    assert_one_error_line(run, file=ckpt, pattern=r"stride \(-1,\) is negative", progress=command != "profile")

""".tflite files and images that would make the toolkit allocate far more than they weigh:
declared tensor sizes (a 300-byte model declaring 4 GiB), shapes LiteRT computes larger than
declared, an absurd model input size, and images whose resize amplifies (a 20000x1 PNG) - each
refused (models: exit 2, one line) or skipped and named (images) through the real CLI in a
subprocess with peak RSS and time bounded; the bounds themselves checked in-process.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tflite_craft as C
from amc_tf.core import preprocess, tflite_bounds
from amc_tf.core.errors import ModelFileError
from hostile import cli_command, run_measured

MAX_RSS_MB = 700
MAX_WALL_S = 180


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Three classes of small PNGs (a 3-class model can be evaluated on them)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("imgs") / "data"
    for c, name in enumerate("abc"):
        (root / name).mkdir(parents=True)
        Image.fromarray(np.full((40, 50, 3), 60 * c, np.uint8)).save(root / name / "ok.png")
    return root


def assert_refused(run, path, pattern: str):
    errors = [line for line in run.lines if line.startswith("error:")]
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    assert "Traceback" not in run.stderr
    assert len(errors) == 1 and run.lines[-1] == errors[0], run.stderr[-2000:]
    assert errors[0].startswith(f"error: {path}: "), errors[0]
    assert re.search(pattern, errors[0]), errors[0]
    print(f"[figure] peak RSS {run.max_rss_mb:.0f} MB, {run.wall_s:.1f} s: {errors[0][:160]}")
    assert run.max_rss_mb < MAX_RSS_MB and run.wall_s < MAX_WALL_S, (run.max_rss_mb, run.wall_s)


# --- .tflite -------------------------------------------------------------------------------------

def _broadcast(shape: list[int]) -> bytes:
    """BROADCAST_TO a constant `shape`, every tensor declared [1, 1, 1, 1]: LiteRT computes the size."""
    graph = C.Graph([C.Tensor([1, 1, 1, 1], name="x"), C.Tensor([len(shape)], C.INT32, buffer=1, name="shape"),
                     C.Tensor([1, 1, 1, 1], name="y")], [0], [2], [C.Op(130, [0, 1], [2])])
    return C.model_bytes([graph], [b"", np.asarray(shape, np.int32).tobytes()], [130], {130: 2})


def _truncated() -> bytes:
    return C.mean_model(8, 8)[:200]


def _offset_out_of_file() -> bytes:
    good = bytearray(C.add_model([4, 4]))
    good[0:4] = (len(good) + 100).to_bytes(4, "little")  # the root table beyond the end
    return bytes(good)


TFLITE_CASES = {
    "one-tensor-4GiB": (lambda: C.add_model([1024, 1024, 1024]), r"declares shape \[1024, 1024, 1024\].*per tensor"),
    "int64-tensor-2GiB": (lambda: C.add_model([1 << 14, 1 << 14], C.INT64), r"declares shape .*int64"),
    "many-tensors-under-each-limit": (lambda: C.many_tensors_model(40, [1, 1024, 1024, 16]),
                                      r"declare more than .* together"),
    "broadcast-to-computed-1.5GiB": (lambda: _broadcast([1, 20000, 20000, 1]), r"once LiteRT computes its shape"),
    "truncated-flatbuffer": (_truncated, r"not a loadable \.tflite"),
    "root-offset-outside-the-file": (_offset_out_of_file, r"malformed flatbuffer"),
}


@pytest.mark.parametrize("case", list(TFLITE_CASES))
def test_tflite_declaring_too_much_is_refused_by_eval(case, tmp_path, data):
    make, pattern = TFLITE_CASES[case]
    path = tmp_path / "m.tflite"
    path.write_bytes(make())
    assert path.stat().st_size < 4096
    run = run_measured(cli_command("eval", path, "--data", data, "-q"))
    assert_refused(run, path, pattern)


def test_compare_and_diff_refuse_the_same_model_through_the_one_loader(tmp_path):
    """compare, diff and bench load every .tflite through tflite_io.load_interpreter: the check is there."""
    from amc_tf.core.tflite_io import load_interpreter

    path = tmp_path / "m.tflite"
    path.write_bytes(C.add_model([1024, 1024, 1024]))
    with pytest.raises(ModelFileError, match="refused before LiteRT allocates it"):
        load_interpreter(path)
    with pytest.raises(ModelFileError, match="refused before LiteRT allocates it"):
        load_interpreter(path.read_bytes())


def test_model_input_beyond_the_resize_bound_is_refused_before_any_image(tmp_path, data):
    path = tmp_path / "big_input.tflite"
    path.write_bytes(C.mean_model(4000, 4000))  # 192 MB of input: under the tensor limits, loadable
    assert tflite_bounds.check_model(path)["inputs"] == [[1, 4000, 4000, 3]]
    run = run_measured(cli_command("eval", path, "--data", data, "-q"))
    assert_refused(run, path, r"input is 4000x4000 \(every image resized to 4571 on its shorter side\), beyond the limit")


def test_real_models_are_far_under_the_limits(tmp_path, data):
    """A loadable crafted model evaluates; a converted MobileNet's figures are far under the bounds."""
    path = tmp_path / "m.tflite"
    path.write_bytes(C.mean_model(32, 32))
    run = run_measured(cli_command("eval", path, "--data", data, "-q", "--json"))
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["evaluated"] == 3
    figures = tflite_bounds.check_model(path)
    assert figures == {"tensors": 3, "arena_bytes": 32 * 32 * 3 * 4 + 12, "largest_bytes": 32 * 32 * 3 * 4,
                       "inputs": [[1, 32, 32, 3]]}


@settings(max_examples=150, deadline=None, derandomize=True)
@given(shape=st.lists(st.integers(0, 1 << 16), min_size=1, max_size=5),
       kind=st.sampled_from([C.FLOAT32, C.INT32, C.UINT8, C.INT64]))
def test_tflite_check_refuses_exactly_the_declared_sizes_over_the_limits(shape, kind):
    nbytes = {C.FLOAT32: 4, C.INT32: 4, C.UINT8: 1, C.INT64: 8}[kind] * int(np.prod(shape, dtype=object))
    model = C.add_model(shape, kind)
    if nbytes > tflite_bounds.MAX_TENSOR_BYTES or 2 * nbytes > tflite_bounds.MAX_ARENA_BYTES:
        with pytest.raises(ModelFileError, match="refused before LiteRT allocates"):
            tflite_bounds.check_model(model)
    else:
        assert tflite_bounds.check_model(model)["arena_bytes"] == 2 * nbytes


@settings(max_examples=200, deadline=None, derandomize=True)
@given(data=st.binary(min_size=0, max_size=400), base=st.sampled_from(["add", "mean"]), cut=st.integers(0, 500))
def test_tflite_reader_never_fails_otherwise_on_mangled_files(data, base, cut):
    """Any mangling of a real flatbuffer is read or refused with ModelFileError, nothing else."""
    good = C.add_model([4, 4]) if base == "add" else C.mean_model(8, 8)
    mangled = good[:cut] + data + good[cut + len(data):]
    try:
        tflite_bounds.check_model(mangled)
    except ModelFileError:
        pass


# --- images --------------------------------------------------------------------------------------

def _strip_png(path: Path, width: int, height: int) -> Path:
    from PIL import Image

    Image.new("L", (width, height)).save(path, optimize=True)
    return path


@pytest.fixture(scope="module")
def digits_tflite(tmp_path_factory) -> Path:
    """The digits model converted at 64x64 (10 classes), once for the module."""
    from cli_run import DIGITS

    out = tmp_path_factory.mktemp("digits") / "out"
    run = run_measured(cli_command("convert", DIGITS, "-o", out, "-q", "--input-size", "64", "--no-verify"), timeout=900)
    assert run.returncode == 0, run.stderr
    return out / "model.tflite"


@pytest.fixture(scope="module")
def strip_data(tmp_path_factory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("strip") / "data"
    for c in range(10):
        (root / str(c)).mkdir(parents=True)
        Image.fromarray(np.full((70, 90, 3), 20 * c, np.uint8)).save(root / str(c) / "a.png")
    strip = _strip_png(root / "3" / "strip.png", 20000, 1)
    assert strip.stat().st_size < 200
    _strip_png(root / "5" / "tall.png", 1, 20000)
    return root


@pytest.mark.parametrize("mode", ["pil", "tf"])
def test_resize_amplifying_images_are_skipped_and_named(mode, digits_tflite, strip_data):
    run = run_measured(cli_command("eval", digits_tflite, "--data", strip_data, "--preprocess", mode, "--json", "-q"),
                       timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert (result["images"], result["evaluated"], result["skipped"]) == (12, 10, 2)
    named = {item["file"]: item["error"] for item in result["skipped_files"]}
    assert set(named) == {str(strip_data / "3" / "strip.png"), str(strip_data / "5" / "tall.png")}
    assert named[str(strip_data / "3" / "strip.png")].startswith(
        "ImageTooLarge: 20000x1 image: aspect ratio 20000:1, over the limit of 100:1 "
        "(resizing its shorter side to 73 would give 1460000x73)")
    assert f"skipped (unreadable): {strip_data / '3' / 'strip.png'}: ImageTooLarge" in run.stderr
    print(f"[figure] eval --preprocess {mode}: peak RSS {run.max_rss_mb:.0f} MB, {run.wall_s:.1f} s")
    assert run.max_rss_mb < (MAX_RSS_MB if mode == "pil" else 1500) and run.wall_s < 600


def test_every_image_reader_applies_the_one_check(strip_data, tmp_path):
    """calibration (and compare, which reads through it), the pil crop, a raw decode and the tf
    path's header check all refuse the strip with the same ImageTooLarge."""
    from amc_tf.core import calibration
    from amc_tf.core.data import open_dataset

    prep = preprocess.Preprocessing.for_input_size(224)
    strip = strip_data / "3" / "strip.png"
    for call in (lambda: preprocess.pil_load_crop(strip, prep), lambda: preprocess.pil_open(strip, prep),
                 lambda: preprocess.check_image(strip.read_bytes(), prep), lambda: preprocess.check_image(str(strip), prep)):
        with pytest.raises(preprocess.ImageTooLarge, match="aspect ratio 20000:1"):
            call()
    from PIL import Image

    with pytest.raises(preprocess.ImageTooLarge):
        preprocess.pil_crop(Image.new("RGB", (5000, 10)), prep)  # an in-memory image, before its resize
    dataset = open_dataset(strip_data)
    images, indices = calibration.load(dataset, prep)
    assert len(images) == 10 and dataset.files.index(str(strip)) not in indices.tolist()


@settings(max_examples=300, deadline=None, derandomize=True)
@given(w=st.integers(1, 1 << 20), h=st.integers(1, 1 << 20), size=st.sampled_from([32, 64, 224, 512, 1024]))
def test_check_resize_bounds_the_resized_image(w, h, size):
    prep = preprocess.Preprocessing.for_input_size(size)
    ratio = max(w, h) / min(w, h)
    new_h, new_w = preprocess.resized_shape(h, w, prep.resize_size)
    if (w * h > preprocess.MAX_DECODED_PIXELS or ratio > preprocess.MAX_ASPECT_RATIO
            or new_h * new_w > preprocess.MAX_RESIZED_PIXELS):
        with pytest.raises(preprocess.ImageTooLarge):
            preprocess.check_resize(w, h, prep)
    else:
        assert preprocess.check_resize(w, h, prep) == (new_h, new_w)
        assert new_h * new_w <= preprocess.MAX_RESIZED_PIXELS


def test_image_with_too_many_pixels_to_decode_is_refused_from_its_header(tmp_path):
    """8,000 x 8,000 (64M pixels, under PIL's own limit of 179M) is 192 MB decoded per image and
    thread: refused from its 60 KB header, before decoding."""
    path = _strip_png(tmp_path / "big.png", 8000, 8000)
    assert path.stat().st_size < 200_000
    prep = preprocess.Preprocessing.for_input_size(224)
    with pytest.raises(preprocess.ImageTooLarge, match="64,000,000 pixels to decode"):
        preprocess.check_image(str(path), prep)
    with pytest.raises(preprocess.ImageTooLarge, match="64,000,000 pixels to decode"):
        preprocess.pil_load_crop(path, prep)


def test_input_size_and_batch_bounds():
    assert preprocess.Preprocessing.for_input_size(1024).resize_size == 1170
    with pytest.raises(preprocess.InputSizeError, match="4000x4000"):
        preprocess.Preprocessing.for_input_size(4000)
    with pytest.raises(preprocess.InputSizeError):
        preprocess.Preprocessing.for_input_size(0)
    assert preprocess.batch_limit(50, 224) == 50
    assert preprocess.batch_limit(50, 1024) == 16
    assert preprocess.batch_limit(1, 1024) == 1

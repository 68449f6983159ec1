"""`amc-tf eval` and `amc-tf parity` end to end: the committed digits model (real accuracy),
a tiny 1000-class model on ImageNet layouts and TFRecords, errors and exit codes."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from eval_helpers import DIGITS_CKPT, SAMPLE, cli, digits_recipe, jpeg_bytes, tiny_spec, write_tfrecords

from amc_tf.core.data import imagenet_wnids


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """(held-out ImageFolder, OUTDIR converted with --with-preprocessing)."""
    root = tmp_path_factory.mktemp("digits")
    folder = digits_recipe().write_image_folder(root / "held_out")
    out = root / "out"
    result = cli("convert", DIGITS_CKPT, "-o", out, "--input-size", 64, "--with-preprocessing", "-q")
    assert result.exit_code == 0, result.output
    return folder, out


def eval_json(*args):
    result = cli("eval", *args, "--json", "-q")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_digits_checkpoint_is_small_and_recipe_committed():
    assert DIGITS_CKPT.stat().st_size < 2_000_000
    recipe = json.loads((DIGITS_CKPT.parent / "split.json").read_text())
    assert recipe["split"]["held_out_indices"] == digits_recipe().split()[1].tolist()


def test_digits_top1_identical_across_torch_tf_tflite(digits, tmp_path):
    folder, out = digits
    runs = {
        "torch": eval_json(DIGITS_CKPT, "--data", folder, "--input-size", 64, "--save-logits", tmp_path / "torch.npy"),
        "tf": eval_json(out, "--backend", "tf", "--data", folder, "--save-logits", tmp_path / "tf.npy"),
        "tflite": eval_json(out / "model.tflite", "--data", folder, "--save-logits", tmp_path / "tflite.npy"),
    }
    for name, r in runs.items():
        assert r["backend"] == name and r["images"] == 360 and r["evaluated"] == 360 and r["skipped"] == 0
        assert r["data"]["layout"] == "imagefolder"
    top1 = {name: r["correct_top1"] for name, r in runs.items()}
    assert len(set(top1.values())) == 1, top1
    assert runs["torch"]["top1"] > 0.9  # chance is 0.1
    assert runs["torch"]["top5"] >= runs["torch"]["top1"]
    logits = {n: np.load(tmp_path / f"{n}.npy") for n in runs}
    assert logits["torch"].shape == (360, 10)
    np.testing.assert_allclose(logits["tf"], logits["torch"], atol=1e-4)
    np.testing.assert_allclose(logits["tflite"], logits["torch"], atol=1e-4)
    # saved in dataset order: sorted class folders, sorted file names
    labels = np.repeat(np.arange(10), [len(list((folder / str(c)).iterdir())) for c in range(10)])
    assert int((logits["torch"].argmax(1) == labels).sum()) == top1["torch"]


def test_digits_with_preprocessing_models(digits):
    folder, out = digits
    float_tflite = eval_json(out / "model.tflite", "--data", folder)
    uint8_tflite = eval_json(out / "with_preprocessing" / "model.tflite", "--data", folder)
    assert uint8_tflite["model_input"] == "uint8"
    assert uint8_tflite["correct_top1"] == float_tflite["correct_top1"]
    tf_path = eval_json(out, "--data", folder, "--preprocess", "tf")
    in_graph = eval_json(out / "with_preprocessing" / "saved_model", "--data", folder, "--preprocess", "tf")
    assert in_graph["model_input"] == "raw"
    assert in_graph["correct_top1"] == tf_path["correct_top1"] and in_graph["top1"] > 0.9


def test_parity_gate_on_digits(digits):
    folder, out = digits
    result = cli("parity", out, "--images", folder, "--n", 40, "--json", "-q")
    assert result.exit_code == 0, result.output
    rep = json.loads(result.stdout)
    assert rep["backends"] == ["torch", "tf", "tflite", "tflite_uint8", "saved_model_uint8"]
    assert rep["n"] == 40 and rep["passed"]
    for name, fig in rep["pairs"].items():
        assert fig["max_abs_diff"] < 1e-4 and fig["top1_agreement"] == 1.0 and fig["min_cosine"] > 0.99999, name
    strict = cli("parity", out, "--images", folder, "--n", 10, "--max-diff", 0, "-q")
    assert strict.exit_code == 1
    assert "FAILED" in strict.stdout and strict.stderr.startswith("error: torch_vs_tf: max |diff|")


@pytest.fixture(scope="module")
def imagenet_model(tmp_path_factory):
    """A tiny random-weight 1000-class MobileNetV1 (32x32): checkpoint and its OUTDIR."""
    from amc_tf.core import torch_models

    root = tmp_path_factory.mktemp("tiny")
    ckpt = root / "tiny.pth.tar"
    torch_models.save(torch_models.randomize(torch_models.build(tiny_spec(), "amc"), 3), ckpt)
    result = cli("convert", ckpt, "-o", root / "out", "--input-size", 32, "--no-verify", "-q")
    assert result.exit_code == 0, result.output
    return ckpt, root / "out"


def test_tfrecords_score_like_the_same_images_in_a_folder(imagenet_model, tmp_path):
    _, out = imagenet_model
    wnids = imagenet_wnids()
    items = [(jpeg_bytes(i), 1 + i * 83) for i in range(12)]  # increasing: flat order = record order
    write_tfrecords(tmp_path / "rec", items, shards=3)
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, (data, label) in enumerate(items):
        (flat / f"{wnids[label - 1]}_{i:03d}.JPEG").write_bytes(data)
    tflite = out / "model.tflite"
    rec = eval_json(tflite, "--data", tmp_path / "rec", "--save-logits", tmp_path / "rec.npy", "--batch-size", 5)
    fl = eval_json(tflite, "--data", flat, "--save-logits", tmp_path / "flat.npy")
    assert rec["data"]["layout"] == "tfrecord" and rec["labels_offset"] == 1 and rec["images"] == 12
    np.testing.assert_array_equal(np.load(tmp_path / "rec.npy"), np.load(tmp_path / "flat.npy"))
    # the model's own top-5 classes as labels: top-5 must then be 100%, top-1 matches argmax
    logits = np.load(tmp_path / "flat.npy")
    items = [(d, int(logits[i].argmax()) + 1) for i, (d, _) in enumerate(items)]
    items[-1] = (b"corrupt", items[-1][1])  # the last record unreadable: still counted
    write_tfrecords(tmp_path / "rec2", items, shards=1)
    r2 = eval_json(tflite, "--data", tmp_path / "rec2", "--save-logits", tmp_path / "rec2.npy")
    assert (r2["images"], r2["evaluated"], r2["skipped"]) == (12, 11, 1)
    assert r2["top1"] == 1.0 and r2["top5"] == 1.0
    assert np.isnan(np.load(tmp_path / "rec2.npy")[11]).all()
    assert fl["correct_top1"] == rec["correct_top1"]


def test_unreadable_images_are_counted_and_skipped_or_fail_with_strict(imagenet_model, tmp_path):
    ckpt, out = imagenet_model
    wnids = imagenet_wnids()
    for i in range(5):
        (tmp_path / f"{wnids[i]}_{i}.JPEG").write_bytes(jpeg_bytes(i))
    (tmp_path / f"{wnids[2]}_2.JPEG").write_bytes(b"not a jpeg at all")
    (tmp_path / f"{wnids[4]}_4.JPEG").write_bytes(jpeg_bytes(4)[:300])  # truncated
    for mode in ("pil", "tf"):
        r = eval_json(out / "model.tflite", "--data", tmp_path, "--preprocess", mode,
                      "--save-logits", tmp_path / f"{mode}.npy", "--batch-size", 2)
        assert (r["images"], r["evaluated"], r["skipped"]) == (5, 3, 2), mode
        assert [f["file"] for f in r["skipped_files"]] == [str(tmp_path / f"{wnids[i]}_{i}.JPEG") for i in (2, 4)]
        logits = np.load(tmp_path / f"{mode}.npy")
        assert np.isnan(logits[[2, 4]]).all() and np.isfinite(logits[[0, 1, 3]]).all()
    torch_run = eval_json(ckpt, "--data", tmp_path, "--input-size", 32, "--save-logits", tmp_path / "t.npy")
    assert torch_run["skipped"] == 2
    np.testing.assert_allclose(np.load(tmp_path / "t.npy")[[0, 1, 3]], np.load(tmp_path / "pil.npy")[[0, 1, 3]], atol=1e-4)
    strict = cli("eval", out / "model.tflite", "--data", tmp_path, "--strict", "-q")
    assert strict.exit_code == 2 and strict.stderr.startswith("error: unreadable image"), strict.output
    assert f"{wnids[2]}_2.JPEG" in strict.stderr and "function_node" not in strict.stderr
    for mode in ("pil", "tf"):  # the first unreadable file is named, whichever pipeline read it
        strict = cli("eval", out / "model.tflite", "--data", tmp_path, "--strict", "-q", "--preprocess", mode)
        assert strict.stderr.count("\n") == 1 and f"{wnids[2]}_2.JPEG" in strict.stderr, strict.stderr


def test_eval_prints_progress_and_a_summary(imagenet_model, tmp_path):
    _, out = imagenet_model
    for i in range(4):
        (tmp_path / f"{imagenet_wnids()[i]}_{i}.JPEG").write_bytes(jpeg_bytes(i))
    result = cli("eval", out / "model.tflite", "--data", tmp_path, "--limit", 3)
    assert result.exit_code == 0, result.output
    assert re.search(r"3/3 images\s+[\d.]+ img/s\s+top-1\s+[\d.]+%\s+top-5", result.stderr)
    assert re.search(r"top-1 [\d.]+% \(\d/3\)", result.stdout)


@pytest.mark.parametrize("case", ["empty-folder", "class-mismatch", "unknown-wnid", "torch-backend-on-tflite",
                                  "logits-exist"])
def test_eval_errors_are_one_line_exit_2(case, imagenet_model, digits, tmp_path):
    ckpt, out = imagenet_model
    folder, _ = digits
    data, model, extra = tmp_path / "data", out / "model.tflite", []
    data.mkdir()
    (data / f"{imagenet_wnids()[0]}_0.JPEG").write_bytes(jpeg_bytes(0))
    message = {
        "empty-folder": "no images",
        "class-mismatch": "the model has 1000 classes but .* has 10",
        "unknown-wnid": "unknown ImageNet wnid 'n00000001'",
        "torch-backend-on-tflite": "is a tflite model; --backend torch cannot run it",
        "logits-exist": "exists; pass --force",
    }[case]
    if case == "empty-folder":
        (data / f"{imagenet_wnids()[0]}_0.JPEG").unlink()
    elif case == "class-mismatch":
        data = folder
    elif case == "unknown-wnid":
        (data / "n00000001_x.JPEG").write_bytes(jpeg_bytes(1))
    elif case == "torch-backend-on-tflite":
        extra = ["--backend", "torch"]
    else:
        (tmp_path / "l.npy").write_bytes(b"x")
        extra = ["--save-logits", tmp_path / "l.npy"]
    result = cli("eval", model, "--data", data, "-q", *extra)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), lines


@pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"needs the ImageNet sample at {SAMPLE}")
def test_parity_from_checkpoint_on_imagenet_sample(imagenet_model):
    ckpt, _ = imagenet_model
    result = cli("parity", ckpt, "--images", SAMPLE, "--n", 12, "--input-size", 32, "--json", "-q")
    assert result.exit_code == 0, result.output
    rep = json.loads(result.stdout)
    assert rep["passed"] and len(rep["pairs"]) == 7 and rep["n"] == 12

"""Dataset layouts, label mapping and their errors."""

from __future__ import annotations

import numpy as np
import pytest
from eval_helpers import SAMPLE, jpeg_bytes, write_tfrecords

from amc_tf.core.data import DataError, imagenet_wnids, open_dataset

WNIDS = imagenet_wnids()


def test_shipped_wnids_are_the_1000_sorted_unique_imagenet_classes():
    assert len(WNIDS) == 1000 and len(set(WNIDS)) == 1000 and list(WNIDS) == sorted(WNIDS)
    assert WNIDS[0] == "n01440764" and WNIDS[-1] == "n15075141"


@pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"needs the ImageNet sample at {SAMPLE}")
def test_flat_sample_folder_labels_from_wnid_prefixes():
    ds = open_dataset(SAMPLE)
    assert ds.layout == "flat" and len(ds.files) == 100
    assert [WNIDS[i] for i in ds.labels] == [p.rsplit("/", 1)[1].split("_")[0] for p in ds.files]


def _write(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes(seed))


def test_imagefolder_sorted_classes_and_imagenet_subset(tmp_path):
    for wnid, n in ((WNIDS[7], 2), (WNIDS[3], 1), (WNIDS[500], 1)):
        for i in range(n):
            _write(tmp_path / wnid / f"img{i}.JPEG", i)
    ds = open_dataset(tmp_path)
    assert ds.layout == "imagefolder" and ds.classes == (WNIDS[3], WNIDS[7], WNIDS[500])
    assert ds.labels.tolist() == [0, 1, 1, 2]
    assert ds.model_labels(1000)[0].tolist() == [3, 7, 7, 500]  # a 1000-way model: ImageNet indices
    assert ds.model_labels(1001)[0].tolist() == [4, 8, 8, 501]  # background class first
    assert ds.model_labels(3)[0].tolist() == [0, 1, 1, 2]  # a 3-way model: folder order, as torchvision
    with pytest.raises(DataError, match="model has 10 classes but .* has 3"):
        ds.model_labels(10)


def test_imagefolder_of_unknown_wnids_scores_a_model_of_its_own_classes_only(tmp_path):
    _write(tmp_path / "n99999998" / "a.JPEG")
    _write(tmp_path / WNIDS[5] / "b.JPEG")
    ds = open_dataset(tmp_path)
    assert ds.model_labels(2)[0].tolist() == [0, 1]
    with pytest.raises(DataError, match="unknown ImageNet wnid 'n99999998'"):
        ds.model_labels(1000)


def test_flat_folder_and_unknown_wnid(tmp_path):
    _write(tmp_path / f"{WNIDS[1]}_a.JPEG")
    _write(tmp_path / f"{WNIDS[0]}_b.png")
    ds = open_dataset(tmp_path)
    assert [f.rsplit("/", 1)[1] for f in ds.files] == [f"{WNIDS[0]}_b.png", f"{WNIDS[1]}_a.JPEG"]
    assert ds.labels.tolist() == [0, 1]
    _write(tmp_path / "n99999999_c.JPEG")
    with pytest.raises(DataError, match="unknown ImageNet wnid 'n99999999'"):
        open_dataset(tmp_path)


def test_imagenet_val_with_kaggle_csv(tmp_path):
    val = tmp_path / "val"
    for i in (1, 2, 3):
        _write(val / f"ILSVRC2012_val_{i:08d}.JPEG", i)
    (tmp_path / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n"
        f"ILSVRC2012_val_00000002,{WNIDS[9]} 1 2 3 4\n"
        f"ILSVRC2012_val_00000001,{WNIDS[42]} 5 6 7 8 {WNIDS[42]} 1 1 2 2\n"
        f"ILSVRC2012_val_00000003,{WNIDS[999]} 0 0 9 9\n")
    ds = open_dataset(val)
    assert ds.layout == "imagenet-val" and ds.labels.tolist() == [42, 9, 999]


def test_imagenet_val_with_devkit_txt_and_meta(tmp_path):
    from scipy.io import savemat

    # ILSVRC2012_IDs are NOT sorted-wnid order: give them a shuffled order, plus non-leaf synsets
    order = np.random.default_rng(0).permutation(1000)
    rec = np.zeros(1003, dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("num_children", "O")])
    for k, w in enumerate(order):
        rec[k] = (k + 1, WNIDS[w], 0)
    for k in range(1000, 1003):
        rec[k] = (k + 1, f"n0000000{k - 1000}", 5)
    devkit = tmp_path / "devkit"
    devkit.mkdir()
    savemat(devkit / "meta.mat", {"synsets": rec})
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("5\n1\n")
    val = tmp_path / "val"
    for i in (1, 2):
        _write(val / f"ILSVRC2012_val_{i:08d}.JPEG", i)
    ds = open_dataset(val, str(devkit / "ILSVRC2012_validation_ground_truth.txt"))
    assert ds.labels.tolist() == [int(order[4]), int(order[0])]


def test_imagenet_val_without_ground_truth_is_an_error(tmp_path):
    _write(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(DataError, match="no LOC_val_solution.csv or ILSVRC2012_validation_ground_truth.txt"):
        open_dataset(tmp_path / "val")


def test_tfrecords_detected_and_offsets(tmp_path):
    write_tfrecords(tmp_path, [(jpeg_bytes(i), i + 1) for i in range(3)])
    ds = open_dataset(tmp_path)
    assert ds.layout == "tfrecord" and len(ds.records) == 2
    assert ds.model_labels(1000) == (None, 1) and ds.model_labels(1001) == (None, 0)
    with pytest.raises(DataError, match="the model has 10 classes"):
        ds.model_labels(10)


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "no images"),
    (lambda p: (p / "a").mkdir(), "1 class folders but no images"),
    (lambda p: (p / "notes.txt").write_text("x"), "no images"),
])
def test_empty_folders_are_clear_errors(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(DataError, match=message):
        open_dataset(tmp_path)

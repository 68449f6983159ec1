"""One rule for unreadable images in every command that reads a folder (eval, parity, compare,
diff, convert's int8 calibration): each is named on stderr and in --json, and the counts are
exact (an unreadable image is never counted as measured)."""

from __future__ import annotations

import json

import pytest

from cli_run import DIGITS, run

GOOD = 10


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    import numpy as np
    from PIL import Image

    work = tmp_path_factory.mktemp("skipped")
    rng = np.random.default_rng(0)
    for c in range(GOOD):
        (work / "images" / str(c)).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(work / "images" / str(c) / "a.png")
    (work / "images" / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    proc = run("convert", DIGITS, "-o", work / "out", "--input-size", "64", "--no-verify", "-q")
    assert proc.returncode == 0, proc.stderr
    return work


def _named_once(proc, work):
    bad = str(work / "images" / "3" / "broken.png")
    lines = [line for line in proc.stderr.splitlines() if "skipped (unreadable)" in line]
    assert len(lines) == 1 and lines[0].startswith(f"amc-tf: skipped (unreadable): {bad}: "), proc.stderr
    return bad


def _json(proc):
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_compare_measures_only_readable_images_and_names_the_rest(work):
    proc = run("compare", work / "out", "--images", work / "images", "--no-latency", "--json", "-q")
    data = _json(proc)
    bad = _named_once(proc, work)
    assert data["images"]["measured"] == GOOD and data["images"]["skipped"] == 1
    assert [item["file"] for item in data["images"]["skipped_files"]] == [bad]
    text = run("compare", work / "out", "--images", work / "images", "--no-latency", "-q")
    assert f"{GOOD} images from {work / 'images'} (1 unreadable, skipped)" in text.stdout


def test_eval_parity_and_diff_name_it_and_count_exactly(work):
    proc = run("eval", work / "out", "--images", work / "images", "--json", "-q")
    data = _json(proc)
    bad = _named_once(proc, work)
    assert (data["images"], data["evaluated"], data["skipped"]) == (GOOD + 1, GOOD, 1)
    assert [item["file"] for item in data["skipped_files"]] == [bad]

    proc = run("parity", work / "out", "--images", work / "images", "--json", "-q")
    data = _json(proc)
    _named_once(proc, work)
    assert data["n"] == GOOD and data["skipped"] == 1 and data["skipped_files"][0]["file"] == bad

    proc = run("diff", work / "out", "--images", work / "images", "--limit", "20", "--json", "-q")
    data = _json(proc)
    _named_once(proc, work)
    assert data["inputs"]["count"] == GOOD and data["inputs"]["skipped"] == 1
    assert data["inputs"]["skipped_files"][0]["file"] == bad


def test_int8_calibration_names_it(work, tmp_path):
    proc = run("convert", DIGITS, "-o", tmp_path / "int8", "--input-size", "64", "--quantize", "int8",
               "--images", work / "images", "--calibration-size", GOOD + 1, "--no-verify", "--json", "-q")
    report = _json(proc)
    bad = _named_once(proc, work)
    cal = report["quantization"]["calibration"]
    assert cal["images"] == GOOD and cal["unreadable"] == 1 and [i["file"] for i in cal["skipped_files"]] == [bad]

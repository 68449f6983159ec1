"""`amc-tf study` on the embedded pool: the trained digits model, a random MobileNetV1 and a
file that is not a checkpoint, in fp32 and int8, each model's evaluation sharded into chunks.
Figures are checked against `amc-tf eval` and `amc-tf profile` image for image; the cache,
resume after SIGKILL and bad input as real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from ray_cluster import descendants
from study_helpers import AMC_TF, env, make_inputs, records, study, top1_classes

ARGS = ("--input-size", "64", "--chunk-size", "15", "--workers", "2", "-q")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("study-inputs"))


@pytest.fixture(scope="module")
def first(inputs, tmp_path_factory):
    """One study (fp32 + int8, local latency), run once for the module: (studydir, process, seconds)."""
    models, images = inputs
    out = tmp_path_factory.mktemp("study") / "s"
    code = ("import sys, runpy; sys.argv = ['amc-tf', *sys.argv[1:]]\n"
            "try:\n    runpy.run_module('amc_tf', run_name='__main__')\n"
            "finally:\n    print('ray imported:', 'ray' in sys.modules, file=sys.stderr)\n")
    t0 = time.monotonic()
    proc = subprocess.run([AMC_TF[0], "-c", code, "study", models, "--images", images, "--precision", "fp32,int8",
                           "--calibration-size", "20", "--latency", "local", "-o", out, *ARGS],
                          capture_output=True, text=True, timeout=900, env=env())
    return out, proc, time.monotonic() - t0


def test_a_broken_file_fails_its_records_only_and_the_table_is_written(first):
    out, proc, _ = first
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: 2 of 6 records failed (see {out}/study.json); the others are in the table"]
    assert "Traceback" not in proc.stderr
    recs = records(out)
    for precision in ("fp32", "int8"):
        bad = recs[("notes", precision)]
        assert bad["status"] == "failed" and "notes.pth: not a PyTorch checkpoint" in bad["error"]
        assert "\n" not in bad["error"] and "/tmp/amc-tf-study-" not in bad["error"]  # the user's path, one line
    assert sorted(k for k, r in recs.items() if r["status"] == "ok") == [
        ("digits", "fp32"), ("digits", "int8"), ("tiny", "fp32"), ("tiny", "int8")]
    table = (out / "table.md").read_text().splitlines()
    assert table[0] == "| Models | Precision | Top1 Acc (%) | Top5 Acc (%) | Latency (ms) | MACs (M) | Size (MB) |"
    assert len([line for line in table if line.startswith("| digits") or line.startswith("| tiny")]) == 4
    assert (out / "table.csv").read_text().splitlines()[0].startswith("Models,Precision,Top1 Acc (%)")
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "models" / "digits" / "int8" / "model.tflite").is_file()
    assert (out / "models" / "digits" / "int8" / "model_fp32.tflite").is_file()


def test_the_embedded_study_never_imports_ray(first):
    assert "ray imported: False" in first[1].stderr


def test_figures_match_eval_and_profile_image_for_image(first, inputs):
    out, _, _ = first
    models, images = inputs
    recs = records(out)
    data = json.loads((out / "study.json").read_text())
    assert data["notes"] == ["20 calibration image(s) of --images left out"]
    calibration = {line.split()[1] for line in (out / "models/digits/int8/calibration.txt").read_text().splitlines()}
    assert len(calibration) == 20
    measured = sorted(str(p.relative_to(images)) for p in images.rglob("*.png") if str(p.relative_to(images))
                      not in calibration)
    assert len(measured) == 60
    folder = out.parent / "measured"  # the measured images alone, for `amc-tf eval`
    for rel in measured:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).symlink_to(images / rel)
    for name in ("digits", "tiny"):
        prof = json.loads(subprocess.run([*AMC_TF, "profile", models / f"{name}.pth.tar", "--input-size", "64",
                                          "--json"], capture_output=True, text=True, env=env(), check=True).stdout)
        for precision in ("fp32", "int8"):
            r = recs[(name, precision)]
            assert (r["macs"], r["params"]) == (prof["macs"], prof["params"])
            logits = out.parent / f"{name}-{precision}.npy"
            ev = json.loads(subprocess.run(
                [*AMC_TF, "eval", out / r["artifacts"] / "model.tflite", "--data", folder, "--json", "-q",
                 "--save-logits", logits], capture_output=True, text=True, env=env(), check=True).stdout)
            assert (r["images"], r["correct_top1"], r["correct_top5"]) == (60, ev["correct_top1"], ev["correct_top5"])
            assert r["top1"] == ev["top1"] and r["top5"] == ev["top5"]
            np.testing.assert_array_equal(top1_classes(out, name, precision), np.load(logits).argmax(1))
            assert r["size_bytes"] == (out / r["artifacts"] / "model.tflite").stat().st_size
            assert r["parity"]["passed"] is True and r["parity"]["reference"] == "torch"
            assert r["latency_ms"] > 0 and r["latency_source"] == "local"
            assert len(list((out / r["artifacts"] / "latency").glob("*_run*.txt"))) == 3
    digits = recs[("digits", "fp32")]
    assert digits["top1"] >= 0.9  # the trained model, really evaluated
    a, b = top1_classes(out, "digits", "int8"), top1_classes(out, "digits", "fp32")
    assert recs[("digits", "int8")]["agreement"] == np.mean(a == b)
    assert digits["agreement"] == 1.0


def test_a_finished_study_rerun_recomputes_nothing(first, inputs):
    out, _, first_s = first
    models, images = inputs
    t0 = time.monotonic()
    proc = study(models, "--images", images, "--precision", "fp32,int8", "--calibration-size", "20", "--latency",
                 "local", "-o", out, *ARGS)
    again_s = time.monotonic() - t0
    assert proc.returncode == 1
    data = json.loads((out / "study.json").read_text())
    assert data["study"]["cached_tasks"] == data["study"]["tasks"] > 0
    assert all(r["cached"] for r in data["records"])
    assert again_s <= 0.25 * first_s, (again_s, first_s)


def test_a_study_killed_with_sigkill_resumes_and_counts_nothing_half_written(first, inputs, tmp_path):
    ref, _, _ = first
    models, images = inputs
    out = tmp_path / "s"
    args = (models / "tiny.pth.tar", "--images", images, "--chunk-size", "5", "--workers",
            "2", "--input-size", "64", "-q", "-o", out)
    proc = subprocess.Popen([*AMC_TF, "study", *map(str, args)], env=env(), stderr=subprocess.PIPE, text=True)
    cache = out / ".study" / "cache"
    deadline = time.monotonic() + 600
    while len(list(cache.glob("*.json"))) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = descendants(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(cache.glob("*.json")))
    assert proc.returncode == -signal.SIGKILL and 3 <= done_before < 1 + 16, done_before
    deadline = time.monotonic() + 30  # the workers die with the study (PR_SET_PDEATHSIG)
    while any(Path(f"/proc/{p}").exists() and "Z" not in Path(f"/proc/{p}/stat").read_text().split()[2]
              for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in workers if Path(f"/proc/{p}").exists()
                and Path(f"/proc/{p}/stat").read_text().split()[2] != "Z"]
    assert not (out / "study.json").exists()
    again = study(*args)
    assert again.returncode == 0, again.stderr
    data = json.loads((out / "study.json").read_text())
    assert data["study"]["cached_tasks"] == done_before  # every finished task kept, none redone
    resumed = records(out)
    for name in ("tiny",):  # 16 chunks merged: the figures of one `amc-tf eval`, image by image
        logits = tmp_path / f"{name}.npy"
        ev = json.loads(subprocess.run([*AMC_TF, "eval", out / f"models/{name}/fp32/model.tflite", "--data", images,
                                        "--json", "-q", "--save-logits", logits],
                                       capture_output=True, text=True, env=env(), check=True).stdout)
        r = resumed[(name, "fp32")]
        assert (r["images"], r["correct_top1"], r["correct_top5"]) == (80, ev["correct_top1"], ev["correct_top5"])
        np.testing.assert_array_equal(top1_classes(out, name, "fp32"), np.load(logits).argmax(1))


def test_an_unreachable_ray_address_is_one_line_and_exit_2_within_30_s(inputs, tmp_path):
    models, images = inputs
    t0 = time.monotonic()
    proc = study(models / "tiny.pth.tar", "--images", images, "--ray-address", "127.0.0.1:9", "-o", tmp_path / "s",
                 timeout=60)
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 2
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [
        "error: --ray-address 127.0.0.1:9: cannot reach the Ray head (Connection refused)"]
    assert not (tmp_path / "s").exists()


def test_bad_study_input_is_refused_before_any_work(inputs, tmp_path):
    models, images = inputs
    cases = [
        ((tmp_path,), "no checkpoints"),
        ((models, "--precision", "fp64"), "--precision 'fp64'"),
        ((models, "--latency", "gpu"), "--latency 'gpu'"),
        ((models, "--latency", "adb:A"), "--benchmark-binary"),
    ]
    (tmp_path / "list.toml").write_text('[[model]]\npath = "nowhere.pth"\n')
    cases.append(((tmp_path / "list.toml",), "nowhere.pth: no such file"))
    (tmp_path / "dup.toml").write_text(f'[[model]]\npath = "{models}/tiny.pth.tar"\nname = "a"\n'
                                       f'[[model]]\npath = "{models}/digits.pth.tar"\nname = "a"\n')
    cases.append(((tmp_path / "dup.toml",), "two models are named a"))
    for args, says in cases:
        proc = study(*args, "-o", tmp_path / "out")
        assert proc.returncode == 2, (args, proc.stderr)
        (line,) = [x for x in proc.stderr.splitlines() if x.strip()]
        assert line.startswith("error: ") and says in line, line
        assert not (tmp_path / "out").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "mine.txt").write_text("keep")
    proc = study(models / "tiny.pth.tar", "-o", tmp_path / "other")
    assert proc.returncode == 2 and "not a study folder; pass --force" in proc.stderr
    assert os.listdir(tmp_path / "other") == ["mine.txt"]


def test_latency_predicted_by_a_lut_is_the_luts_prediction(first, inputs, tmp_path):
    """Last in this module: it rewrites the first study's study.json (its tasks all cached)."""
    from test_latency_lut import synthetic_lut

    from amc_tf.benchmarks.latency_lut import load_lut
    from amc_tf.core.netspec import NetSpec

    out, _, _ = first
    models, images = inputs
    lut_path = tmp_path / "lut.json"
    synthetic_lut(input_size=64).save(lut_path)
    proc = study(models, "--images", images, "--precision", "fp32,int8", "--calibration-size", "20", "--latency",
                 f"lut:{lut_path}", "-o", out, *ARGS)
    assert proc.returncode == 1  # notes.pth, as before
    data = json.loads((out / "study.json").read_text())
    assert data["study"]["backend_start_s"] is None  # conversions and chunks cached, the LUT read here
    lut = load_lut(lut_path)
    for (name, precision), r in records(out).items():
        if r["status"] != "ok":
            continue
        spec = NetSpec.from_dict(json.loads((out / r["artifacts"] / "report.json").read_text())["network"])
        assert r["latency_ms"] == lut.predict(spec) > 0
        assert r["latency_source"] == f"lut:{lut_path}" and "predicted by the LUT" in r["sources"]["latency_ms"]

"""The latency LUT: interpolation against hand-computed values, file round trip, refusal of a
LUT from another target, per-layer predictions covering every layer of every AMC profile,
resuming an interrupted build, and a tiny real build timed through LiteRT.

No test asserts a real timing figure: accuracy is measured by benchmarks/perf/perf_latency_lut.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from amc_tf.core.flops import layer_table
from amc_tf.core.netspec import V1, V2
from amc_tf.core.profiles import PROFILE_NAMES, profile_spec
from amc_tf.benchmarks.latency_build import build_lut, grid_plan
from amc_tf.benchmarks.latency_lut import ALIGN_PERIOD, LatencyLut, Table, align_factor, layer_plan, load_lut, predict
from amc_tf.benchmarks.latency_timers import LocalTimer

AMC_TF = Path(sys.executable).with_name("amc-tf")
MAC_US = 1e-3  # synthetic LUT: 1 us per 1000 MACs


def test_bilinear_interpolation_hand_computed():
    t = Table("pointwise", 28, [16.0, 32.0], [64.0, 128.0], [[10.0, 20.0], [30.0, 60.0]])
    assert t(16, 64) == 10.0 and t(32, 128) == 60.0
    # (24, 96): halfway on both axes: rows give 15 and 45, then 30
    assert t(24, 96) == pytest.approx(30.0)
    # (20, 80): t = 0.25 along cin, u = 0.25 along cout: rows 12.5 and 37.5 -> 12.5 + 0.25 * 25
    assert t(20, 80) == pytest.approx(18.75)
    # past the grid: linear extrapolation of the last segment; (48, 128): 60 + (60 - 20) = 100
    assert t(48, 128) == pytest.approx(100.0)
    # never negative: (1, 1) extrapolates below zero and is clamped
    assert t(1, 1) == 0.0


def test_one_axis_table_and_alignment_hand_computed():
    dw = Table("depthwise_s1", 14, [64.0, 128.0, 256.0], [0.0], [[4.0], [6.0], [12.0]])
    assert dw(96) == pytest.approx(5.0)
    assert dw(192) == pytest.approx(9.0)
    ratios = [1.0] + [1.25] * 16 + [1.0] * (ALIGN_PERIOD - 17)
    assert align_factor(ratios, 48) == 1.0  # below one period: the dense grid speaks for itself
    assert align_factor(ratios, 130) == 1.25 and align_factor(ratios, 144) == 1.25
    assert align_factor(ratios, 150) == 1.0 and align_factor(ratios, 192) == 1.0
    dw.align = ratios
    assert dw(130) == pytest.approx((6.0 + 2 / 128 * 6.0) * 1.25)
    assert dw(160) == pytest.approx(7.5)
    pw = Table("pointwise", 7, [64.0, 128.0], [64.0, 128.0], [[1.0, 2.0], [2.0, 4.0]], align=ratios)
    assert pw(65, 96) == pytest.approx(1.5 + 1 / 64 * 1.5)  # cin is not the aligned axis of a 1x1 conv
    assert pw(96, 72) == pytest.approx((1.5 + 8 / 64 * 1.5) * 1.25)


def synthetic_lut(families=(V1, V2), input_size=224, fingerprint=None) -> LatencyLut:
    """A LUT whose every table is MACs * MAC_US at its grid points: bilinear interpolation
    reproduces it exactly between points, so a network's prediction is its MACs * MAC_US."""
    plan = grid_plan(list(families), input_size)
    tables = {}
    for name, t in plan.items():
        kind, res = t["kind"], t["res"]
        out = res // 2 if kind.endswith("_s2") else res

        def macs(ci, co):
            if kind == "head":
                return ci * co
            if kind.startswith("depthwise"):
                return 9 * ci * out * out
            if kind.startswith("conv3x3"):
                return 9 * ci * co * out * out
            if kind == "add":
                return 0
            return ci * co * out * out

        us = [[macs(ci, co) * MAC_US for co in t["cout"]] for ci in t["cin"]]
        tables[name] = Table(kind, res, [float(c) for c in t["cin"]], [float(c) for c in t["cout"]], us)
    fp = fingerprint or LocalTimer().fingerprint()
    return LatencyLut(fp, input_size, list(families), tables, overhead_us=5.0, scale={V1: 1.0, V2: 1.0})


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_predict_covers_every_layer_of_every_profile(profile):
    spec = profile_spec(profile)
    lut = synthetic_lut()
    result = lut.predict_layers(spec)
    expected = layer_table(spec)
    assert [layer["name"] for layer in result["layers"]] == [r["name"] for r in expected]
    assert [layer["macs"] for layer in result["layers"]] == [r["macs"] for r in expected]
    assert sum(layer["share"] for layer in result["layers"]) == pytest.approx(1.0, abs=1e-4)
    assert sum(layer["predicted_ms"] for layer in result["layers"]) == pytest.approx(result["predicted_ms"], rel=1e-4)
    total_macs = sum(r["macs"] for r in expected)
    assert lut.predict(spec) == pytest.approx((5.0 + total_macs * MAC_US) / 1000.0, rel=1e-9)
    for layer, row in zip(result["layers"], expected):
        assert layer["shape"][1] == [row["out_size"], row["out_size"], row["cout"]]


@pytest.mark.parametrize("family", [V1, V2])
def test_predict_odd_pruning_off_grid(family):
    """Channel counts off every grid point (odd_spec): still exact on the synthetic LUT."""
    from conftest import odd_spec

    spec = odd_spec(family, 3)
    lut = synthetic_lut()
    assert lut.predict(spec) == pytest.approx((5.0 + sum(r["macs"] for r in layer_table(spec)) * MAC_US) / 1000.0)
    assert {p["table"] for p in layer_plan(spec)} <= set(lut.tables) | {None}


def test_lut_round_trip(tmp_path):
    lut = synthetic_lut()
    lut.tables["pointwise@14"].align = [1.0] + [1.0 + r / 100 for r in range(1, ALIGN_PERIOD)]
    path = tmp_path / "lut.json"
    lut.save(path)
    back = load_lut(path)
    assert back.as_dict() == lut.as_dict()
    for name in PROFILE_NAMES:
        assert predict(profile_spec(name), back) == lut.predict(profile_spec(name))
        assert predict(profile_spec(name), path) == lut.predict(profile_spec(name))


def test_missing_table_is_an_error():
    lut = synthetic_lut(families=(V1,))
    from amc_tf.core.errors import AmcError

    with pytest.raises(AmcError, match="no table .* rebuild"):
        lut.predict(profile_spec("v2-1.0"))


def _run(*args):
    return subprocess.run([str(AMC_TF), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_cli_refuses_a_foreign_fingerprint(tmp_path):
    fp = dict(LocalTimer().fingerprint(), cpu="Some Other CPU 9000")
    path = tmp_path / "foreign.json"
    synthetic_lut(fingerprint=fp).save(path)
    proc = _run("latency", "predict", "--profile", "0.5flops", "--lut", path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Some Other CPU 9000" in lines[0]
    assert proc.stdout == ""
    proc = _run("latency", "predict", "--profile", "0.5flops", "--lut", path, "--ignore-fingerprint", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["predicted_ms"] == pytest.approx(synthetic_lut().predict(profile_spec("0.5flops")), rel=1e-3)


def test_cli_predict_json_and_plot(tmp_path):
    path = tmp_path / "lut.json"
    synthetic_lut().save(path)
    png = tmp_path / "layers.png"
    proc = _run("latency", "predict", "--profile", "v2-0.7flops", "--lut", path, "--json", "--plot", png)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert len(out["layers"]) == len(layer_table(profile_spec("v2-0.7flops")))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".layers.png*"))
    proc = _run("latency", "predict", "--profile", "v2-0.7flops", "--lut", path, "--plot", png)
    assert proc.returncode == 2 and "exists" in proc.stderr


class FileSizeTimer:
    """Deterministic stand-in for the resume test: a point's "time" is its model's size."""

    def __init__(self, stop_after=None):
        self.calls, self.stop_after = [], stop_after

    def fingerprint(self):
        return {"target": "local", "cpu": "test", "device": None, "runtime": "size", "threads": 1, "delegate": "xnnpack"}

    def time_model(self, path, budget_s=None):
        self.calls.append(Path(path).stat().st_size)
        return Path(path).stat().st_size / 100.0


def test_interrupted_build_resumes_to_the_same_result(tmp_path):
    whole = build_lut(tmp_path / "whole.json", FileSizeTimer(), [V1], 96, tiny=True, calibrate=True, probe=False)
    out = tmp_path / "lut.json"
    first = FileSizeTimer()

    def stop(done, total, label):
        if done == 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_lut(out, first, [V1], 96, tiny=True, calibrate=True, progress=stop, save_every_s=3600, probe=False)
    partial = out.with_name("lut.json.partial.json")
    assert not out.exists() and len(json.loads(partial.read_text())["points"]) == 12
    second = FileSizeTimer()
    resumed = build_lut(out, second, [V1], 96, tiny=True, calibrate=True, probe=False)
    from amc_tf.benchmarks.latency_build import CAL_ROUNDS

    assert len(first.calls) + len(second.calls) == CAL_ROUNDS * len(whole.meta["calibration"]) + whole.meta["points"]
    assert resumed.meta["resumed_points"] == 12 and not partial.exists()
    assert {k: v.as_dict() for k, v in resumed.tables.items()} == {k: v.as_dict() for k, v in whole.tables.items()}
    assert resumed.scale == whole.scale


def test_partial_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "lut.json"
    out.with_name("lut.json.partial.json").write_text(json.dumps({"header": {"input_size": 1}, "points": {}}))
    from amc_tf.core.errors import AmcError

    with pytest.raises(AmcError, match="other settings"):
        build_lut(out, FileSizeTimer(), [V1], 96, tiny=True, calibrate=False)


def test_tiny_real_build_times_layers_through_litert(tmp_path):
    out = tmp_path / "lut.json"
    proc = _run("latency", "build", "-o", out, "--grid", "tiny", "--family", "v1", "--input-size", "96",
                "--no-calibrate", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    lut = load_lut(out)
    assert summary["fingerprint"]["runtime"].startswith("ai-edge-litert") and lut.fingerprint["delegate"] == "xnnpack"
    assert set(lut.tables) == set(grid_plan([V1], 96, tiny=True))
    pw = lut.tables["pointwise@3"]  # V1 at 96: the last blocks run at 3x3
    # a 1x1 conv with hundreds of channels on both sides takes longer than one with one channel
    assert pw.us[-1][-1] > pw.us[0][0]
    proc = _run("latency", "predict", "--profile", "0.5time", "--lut", out, "--input-size", "96", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["predicted_ms"] > 0
    proc = _run("latency", "build", "-o", out, "--grid", "tiny", "--family", "v1")
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "exists" in proc.stderr


def test_adb_build_pushes_the_binary_once_and_records_the_device(tmp_path, monkeypatch):
    """The adb path's plumbing through the project's stand-ins (tests/fakes: adb over a
    temporary directory, a benchmark_model printing the real log format with simulated
    times): nothing here times a phone, only that build drives bench's device path."""
    from click.testing import CliRunner

    from amc_tf.cli import main
    from bench_helpers import install_fake

    root = tmp_path / "adbroot"
    install_fake("adb", root / "bin")
    monkeypatch.setenv("PATH", f"{root / 'bin'}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_ROOT", str(root))
    monkeypatch.delenv("ADB", raising=False)
    (root / "devices.json").write_text(json.dumps({"S1": {"state": "device", "props": {"ro.product.model": "Pixel"}}}))
    bm = install_fake("benchmark_model", tmp_path / "build")
    out = tmp_path / "phone.json"
    res = CliRunner().invoke(main, ["latency", "build", "-o", str(out), "--target", "adb", "--serial", "S1",
                                    "--benchmark-binary", str(bm), "--grid", "tiny", "--family", "v1",
                                    "--input-size", "96", "--no-calibrate", "--no-probe", "-q"])
    assert res.exit_code == 0, res.output
    lut = load_lut(out)
    assert lut.fingerprint["target"] == "adb" and lut.fingerprint["device"] == "Pixel"
    assert lut.fingerprint["runtime"].startswith("benchmark_model sha256:")
    calls = [json.loads(line) for line in (root / "calls.jsonl").read_text().splitlines()]
    pushes = [c["argv"][-1] for c in calls if c["cmd"] == "push"]
    assert pushes.count("/data/local/tmp/benchmark_model") == 1
    bm_runs = (root / "devices/S1/data/local/tmp/.fake_bm_calls.jsonl").read_text().splitlines()
    assert len(bm_runs) == lut.meta["points"] == len(pushes) - 1
    assert all("--warmup_runs=10" in json.loads(r)["argv"] for r in bm_runs)
    # a phone's table is refused for this machine, accepted for the phone it was built on
    res = CliRunner().invoke(main, ["latency", "predict", "--profile", "1.0", "--lut", str(out), "--input-size", "96"])
    assert res.exit_code == 2 and "another target" in res.output
    res = CliRunner().invoke(main, ["latency", "predict", "--profile", "1.0", "--lut", str(out), "--input-size", "96",
                                    "--target", "adb", "--serial", "S1", "--json"])
    assert res.exit_code == 0, res.output


def test_predict_reads_a_checkpoint_and_an_outdir(make_checkpoint, tmp_path):
    from click.testing import CliRunner

    from amc_tf.cli import main

    lut_path = tmp_path / "lut.json"
    synthetic_lut().save(lut_path)
    ckpt, _model, spec = make_checkpoint("odd-v2")
    res = CliRunner().invoke(main, ["latency", "predict", str(ckpt), "--lut", str(lut_path), "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert [layer["name"] for layer in got["layers"]] == [r["name"] for r in layer_table(spec)]
    assert got["predicted_ms"] == pytest.approx(synthetic_lut().predict(spec), rel=1e-3)
    # an OUTDIR is read through its report.json's network description
    outdir = tmp_path / "out"
    outdir.mkdir()
    (outdir / "report.json").write_text(json.dumps({"network": profile_spec("0.5time").to_dict()}))
    (outdir / "model.tflite").write_bytes(b"")
    res = CliRunner().invoke(main, ["latency", "predict", str(outdir), "--lut", str(lut_path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["predicted_ms"] == pytest.approx(synthetic_lut().predict(profile_spec("0.5time")),
                                                                  rel=1e-3)
    res = CliRunner().invoke(main, ["latency", "predict", "--lut", str(lut_path)])
    assert res.exit_code == 2 and "--profile NAME" in res.output


def test_assemble_subtracts_overhead_and_derives_alignment_ratios():
    """From raw points: tables hold point - overhead; a probe gives each residue's ratio to the
    straight line between its aligned ends; the family scale is the median whole/sum ratio."""
    from amc_tf.benchmarks.latency_build import _align_ratios, assemble

    overhead = 2.0
    points = {"null": overhead}
    # probe: 64 + 2*r us over the period, except residues 1..16, 50 % slower (+ the overhead)
    for r in range(ALIGN_PERIOD + 1):
        line = 64.0 + 2.0 * r
        points[f"align:pointwise@7:{r}"] = overhead + line * (1.5 if 1 <= r <= 16 else 1.0)
    ratios = _align_ratios(points, "pointwise@7", overhead)
    assert ratios[0] == 1.0 and ratios[1] == ratios[16] == 1.5 and ratios[17] == ratios[63] == 1.0
    plan = {"pointwise@7": {"kind": "pointwise", "res": 7, "cin": [64, 128], "cout": [64, 128]}}
    for ci in (64, 128):
        for co in (64, 128):
            points[f"pointwise@7:{ci}x{co}"] = overhead + ci * co / 100.0
    lut = assemble(points, {}, plan, {"target": "local"}, 224, [V1])
    t = lut.tables["pointwise@7"]
    assert t.us == [[40.96, 81.92], [81.92, 163.84]] and lut.overhead_us == overhead
    assert t(96, 96) == pytest.approx(92.16)  # bilinear of ci*co/100 at a node-free point: exact
    assert t(96, 72) == pytest.approx(96 * 72 / 100 * 1.5)  # 72 = 64 + 8: a slow residue

"""The latency table's drift probe: the shipped probe models are the ones the script makes,
a prediction is scaled by probe now / probe at build, the build normalizes its calibration by
the probe (load that comes and goes during a build stays out of the scale), `--no-probe`,
the adb path runs the probe on the device, and version-1 tables still load.

Timings are real where the assertion does not depend on the machine's speed (a positive
figure, a ratio computed from the printed figures); stand-in timers where it does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from amc_tf.core.netspec import V1
from amc_tf.core.profiles import profile_spec
from amc_tf.benchmarks.latency_build import CAL_ROUNDS, build_lut
from amc_tf.benchmarks.latency_lut import load_lut
from amc_tf.benchmarks.latency_probe import PROBE_INPUT, PROBE_LAYERS, probe_path, probe_tflite, probe_us
from amc_tf.benchmarks.latency_timers import LocalTimer
from test_latency_lut import synthetic_lut

AMC_TF = Path(sys.executable).with_name("amc-tf")


def _run(*args):
    return subprocess.run([str(AMC_TF), *map(str, args)], capture_output=True, text=True, timeout=300)


def _ops(data_or_path) -> dict[str, int]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(data_or_path)) if isinstance(data_or_path, Path) else \
        Interpreter(model_content=data_or_path)
    hist: dict[str, int] = {}
    for op in interp._get_ops_details():  # noqa: SLF001 - the public API has no op listing
        hist[op["op_name"]] = hist.get(op["op_name"], 0) + 1
    return hist, interp


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_shipped_probe_is_the_one_the_script_makes(precision):
    shipped, interp = _ops(probe_path(precision))
    made, _ = _ops(probe_tflite(precision))
    assert shipped == made
    dw = sum(1 for k, *_ in PROBE_LAYERS if k.startswith("depthwise"))
    assert shipped["DEPTHWISE_CONV_2D"] == dw and shipped["CONV_2D"] == len(PROBE_LAYERS) - dw
    inp = interp.get_input_details()[0]
    assert tuple(inp["shape"]) == PROBE_INPUT and inp["dtype"] == np.float32
    if precision == "int8":  # a full-integer probe: its input is quantized inside the model
        from amc_tf.converters.tflite_inspect import int8_mac_share

        interp.allocate_tensors()
        assert shipped.get("QUANTIZE") == 1 and int8_mac_share(interp)["share"] == 1.0


def test_probe_times_the_shipped_model_for_about_a_second():
    import time

    t0 = time.monotonic()
    us = probe_us(LocalTimer(), "fp32", seconds=0.3)
    assert us > 0 and 0.3 <= time.monotonic() - t0 < 30


class StubTimer:
    """A benchmark_model-like timer (no time_mean): each run returns the next figure."""

    def __init__(self, figures):
        self.figures, self.paths = list(figures), []

    def time_model(self, path, budget_s=None):
        self.paths.append(Path(path).name)
        return self.figures.pop(0)


def test_probe_over_benchmark_model_is_the_median_of_its_runs():
    timer = StubTimer([300.0, 100.0, 200.0, 900.0, 150.0, 7.0])
    assert probe_us(timer, "int8", seconds=60) == 200.0  # five runs at most: 300 100 200 900 150
    assert timer.paths == ["probe-int8.tflite"] * 5


def test_prediction_scales_with_the_probe():
    lut = synthetic_lut()
    spec = profile_spec("0.5flops")
    base = lut.predict(spec)
    assert lut.predict(spec, 123.0) == base  # a table without a probe figure is not scaled
    lut.probe_us = 200.0
    assert lut.predict(spec, 300.0) == pytest.approx(1.5 * base, rel=1e-12)
    assert lut.predict(spec, None) == base
    layers = lut.predict_layers(spec, 100.0)
    assert layers["predicted_ms"] == pytest.approx(0.5 * base, rel=1e-4)
    assert sum(x["predicted_ms"] for x in layers["layers"]) == pytest.approx(layers["predicted_ms"], rel=1e-4)


class DriftingTimer:
    """Every model's time is its file size / 100, times a slowdown that changes whenever the
    probe runs (load that comes and goes): the probe sees the slowdown the models then get."""

    def __init__(self, slowdowns):
        self.slowdowns, self.now, self.probes = list(slowdowns), 1.0, 0

    def fingerprint(self):
        return {"target": "local", "cpu": "test", "device": None, "runtime": "size", "threads": 1, "delegate": "xnnpack"}

    def time_model(self, path, budget_s=None):
        if Path(path).name.startswith("probe-"):
            self.now = self.slowdowns[self.probes % len(self.slowdowns)]
            self.probes += 1
            return 1000.0 * self.now
        return Path(path).stat().st_size / 100.0 * (self.now if Path(path).name.startswith("net") else 1.0)


def test_build_normalizes_calibration_by_the_probe(tmp_path, monkeypatch):
    """A build whose calibration rounds ran at 1x, 3x, 1x, 2x, 1x speed fits the same scale as a
    steady build, and records the median probe as the table's figure."""
    import amc_tf.benchmarks.latency_probe as probe_mod
    import amc_tf.benchmarks.latency_timers as timers
    from amc_tf.core.flops import count

    monkeypatch.setattr(probe_mod, "PROBE_SECONDS", 0.0)  # one run per probe
    # stand-in models whose size grows with the work (no TensorFlow conversion: this checks the arithmetic)
    monkeypatch.setattr(timers, "layer_tflite", lambda kind, res, cin, cout, precision="fp32":
                        b"x" * (100 + res * res * (cin + 1) * (cout + 1) // 64))
    monkeypatch.setattr(timers, "network_tflite", lambda spec, seed=0, precision="fp32":
                        b"x" * (count(spec)["macs"] // 1000))
    steady = build_lut(tmp_path / "steady.json", DriftingTimer([1.0]), [V1], 96, tiny=True)
    # probes: start, round0..round4, end
    drift = build_lut(tmp_path / "drift.json", DriftingTimer([1.0, 1.0, 3.0, 1.0, 2.0, 1.0, 1.0]), [V1], 96, tiny=True)
    assert CAL_ROUNDS == 5
    assert steady.probe_us == drift.probe_us == 1000.0
    assert drift.scale == pytest.approx(steady.scale, rel=1e-3)
    rounds = drift.meta["calibration"][0]["rounds_us"]
    assert rounds[1] == pytest.approx(3 * rounds[0], rel=1e-3) and rounds[3] == pytest.approx(2 * rounds[0], rel=1e-3)
    back = load_lut(tmp_path / "drift.json")
    assert back.probe_us == 1000.0 and back.precision == "fp32"
    assert set(back.conditions["probe_runs_us"]) == {"start", "end"} | {f"round{r}" for r in range(5)}
    assert back.conditions["start"]["loadavg"] and back.conditions["end"]["time"]
    unprobed = build_lut(tmp_path / "none.json", DriftingTimer([1.0]), [V1], 96, tiny=True, calibrate=False, probe=False)
    assert unprobed.probe_us is None and "probe_runs_us" not in unprobed.conditions


def test_cli_predict_runs_the_probe_and_reports_it(tmp_path):
    lut = synthetic_lut()
    lut.probe_us = 1.0  # 1 us at build: the real probe now is far slower, so the factor is large
    path = tmp_path / "lut.json"
    lut.save(path)
    proc = _run("latency", "predict", "--profile", "0.5time", "--lut", path, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    probe = out["probe"]
    assert probe["build_us"] == 1.0 and probe["now_us"] > 1.0 and out["precision"] == "fp32"
    assert probe["factor"] == pytest.approx(probe["now_us"], rel=1e-3)
    assert out["predicted_ms"] == pytest.approx(lut.predict(profile_spec("0.5time")) * probe["now_us"], rel=1e-3)
    proc = _run("latency", "predict", "--profile", "0.5time", "--lut", path, "--no-probe")
    assert proc.returncode == 0, proc.stderr
    assert f"predicted: {lut.predict(profile_spec('0.5time')):.3f} ms" in proc.stdout
    assert "probe: not run (--no-probe)" in proc.stdout
    proc = _run("latency", "predict", "--profile", "0.5time", "--lut", path)
    assert proc.returncode == 0 and "us at build: scaled by" in proc.stdout


def test_version_1_table_loads_as_fp32_without_probe(tmp_path):
    d = synthetic_lut().as_dict()
    d["version"] = 1
    for key in ("precision", "probe", "conditions"):
        d.pop(key)
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(d))
    lut = load_lut(path)
    assert lut.precision == "fp32" and lut.probe_us is None
    assert lut.predict(profile_spec("1.0")) == synthetic_lut().predict(profile_spec("1.0"))
    proc = _run("latency", "predict", "--profile", "1.0", "--lut", path)
    assert proc.returncode == 0, proc.stderr
    assert "probe: not run (the table has no probe figure)" in proc.stdout


def test_adb_build_and_predict_run_the_probe_on_the_device(tmp_path, monkeypatch):
    """Through the project's stand-ins (tests/fakes: adb over a directory, a benchmark_model
    printing the real log format): the probe model is pushed to and run on the device."""
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
                                    "--input-size", "96", "--no-calibrate", "-q"])
    assert res.exit_code == 0, res.output
    lut = load_lut(out)
    assert lut.probe_us and lut.probe_us > 0
    pushes = [json.loads(c)["argv"][-1] for c in (root / "calls.jsonl").read_text().splitlines()
              if json.loads(c)["cmd"] == "push"]
    assert "/data/local/tmp/amc_lut_probe-fp32.tflite" in pushes
    res = CliRunner().invoke(main, ["latency", "predict", "--profile", "1.0", "--lut", str(out), "--input-size", "96",
                                    "--target", "adb", "--serial", "S1"])
    assert res.exit_code == 2 and "--benchmark-binary, or --no-probe" in res.output
    n_push = len(pushes)
    res = CliRunner().invoke(main, ["latency", "predict", "--profile", "1.0", "--lut", str(out), "--input-size", "96",
                                    "--target", "adb", "--serial", "S1", "--benchmark-binary", str(bm), "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert got["probe"]["build_us"] == lut.probe_us and got["probe"]["now_us"] > 0
    pushes = [json.loads(c)["argv"][-1] for c in (root / "calls.jsonl").read_text().splitlines()
              if json.loads(c)["cmd"] == "push"]
    assert pushes[n_push:].count("/data/local/tmp/amc_lut_probe-fp32.tflite") >= 1

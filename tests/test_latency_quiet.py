"""`latency predict` and `latency build` accept -q like other commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_latency_lut import synthetic_lut

AMC_TF = Path(sys.executable).with_name("amc-tf")


def test_predict_accepts_q_and_stays_quiet(tmp_path):
    lut = tmp_path / "lut.json"
    synthetic_lut().save(lut)
    proc = subprocess.run([str(AMC_TF), "latency", "predict", "--profile", "0.5flops", "--lut", str(lut),
                           "--ignore-fingerprint", "-q", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and json.loads(proc.stdout)["predicted_ms"] > 0


def test_build_accepts_q_and_prints_no_progress(tmp_path):
    out = tmp_path / "lut.json"
    proc = subprocess.run([str(AMC_TF), "latency", "build", "-o", str(out), "--grid", "tiny", "--family", "v1",
                           "--input-size", "32", "--no-calibrate", "-q"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and out.exists()

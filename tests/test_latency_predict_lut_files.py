"""A corrupt LUT file is refused on load with one `error: LUT: ...` line
and exit 2 (never exit 70, never a nan prediction)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from test_latency_lut import synthetic_lut

AMC_TF = Path(sys.executable).with_name("amc-tf")


def _predict(lut: Path, *extra):
    return subprocess.run([str(AMC_TF), "latency", "predict", "--profile", "0.5flops", "--lut", str(lut),
                           "--ignore-fingerprint", *extra], capture_output=True, text=True, timeout=300)


def _good() -> dict:
    return synthetic_lut().as_dict()


def _mutate(fn):
    d = _good()
    fn(d)
    return json.dumps(d)


def _first(d):
    return d["tables"][sorted(d["tables"])[0]]


CASES = {
    "list": "[1, 2]",
    "string": '"lut"',
    "null": "null",
    "deep": "[" * 100000 + "]" * 100000,
    "tables-list": _mutate(lambda d: d.update(tables=[])),
    "tables-empty": _mutate(lambda d: d.update(tables={})),
    "scale-list": _mutate(lambda d: d.update(scale=[1.0])),
    "cin-empty": _mutate(lambda d: _first(d).update(cin=[], us=[])),
    "us-empty": _mutate(lambda d: _first(d).update(us=[])),
    "cin-not-monotone": _mutate(lambda d: _first(d).update(cin=list(reversed(_first(d)["cin"])))),
    "scale-nan": _mutate(lambda d: d["scale"].update(v1=float("nan"))),
    "scale-inf": _mutate(lambda d: d["scale"].update(v1=float("inf"))),
    "scale-zero": _mutate(lambda d: d["scale"].update(v1=0.0)),
    "overhead-nan": _mutate(lambda d: d.update(overhead_us=float("nan"))),
    "overhead-string": _mutate(lambda d: d.update(overhead_us="5")),
    "us-all-nan": _mutate(lambda d: [t.update(us=[[float("nan")] * len(t["cout"]) for _ in t["cin"]])
                                     for t in d["tables"].values()]),
    "us-string": _mutate(lambda d: _first(d)["us"][0].__setitem__(0, "1.0")),
    "table-not-object": _mutate(lambda d: d["tables"].update({sorted(d["tables"])[0]: 3})),
    "input-size-string": _mutate(lambda d: d.update(input_size="224")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_corrupt_lut_is_one_error_line_exit_2(tmp_path, case):
    lut = tmp_path / "lut.json"
    lut.write_text(CASES[case])
    proc = _predict(lut, "--json")
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: LUT: "), proc.stderr
    assert proc.stdout == ""


def test_a_good_lut_still_predicts(tmp_path):
    lut = tmp_path / "lut.json"
    lut.write_text(json.dumps(_good()))
    proc = _predict(lut, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["predicted_ms"] > 0

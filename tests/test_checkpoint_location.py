"""report.json records where the converted checkpoint is (resolved, with its sha256), so parity
and diff find it from any folder; a pass without one of the backends says so."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from cli_run import DIGITS, run


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    work = tmp_path_factory.mktemp("ckpt-location")
    shutil.copy(DIGITS, work / "ck.pth.tar")
    proc = run("convert", "ck.pth.tar", "-o", "out", "--input-size", "64", "--no-verify", "-q", cwd=work)
    assert proc.returncode == 0, proc.stderr
    (work / "elsewhere").mkdir()
    return work


def test_report_records_the_resolved_checkpoint_and_its_sha256(converted):
    from amc_tf.core.fileutil import sha256_file

    source = json.loads((converted / "out" / "report.json").read_text())["source"]
    assert source["file"] == os.path.realpath(converted / "ck.pth.tar")
    assert source["sha256"] == sha256_file(converted / "ck.pth.tar")


def test_parity_and_diff_from_another_folder_compare_pytorch(converted):
    elsewhere = converted / "elsewhere"
    proc = run("parity", "../out", "--limit", "2", "--json", "-q", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert "torch" in data["backends"] and data["not_compared"] == {}
    assert data["pairs"]["torch_vs_tflite"]["max_abs_diff"] < 1e-4
    proc = run("diff", "../out", "--json", "-q", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["reference"] == "torch" and data["not_compared"] == {}


def test_a_pass_without_pytorch_says_so(converted, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(converted / "out", out)
    report = json.loads((out / "report.json").read_text())
    report["source"]["file"] = str(tmp_path / "gone.pth.tar")
    (out / "report.json").write_text(json.dumps(report))
    proc = run("parity", out, "--limit", "2", "-q")
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("  PASSED without torch (the converted checkpoint is no longer at"), last
    proc = run("parity", out, "--limit", "2", "-q", "--json")
    data = json.loads(proc.stdout)
    assert data["passed"] and "no longer at" in data["not_compared"]["torch"] and "torch" not in data["backends"]
    proc = run("diff", out, "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("passed without torch (the converted checkpoint")

"""Messages point the right way: convert and profile take a conversion OUTDIR (profile its
network, convert again from its recorded checkpoint), and a file given for a folder says so."""

from __future__ import annotations

import json
import shutil

import pytest

from cli_run import DIGITS, one_error_line, run


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = tmp_path_factory.mktemp("outdir-source")
    shutil.copy(DIGITS, work / "ck.pth.tar")
    proc = run("convert", "ck.pth.tar", "-o", "out", "--input-size", "64", "--no-verify", "-q", cwd=work)
    assert proc.returncode == 0, proc.stderr
    return work


def test_profile_of_an_outdir_is_its_network(work):
    from_outdir = json.loads(run("profile", "out", "--json", cwd=work).stdout)
    from_checkpoint = json.loads(run("profile", "ck.pth.tar", "--input-size", "64", "--json", cwd=work).stdout)
    assert from_outdir == from_checkpoint and from_outdir["input_size"] == 64 and from_outdir["macs"] > 2_000_000
    proc = run("profile", "out", "--input-size", "96", cwd=work)
    assert proc.returncode == 2 and "an OUTDIR records its own" in one_error_line(proc)


def test_convert_an_outdir_again_from_its_checkpoint(work):
    (work / "sub").mkdir(exist_ok=True)
    proc = run("convert", "../out", "-o", "../again", "--quantize", "fp16", "--json", "-q", cwd=work / "sub")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    first = json.loads((work / "out" / "report.json").read_text())
    assert report["source"]["file"] == first["source"]["file"] and report["source"]["sha256"] == first["source"]["sha256"]
    assert report["network"] == first["network"] and report["network"]["input_size"] == 64  # the OUTDIR's, not 224
    assert report["quantization"]["mode"] == "fp16" and report["verification"]["passed"]


def test_convert_an_outdir_whose_checkpoint_is_gone_says_so(work, tmp_path):
    shutil.copytree(work / "out", tmp_path / "moved")
    report = json.loads((tmp_path / "moved" / "report.json").read_text())
    report["source"]["file"] = str(tmp_path / "gone.pth.tar")
    (tmp_path / "moved" / "report.json").write_text(json.dumps(report))
    proc = run("convert", tmp_path / "moved", "-o", tmp_path / "x", "-q")
    line = one_error_line(proc)
    assert proc.returncode == 2 and "no longer at the path" in line and "give the checkpoint itself" in line
    assert not (tmp_path / "x").exists()
    proc = run("convert", tmp_path, "-o", tmp_path / "y", "-q")
    assert proc.returncode == 2 and "not a conversion OUTDIR" in one_error_line(proc)


def test_a_tflite_message_names_commands_that_take_the_outdir(work):
    proc = run("convert", "out/model.tflite", "-o", "again2", cwd=work)
    line = one_error_line(proc)
    assert proc.returncode == 2 and "convert, diff and profile read the checkpoint (or the conversion OUTDIR)" in line


@pytest.mark.parametrize("command", [["eval", "{out}/model.tflite"], ["compare", "{out}"],
                                     ["convert", "{ck}", "-o", "{tmp}/o", "--quantize", "int8"]])
def test_images_given_a_file_says_it_is_not_a_directory(work, tmp_path, command):
    args = [a.format(out=work / "out", ck=work / "ck.pth.tar", tmp=tmp_path) for a in command]
    proc = run(*args, "--images", work / "ck.pth.tar", "-q")
    line = one_error_line(proc)
    assert proc.returncode == 2 and f"--images {work / 'ck.pth.tar'}: not a directory" in line, line

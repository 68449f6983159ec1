"""`amc-tf convert` / `amc-tf profile` from the command line: outputs, errors, exit codes."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from amc_tf.cli import main

AMC_TF = Path(sys.executable).with_name("amc-tf")


def run_cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def _resnet_like(path):
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = torch.nn.BatchNorm2d(64)
            self.layer1 = torch.nn.Conv2d(64, 64, 3, 1, 1, bias=False)
            self.bn2 = torch.nn.BatchNorm2d(64)
            self.fc = torch.nn.Linear(64, 1000)

    torch.save(Tiny().state_dict(), path)


def _v1_missing_a_block(path, make_checkpoint):
    src, model, _ = make_checkpoint("0.75", "amc", "zip")
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith("features.12.")}
    # keep the chain consistent: the classifier now reads block 11's 768 channels
    torch.save(sd, path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


BAD_INPUTS = {
    "missing": (lambda p, mk: None, "no such file"),
    "text-file": (lambda p, mk: p.write_text("just text\n"), "not a PyTorch checkpoint"),
    "truncated-zip": (lambda p, mk: p.write_bytes(mk("0.5time", "amc", "zip")[0].read_bytes()[:200_000]), "corrupt|truncated"),
    "truncated-legacy": (lambda p, mk: p.write_bytes(mk("0.5time", "amc", "legacy")[0].read_bytes()[:200_000]), "truncated"),
    "hostile-pickle": (lambda p, mk: p.write_bytes(pickle.dumps({"state_dict": _Evil()}, protocol=2)), "refused, nothing was executed"),
    "resnet": (lambda p, mk: _resnet_like(p), "7x7 kernel"),
    "v1-with-12-blocks": (_v1_missing_a_block, "found 12 depthwise-separable blocks"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(case, tmp_path, make_checkpoint):
    make, message = BAD_INPUTS[case]
    ckpt = tmp_path / "in.pth.tar"
    make(ckpt, make_checkpoint)
    out_parent = tmp_path / "outputs"
    result = run_cli("convert", ckpt, "-o", out_parent / "model", "-q")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(message, lines[0]), lines[0]
    assert not (out_parent / "model").exists()
    assert not out_parent.exists() or list(out_parent.iterdir()) == []


def test_profile_contradiction_names_the_first_layer(tmp_path, make_checkpoint):
    ckpt, _, _ = make_checkpoint("0.5flops", "amc", "legacy")
    result = run_cli("convert", ckpt, "-o", tmp_path / "o", "--profile", "0.5time", "-q")
    assert result.exit_code == 2
    assert "MobilenetV1/Conv2d_0 has 3->24 channels in the checkpoint, the profile says 3->16" in result.stderr
    result = run_cli("convert", ckpt, "-o", tmp_path / "o", "--profile", "v2-0.7flops", "-q")
    assert result.exit_code == 2 and "is a mobilenet_v2" in result.stderr
    assert not (tmp_path / "o").exists()


def test_existing_outdir_needs_force(tmp_path, make_checkpoint):
    ckpt, _, _ = make_checkpoint("odd-v1", "amc", "zip")
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_cli("convert", ckpt, "-o", out, "-q")
    assert result.exit_code == 2 and "--force" in result.stderr
    assert (out / "keep.txt").read_text() == "mine"
    # --force replaces only an earlier conversion, never a folder of the user's own
    result = run_cli("convert", ckpt, "-o", out, "-q", "--force", "--no-verify")
    assert result.exit_code == 2 and "not an amc-tf output" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    (out / "keep.txt").unlink()
    assert run_cli("convert", ckpt, "-o", out, "-q", "--no-verify").exit_code == 0  # empty: no --force needed
    result = run_cli("convert", ckpt, "-o", out, "-q", "--force", "--no-verify")  # an earlier conversion
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["model.tflite", "report.json", "saved_model", "slim"]
    # a conversion the user added a file to, and a folder with a report.json of some other tool
    (out / "notes.txt").write_text("mine")
    result = run_cli("convert", ckpt, "-o", out, "-q", "--force", "--no-verify")
    assert result.exit_code == 2 and "notes.txt" in result.stderr and (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    fake = tmp_path / "fake"
    (fake / "photos").mkdir(parents=True)
    (fake / "report.json").write_text('{"a": 1}')
    result = run_cli("convert", ckpt, "-o", fake, "-q", "--force", "--no-verify")
    assert result.exit_code == 2 and "not an amc-tf output" in result.stderr and (fake / "photos").is_dir()
    (fake / "photos").rmdir()
    (fake / "report.json").unlink()
    fake.rmdir()
    assert json.loads((out / "report.json").read_text())["verification"] == {"skipped": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]  # no temp or backup dirs left


def test_console_script_convert_json(tmp_path, make_checkpoint):
    ckpt, _, spec = make_checkpoint("odd-v2", "torchvision", "legacy")
    proc = subprocess.run([AMC_TF, "convert", ckpt, "-o", tmp_path / "o", "--json", "--input-size", "160"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["network"]["channels"] == spec.channels()
    assert report["network"]["input_size"] == 160
    assert report["verification"]["passed"] is True
    assert "amc-tf: writing model.tflite" in proc.stderr  # progress goes to stderr


def test_profile_json_and_table(make_checkpoint):
    result = run_cli("profile", "--profile", "0.5time", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["macs"] == sum(layer["macs"] for layer in data["layers"]) == 273_976_912
    assert len(data["layers"]) == 28 and data["layers"][0]["name"] == "MobilenetV1/Conv2d_0"
    ckpt, _, _ = make_checkpoint("v2-0.7flops", "amc", "legacy")
    result = run_cli("profile", ckpt)
    assert result.exit_code == 0
    assert "210.6M MACs" in result.stdout and "MobilenetV2/expanded_conv_16/project" in result.stdout
    result = run_cli("profile", ckpt, "--profile", "v2-1.0")
    assert result.exit_code == 2 and "MobilenetV2/Conv has 3->24" in result.stderr
    assert run_cli("profile").exit_code == 2


@pytest.mark.parametrize("command", [[], ["convert"], ["profile"]])
def test_help(command):
    result = run_cli(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_converts_without_torch(tmp_path, make_checkpoint):
    """torch is not a runtime dependency: with torch unimportable, conversion and the TF/TFLite
    self-check still run, and the report says PyTorch was not compared."""
    ckpt, _, spec = make_checkpoint("odd-v1", "community", "legacy")
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "from amc_tf.cli import main\n"
        f"main(['convert', {str(ckpt)!r}, '-o', {str(tmp_path / 'o')!r}, '-q', '--input-size', '96'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["tools"]["torch"] is None
    assert set(report["verification"]["pairs"]) == {"tf_vs_tflite"}
    assert report["verification"]["passed"] is True
    assert "torch is not installed" in report["verification"]["note"]
    assert report["network"]["channels"] == spec.channels()


def test_self_check_failure_exits_1_and_keeps_the_evidence(tmp_path, make_checkpoint, monkeypatch):
    """A builder bug (TF 'SAME' padding at stride 2) must fail the self-check against PyTorch."""
    import amc_tf.converters.tf_builder as tf_builder

    real_build = tf_builder.build
    monkeypatch.setattr(tf_builder, "build", lambda network, **kw: real_build(network, padding_mode="same"))
    ckpt, _, _ = make_checkpoint("0.5time", "amc", "zip")
    result = run_cli("convert", ckpt, "-o", tmp_path / "o", "-q")
    assert result.exit_code == 1, result.output
    assert "disagree beyond tolerance" in result.stderr
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    ver = report["verification"]
    assert ver["passed"] is False
    assert ver["pairs"]["tf_vs_torch"]["max_abs_diff"] > ver["tolerance"]
    assert ver["pairs"]["tf_vs_tflite"]["max_abs_diff"] <= ver["tolerance"]  # both exports share the bug


def test_expansion_width_must_match_the_depthwise(make_checkpoint):
    """A V2 block whose expand conv gives more channels than its depthwise takes is refused
    with an error naming the block, not a crash further down."""
    from amc_tf.core.errors import ArchitectureError
    from amc_tf.converters.pytorch_frontend import infer_network

    _, model, _ = make_checkpoint("odd-v2", "amc", "zip")
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    h = sd["features.2.conv.3.weight"].shape[0]
    for key in [k for k in sd if k.startswith("features.2.conv.4.")]:
        if sd[key].ndim == 1:
            sd[key] = sd[key][: h - 1]
    sd["features.2.conv.3.weight"] = sd["features.2.conv.3.weight"][: h - 1]
    sd["features.2.conv.6.weight"] = sd["features.2.conv.6.weight"][:, : h - 1]
    with pytest.raises(ArchitectureError, match=f"block 1: .* gives {h} channels, the depthwise after it has {h - 1}"):
        infer_network(sd)

"""`python -m amc_tf.demo --force` replaces an earlier demo output, never a folder of the user's own."""

from __future__ import annotations

import subprocess
import sys


def demo(out, *args):
    return subprocess.run([sys.executable, "-m", "amc_tf.demo", "--out", str(out), "--checkpoints-only", "0.5flops",
                           *args], capture_output=True, text=True, timeout=300)


def test_force_replaces_only_an_earlier_demo(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("months of work")
    res = demo(mine, "--force")
    assert res.returncode != 0 and "is not a demo output (thesis.tex)" in res.stderr
    assert (mine / "thesis.tex").read_text() == "months of work"

    out = tmp_path / "demo"
    assert demo(out).returncode == 0
    first = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert first == ["mobilenet_0.5flops_random-seed0_legacy.pth.tar", "mobilenet_0.5flops_random-seed0_zip.pth.tar"]
    res = demo(out)
    assert res.returncode != 0 and "pass --force" in res.stderr
    res = demo(out, "--force")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == first

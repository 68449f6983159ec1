"""What the installed package puts on a user's import path: only `amc_tf`, so a user's own
`converters/` or `benchmarks/` folder never shadows amc-tf's (and amc-tf shadows nobody's)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_users_own_converters_and_benchmarks_folders_do_not_shadow_amc_tf(tmp_path):
    for name in ("converters", "benchmarks"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise SystemExit('the user\\'s own {name} was imported')\n")
        (tmp_path / name / "convert.py").write_text("raise SystemExit('shadowed')\n")
    out = subprocess.run([sys.executable, "-m", "amc_tf", "profile", "--profile", "0.5flops"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "mobilenet_v1: 293.9M MACs, 2.408M params at 224x224"
    code = "import amc_tf.converters.convert as c, amc_tf.benchmarks.local as b; print(c.__file__); print(b.__file__)"
    files = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                           timeout=300).stdout.split()
    assert [Path(f).parent.name for f in files] == ["converters", "benchmarks"]
    assert not any(Path(f).is_relative_to(tmp_path) for f in files), files


def test_the_wheel_installs_one_top_level_package(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("amc_tf-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.startswith("amc_tf-")} == {"amc_tf"}
    assert {"amc_tf/converters/convert.py", "amc_tf/benchmarks/local.py",
            "amc_tf/benchmarks/adbemu/device.py"} <= set(names)
    assert not any(n.startswith("amc_tf/benchmarks/perf/") for n in names)  # the project's own tools stay out
    top_level = next(n for n in names if n.endswith("top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["amc_tf"]

"""Wall time of `amc-tf convert` (TFLite + SavedModel + slim checkpoint + self-check against
PyTorch) against litert-torch 0.10 (TFLite + self-check) on the same MobileNetV1-1.0 checkpoint.

Fresh processes, interleaved pairs (amc-tf, litert-torch, amc-tf, ...), medians; once with the
machine as it is ("quiet") and once with a busy-loop process on another core ("busy"). Prints
each run, the load average around it, and the ratio of the medians. report.json's timings_s
shows where amc-tf's seconds go (the median run's is printed).

litert-torch pins its own TensorFlow, so it runs from its own venv: --litert-torch-python, by
default ~/.cache/amc-tf/litert-torch-venv/bin/python, created on first use (pip install
litert-torch==0.10.* with torch==2.13.0, from PyPI; a few minutes).

    .venv/bin/python benchmarks/perf/perf_convert_vs_litert_torch.py [--pairs 3] [--profile 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
DEFAULT_VENV = Path.home() / ".cache" / "amc-tf" / "litert-torch-venv"


def ensure_litert_torch(python: Path) -> Path:
    if python.exists():
        return python
    venv = python.parent.parent
    print(f"creating {venv} with litert-torch 0.10 (first use only)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    constraints = venv / "constraints.txt"
    constraints.write_text("torch==2.13.0\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(constraints), "litert-torch==0.10.*"],
                   check=True)
    return python


def timed(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return elapsed


def measure(label: str, pairs: int, ckpt: Path, profile: str, lt_python: Path, tmp: Path) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    amc_cmd = [sys.executable, "-m", "amc_tf", "convert", str(ckpt), "-o", str(tmp / "out"), "-q", "--force"]
    lt_cmd = [str(lt_python), str(ROOT / "benchmarks" / "perf" / "litert_torch_convert.py"), str(ckpt), profile,
              str(tmp / "lt.tflite")]
    amc, lt, reports = [], [], []
    for i in range(pairs):
        load = os.getloadavg()[0]
        amc.append(timed(amc_cmd, env))
        reports.append(json.loads((tmp / "out" / "report.json").read_text())["timings_s"])
        lt.append(timed(lt_cmd, dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")))
        print(f"  {label} pair {i + 1}: amc-tf {amc[-1]:6.2f} s   litert-torch {lt[-1]:6.2f} s   "
              f"ratio {amc[-1] / lt[-1]:.2f}   load {load:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)
    ma, ml = statistics.median(amc), statistics.median(lt)
    median_report = reports[amc.index(sorted(amc)[len(amc) // 2])]
    print(f"{label}: medians amc-tf {ma:.2f} s, litert-torch {ml:.2f} s: ratio {ma / ml:.2f}")
    print(f"  amc-tf timings_s of its median run: {median_report}")
    return {"amc_tf_s": ma, "litert_torch_s": ml, "ratio": ma / ml}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--profile", default="1.0")
    ap.add_argument("--litert-torch-python", type=Path, default=DEFAULT_VENV / "bin" / "python")
    ap.add_argument("--only", choices=["quiet", "busy"], default=None)
    args = ap.parse_args()

    from amc_tf.core import torch_models
    from amc_tf.core.profiles import profile_spec

    lt_python = ensure_litert_torch(args.litert_torch_python)
    tmp = Path(tempfile.mkdtemp(prefix="amc-vs-lt-"))
    try:
        ckpt = tmp / f"{args.profile}.pth.tar"
        torch_models.save(torch_models.randomize(torch_models.build(profile_spec(args.profile)), 0), ckpt)
        print(f"MobileNet {args.profile}: amc-tf convert vs litert-torch, {args.pairs} interleaved pairs "
              f"({os.cpu_count()} cores)", flush=True)
        results = {}
        if args.only in (None, "quiet"):
            results["quiet"] = measure("quiet", args.pairs, ckpt, args.profile, lt_python, tmp)
        if args.only in (None, "busy"):
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                results["busy"] = measure("busy", args.pairs, ckpt, args.profile, lt_python, tmp)
            finally:
                busy.kill()
                busy.wait()
        print(json.dumps({k: {kk: round(vv, 3) for kk, vv in v.items()} for k, v in results.items()}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

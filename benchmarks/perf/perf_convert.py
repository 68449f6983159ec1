"""Wall time and peak memory of `amc-tf convert` on MobileNetV1-1.0 and V2-1.0.

Prints, per model: the whole CLI (a fresh process: interpreter start, TensorFlow import,
conversion with all three artifacts, self-check, exit) with and without the self-check,
and the conversion alone (in-process, TensorFlow already imported), each the median of
--repeats runs, plus the CLI's peak RSS. Needs torch to write the input checkpoints.

    .venv/bin/python benchmarks/perf/perf_convert.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from amc_tf.core import torch_models  # noqa: E402
from amc_tf.core.profiles import profile_spec  # noqa: E402

AMC_TF = Path(sys.executable).with_name("amc-tf")


def cli_run(ckpt: Path, out: Path, *extra: str) -> tuple[float, float]:
    """(seconds, peak RSS MB) of one `amc-tf convert` process."""
    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    subprocess.run([str(AMC_TF), "convert", str(ckpt), "-o", str(out), "-q", *extra], check=True,
                   stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - t
    # ru_maxrss of children is the max over all children so far (KiB on Linux)
    peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    return elapsed, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from amc_tf.converters.convert import ConvertOptions, convert

    tmp = Path(tempfile.mkdtemp(prefix="amc-perf-"))
    try:
        print(f"amc-tf convert timing, {args.repeats} runs each, median (machine: {os.cpu_count()} cores)")
        print(f"{'model':<8} {'CLI, all artifacts + self-check':>32} {'CLI --no-verify':>16} "
              f"{'in-process convert()':>21} {'CLI peak RSS':>13}")
        for name in ("1.0", "v2-1.0"):
            ckpt = tmp / f"{name}.pth.tar"
            torch_models.save(torch_models.randomize(torch_models.build(profile_spec(name)), 0), ckpt)
            full, peaks = [], []
            for _ in range(args.repeats):
                secs, peak = cli_run(ckpt, tmp / "out")
                full.append(secs)
                peaks.append(peak)
            nover = [cli_run(ckpt, tmp / "out", "--no-verify")[0] for _ in range(args.repeats)]
            inproc = []
            for _ in range(args.repeats + 1):  # the first in-process run pays the TF import: dropped
                shutil.rmtree(tmp / "out", ignore_errors=True)
                t = time.perf_counter()
                convert(ckpt, tmp / "out", ConvertOptions())
                inproc.append(time.perf_counter() - t)
            label = "V1-1.0" if name == "1.0" else "V2-1.0"
            print(f"{label:<8} {statistics.median(full):>31.2f}s {statistics.median(nover):>15.2f}s "
                  f"{statistics.median(inproc[1:]):>20.2f}s {max(peaks):>10.0f} MB")
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import tensorflow"], check=True, env=dict(os.environ))
        print(f"for scale: `python -c 'import tensorflow'` alone takes {time.perf_counter() - t:.2f}s here")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

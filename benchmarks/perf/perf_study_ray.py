"""What Ray adds to a study's start-up: a two-node Ray cluster on loopback (the tests' private
network namespace, tests/ray_cluster.py), the digits model's study (fp32, 360 images, 3
chunks) run on it and on the embedded pool, each from an empty STUDYDIR.

Prints JSON: seconds to start the cluster (both nodes alive), the driver's connect time
(study.json's backend_start_s), and each study's wall time. Needs root (unshare -n).
Usage: python benchmarks/perf/perf_study_ray.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "scripts"))


def main() -> None:
    import digits_recipe
    from ray_cluster import Cluster

    work = Path(tempfile.mkdtemp(prefix="amc-tf-perf-ray-"))
    images = digits_recipe.write_image_folder(work / "digits")
    ckpt = REPO / "tests" / "data" / "digits" / "mobilenet_v1_digits.pth.tar"
    args = [ckpt, "--images", images, "--input-size", "64", "--chunk-size", "120", "-q"]
    out = {"load_before": os.getloadavg()}
    cluster = Cluster()
    try:
        t0 = time.monotonic()
        cluster.start_node("head", head=True)
        cluster.start_node("second")
        cluster.wait_nodes(2)
        out["cluster_start_s"] = round(time.monotonic() - t0, 2)
        for name, extra, runner in (("embedded", ["--workers", "2"], subprocess.run),
                                    ("ray", ["--ray-address", cluster.address], None)):
            cmd = [sys.executable, "-m", "amc_tf", "study", *map(str, args), *extra, "-o", str(work / name)]
            t0 = time.monotonic()
            proc = cluster.run(cmd, timeout=900) if runner is None else runner(
                cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
            assert proc.returncode == 0, proc.stderr
            out[f"{name}_study_s"] = round(time.monotonic() - t0, 2)
            data = json.loads((work / name / "study.json").read_text())
            out[f"{name}_backend_start_s"] = data["study"]["backend_start_s"]
            out[f"{name}_top1"] = data["records"][0]["correct_top1"]
    finally:
        cluster.stop()
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

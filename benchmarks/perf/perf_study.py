"""`amc-tf study` against the same work done as separate commands (the issue's speed target):
5 checkpoints (random-weight MobileNets of the AMC profiles, 224x224) on 300 ImageNet-style
images (the shared sample's 100 images, three copies each), fp32.

- the shell loop: `amc-tf convert CKPT -o OUT` then `amc-tf eval OUT/model.tflite --data IMGS`
  for each checkpoint, one after another;
- `amc-tf study CKPTS/ --images IMGS` (embedded pool, --workers 2), then the same study again
  (the cache: nothing recomputed);
- one model's evaluation (conversion cached) on 1 and on 2 workers.

Prints JSON; the machine's load average before and after is part of it.
Usage: python benchmarks/perf/perf_study.py [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO.parent / "shared" / "fixtures" / "imagenet-sample"
AMC_TF = [sys.executable, "-m", "amc_tf"]
PROFILES = ("0.5flops", "0.5time", "0.75", "v2-1.0", "v2-0.7flops")


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")


CPU = {"s": 0.0}  # CPU seconds (user + sys) of the commands run so far, their workers included


def _timed(args: list) -> float:
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    subprocess.run([*AMC_TF, *map(str, args)], check=True, capture_output=True, env=_env())
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU["s"] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return round(time.monotonic() - t0, 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir")
    work = Path(ap.parse_args().workdir or tempfile.mkdtemp(prefix="amc-tf-perf-study-"))
    from amc_tf.core import torch_models
    from amc_tf.core.profiles import profile_spec

    ckpts, images = work / "ckpts", work / "images"
    ckpts.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(PROFILES):
        torch_models.save(torch_models.randomize(torch_models.build(profile_spec(name), "amc"), i),
                          ckpts / f"{name}.pth.tar")
    images.mkdir(exist_ok=True)
    for k in range(3):
        for src in sorted(SAMPLE.glob("*.JPEG")):
            shutil.copy(src, images / f"{src.stem}_{k}.JPEG")
    assert len(list(images.iterdir())) == 300
    out = {"load_before": os.getloadavg(), "cpus": os.cpu_count()}
    loop, loop_cpu = 0.0, 0.0
    for ck in sorted(ckpts.iterdir()):
        o = work / "loop" / ck.name
        loop += _timed(["convert", ck, "-o", o, "-q", "--force"])
        loop_cpu += CPU["s"]
        loop += _timed(["eval", o / "model.tflite", "--data", images, "-q", "--json"])
        loop_cpu += CPU["s"]
    out["shell_loop_s"], out["shell_loop_cpu_s"] = round(loop, 2), round(loop_cpu, 1)
    study = ["study", ckpts, "--images", images, "--workers", "2", "-q", "-o", work / "study"]
    out["study_s"] = _timed([*study, "--force"])
    out["study_cpu_s"] = round(CPU["s"], 1)
    out["study_rerun_s"] = _timed(study)
    out["study_over_loop"] = round(out["study_s"] / loop, 3)
    out["rerun_over_first"] = round(out["study_rerun_s"] / out["study_s"], 3)
    one = ckpts / "v2-1.0.pth.tar"
    _timed(["study", one, "--images", images, "-q", "-o", work / "one", "--force", "--workers", "1"])
    for workers, chunk in ((1, 100), (2, 101)):  # another chunk size: the evaluation recomputed, not the conversion
        out[f"one_model_eval_{workers}_workers_s"] = _timed(["study", one, "--images", images, "-q", "-o",
                                                             work / "one", "--workers", str(workers),
                                                             "--chunk-size", str(chunk)])
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

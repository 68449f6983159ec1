"""Write the latency probe's models (benchmarks/assets/probe-fp32.tflite, probe-int8.tflite)
from benchmarks/latency_probe.PROBE_LAYERS with fixed seeds. Rerun after changing the layers;
a table built with another probe is then refused (its probe figure is of another model).

    PYTHONPATH=. .venv/bin/python scripts/make_latency_probe.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from amc_tf.benchmarks.latency_probe import ASSETS, probe_tflite  # noqa: E402


def main() -> int:
    ASSETS.mkdir(exist_ok=True)
    for precision in ("fp32", "int8"):
        path = ASSETS / f"probe-{precision}.tflite"
        data = probe_tflite(precision)
        path.write_bytes(data)
        print(f"wrote {path} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

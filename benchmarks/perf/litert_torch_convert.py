"""The litert-torch side of perf_convert_vs_litert_torch.py: one fresh process that reads an
AMC-layout MobileNet checkpoint into its PyTorch module, converts it to TFLite with litert-torch
and checks the TFLite's logits against PyTorch's on two random inputs (its self-check).

Runs in a separate venv that has litert-torch (it pins its own TensorFlow):
    LTVENV/bin/python benchmarks/perf/litert_torch_convert.py CKPT PROFILE OUT.tflite
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(ckpt: str, profile: str, out: str) -> None:
    import numpy as np
    import torch

    import litert_torch
    from amc_tf.core import torch_models
    from amc_tf.core.profiles import profile_spec

    model = torch_models.build(profile_spec(profile))
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    model.eval()
    size = profile_spec(profile).input_size
    sample = (torch.randn(1, 3, size, size),)
    edge = litert_torch.convert(model, sample)
    edge.export(out)
    rng = np.random.default_rng(0)
    for _ in range(2):  # self-check
        x = torch.from_numpy(rng.standard_normal((1, 3, size, size)).astype(np.float32))
        with torch.no_grad():
            ref = model(x).numpy()
        got = edge(x)
        err = float(np.max(np.abs(ref - got)))
        if err > 1e-4 * float(np.max(np.abs(ref))) or ref.argmax() != got.argmax():
            raise SystemExit(f"litert-torch self-check failed: max|diff| {err:.3g}")
    print(f"{out}: {Path(out).stat().st_size} bytes, self-check passed")


if __name__ == "__main__":
    main(*sys.argv[1:4])

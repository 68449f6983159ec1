"""Train the small channel-pruned MobileNetV1 of tests/data/digits/ on scikit-learn's digits.

    .venv/bin/python scripts/train_digits.py [--out tests/data/digits] [--epochs 30]

Writes OUT/mobilenet_v1_digits.pth.tar (the AMC state-dict layout, as torch.save'd by the
AMC code: {'state_dict', 'epoch', 'best_prec1'}) and OUT/split.json (the split recipe).
Inputs are the eval transform of amc_tf.core.preprocess applied to the recipe's images, with a
random 64x64 crop of the 73x73 image for training and the centre crop for evaluation.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import digits_recipe as R  # noqa: E402

from amc_tf.core.netspec import V1, NetSpec, make_blocks  # noqa: E402
from amc_tf.core.preprocess import Preprocessing, normalize, pil_crop  # noqa: E402

# An irregular channel pruning (not multiples of 8), like AMC's.
STEM = 12
WIDTHS = (20, 36, 28, 52, 44, 76, 60, 68, 56, 72, 64, 100, 84)
SPEC = NetSpec(V1, STEM, make_blocks(V1, [(None, w) for w in WIDTHS], STEM), num_classes=10,
               activation="relu", input_size=R.INPUT_SIZE)


def full_images(indices) -> np.ndarray:
    """Normalised float32 [N, 73, 73, 3] (RGB of the grayscale images)."""
    pixels, _ = R.load_digits()
    prep = Preprocessing(size=R.IMAGE_SIZE, resize_size=R.IMAGE_SIZE)
    return np.stack([normalize(pil_crop(R.to_image(pixels[i]).convert("RGB"), prep), prep) for i in indices])


def main() -> None:
    import torch

    from amc_tf.core import torch_models

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "digits")
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(1)  # deterministic and fast enough: a small net on 1437 images
    rng = np.random.default_rng(0)
    _, labels = R.load_digits()
    train_idx, test_idx = R.split(len(labels))
    x_train, x_test = full_images(train_idx), full_images(test_idx)
    y_train = torch.from_numpy(labels[train_idx])
    y_test = labels[test_idx]
    margin = R.IMAGE_SIZE - R.INPUT_SIZE
    centre = int(round(margin / 2.0))
    test_in = x_test[:, centre:centre + R.INPUT_SIZE, centre:centre + R.INPUT_SIZE]

    model = torch_models.build(SPEC, "amc")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=args.epochs * ((len(train_idx) + 63) // 64))
    for epoch in range(args.epochs):
        model.train()
        order = rng.permutation(len(train_idx))
        for start in range(0, len(order), 64):
            b = order[start:start + 64]
            dy, dx = rng.integers(0, margin + 1, 2)
            xb = x_train[b, dy:dy + R.INPUT_SIZE, dx:dx + R.INPUT_SIZE]
            loss = torch.nn.functional.cross_entropy(
                model(torch.from_numpy(np.ascontiguousarray(xb.transpose(0, 3, 1, 2)))), y_train[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        acc = float(np.mean(torch_models.logits(model, test_in).argmax(1) == y_test))
        print(f"epoch {epoch + 1:2d}  loss {loss.item():.3f}  held-out top-1 {acc:.2%}", file=sys.stderr)

    args.out.mkdir(parents=True, exist_ok=True)
    ckpt = args.out / "mobilenet_v1_digits.pth.tar"
    torch_models.save(model, ckpt, epoch=args.epochs, best_prec1=100 * acc, arch="mobilenet_v1-digits-pruned")
    recipe = R.recipe() | {"network": SPEC.to_dict(), "held_out_top1_pytorch": acc,
                           "trained_with": f"torch {torch.__version__}, AdamW + one-cycle lr 3e-3, "
                                           f"{args.epochs} epochs, batch 64, random 64x64 crops, seeds 0"}
    (args.out / "split.json").write_text(json.dumps(recipe, indent=1) + "\n")
    print(f"{ckpt}: {ckpt.stat().st_size / 1e3:.0f} kB, held-out top-1 {acc:.2%}")


if __name__ == "__main__":
    main()

"""Accuracy parity: several backends on the same preprocessed images, compared pair by pair.

Float models (PyTorch, SavedModel, TFLite) get the `pil` crops normalised; uint8 TFLite
models (`--with-preprocessing`) get the same crops as pixels; a SavedModel that preprocesses
inside gets the whole decoded images and is compared with the float SavedModel fed the
`tf` crops (the same ops it runs inside).
"""

from __future__ import annotations

import numpy as np

from amc_tf.core.data import Dataset
from amc_tf.services.evaluate import Backend
from amc_tf.core.preprocess import Preprocessing, normalize


def agreement(a: np.ndarray, b: np.ndarray) -> dict:
    """max / mean |a - b|, min / mean cosine similarity, top-1 and top-5 (same set) agreement."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cos = np.sum(a64 * b64, axis=1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1) + 1e-30)
    k = min(5, a.shape[1])
    top_a = np.sort(np.argsort(-a, axis=1, kind="stable")[:, :k], axis=1)
    top_b = np.sort(np.argsort(-b, axis=1, kind="stable")[:, :k], axis=1)
    return {
        "max_abs_diff": float(np.max(np.abs(a64 - b64))),
        "mean_abs_diff": float(np.mean(np.abs(a64 - b64))),
        "min_cosine": float(np.min(cos)),
        "mean_cosine": float(np.mean(cos)),
        "top1_agreement": float(np.mean(a.argmax(1) == b.argmax(1))),
        "top5_agreement": float(np.mean(np.all(top_a == top_b, axis=1))),
    }


def load_images(dataset: Dataset, n: int, prep: Preprocessing, mode: str, raw: bool = False,
                skipped: list[dict] | None = None) -> list[np.ndarray]:
    """The readable images among the first `n` of `dataset`, as uint8 crops (or whole decoded
    images); the unreadable ones are named in `skipped` ({"file", "error"}), as eval names them."""
    from amc_tf.services.evaluate import _batches

    skipped = [] if skipped is None else skipped
    batches = _batches(dataset, dataset.labels, 0, mode, prep, "raw" if raw else "uint8", 1, n, False, skipped)
    return [img for _, pixels, _ in batches for img in pixels]


def synthetic_images(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """Seeded smooth random RGB images (no data needed): low-frequency noise, upscaled."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        out.append(np.asarray(Image.fromarray(small).resize((size + 37, size + 19), Image.BILINEAR)))
    return out


def run(backend: Backend, images: list[np.ndarray], prep: Preprocessing) -> np.ndarray:
    """Logits of `backend` for `images` (crops for float/uint8 models, whole images for raw ones)."""
    if backend.feed == "raw":
        return np.concatenate([backend.predict(img[None]) for img in images])
    batch = np.stack(images)
    return backend.predict(normalize(batch, prep) if backend.feed == "float" else batch)


def compare_all(logits: dict[str, np.ndarray], extra_pairs: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    names = list(logits)
    pairs = {f"{a}_vs_{b}": agreement(logits[a], logits[b]) for i, a in enumerate(names) for b in names[i + 1:]}
    pairs.update({name: agreement(a, b) for name, (a, b) in extra_pairs.items()})
    return pairs


def gate(pairs: dict, max_diff: float, min_top1: float) -> list[str]:
    """The pairs that fail the thresholds, each with why."""
    failures = []
    for name, fig in pairs.items():
        if fig["max_abs_diff"] > max_diff:
            failures.append(f"{name}: max |diff| {fig['max_abs_diff']:.3g} > {max_diff:g}")
        if fig["top1_agreement"] < min_top1:
            failures.append(f"{name}: top-1 agreement {fig['top1_agreement']:.2%} < {min_top1:.2%}")
    return failures


def tf_crops(images: list[np.ndarray], prep: Preprocessing) -> list[np.ndarray]:
    """The `tf` crops of whole decoded images (the ops a --with-preprocessing SavedModel runs)."""
    import tensorflow as tf

    from amc_tf.core.preprocess import tf_crop

    return [tf_crop(tf.constant(img), prep).numpy() for img in images]

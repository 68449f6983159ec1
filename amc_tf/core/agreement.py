"""How closely a quantized model's logits follow its fp32 model's on the same inputs."""

from __future__ import annotations

import numpy as np


def top_k(logits: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest logits of each row (unordered)."""
    k = min(k, logits.shape[1])
    return np.argpartition(-logits, k - 1, axis=1)[:, :k]


def agreement(reference: np.ndarray, other: np.ndarray) -> dict:
    """Logit error of `other` against `reference` ([N, classes] each) and top-k agreement:
    `top1_agreement` = same arg-max; `top5_agreement` = the reference's top-1 class is among
    `other`'s top 5 (top-5 accuracy with the reference's prediction as the label)."""
    if reference.shape != other.shape:
        raise ValueError(f"logit shapes differ: {reference.shape} vs {other.shape}")
    ref, oth = reference.astype(np.float64), other.astype(np.float64)
    err = np.abs(ref - oth)
    ref_top1 = ref.argmax(1)
    return {
        "images": int(ref.shape[0]),
        "max_logit_error": float(err.max()) if err.size else 0.0,
        "mean_logit_error": float(err.mean()) if err.size else 0.0,
        "max_abs_logit": float(np.abs(ref).max()) if ref.size else 0.0,
        "top1_agreement": float(np.mean(ref_top1 == oth.argmax(1))) if len(ref) else float("nan"),
        "top5_agreement": float(np.mean((top_k(oth, 5) == ref_top1[:, None]).any(1))) if len(ref) else float("nan"),
    }


def accuracy(logits: np.ndarray, labels: np.ndarray) -> dict:
    """top-1 / top-5 of logits against integer labels."""
    return {
        "top1": float(np.mean(logits.argmax(1) == labels)),
        "top5": float(np.mean((top_k(logits, 5) == labels[:, None]).any(1))),
    }

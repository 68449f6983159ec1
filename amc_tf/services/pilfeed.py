"""Evaluation's `pil` image feed without TensorFlow: image files decoded and cropped by
PIL in a few threads (PIL releases the GIL while it decodes and resizes), delivered in
dataset order as (indices, uint8 pixels, labels) batches.

An image that cannot be decoded, or whose resize would pass the bounds
(`preprocess.check_resize`, from its header), is named: `on_skip(path, reason)` is called and the
image is left out, or with `strict` an `UnreadableImage` naming the file stops the run.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import numpy as np

from amc_tf.core.errors import AmcError
from amc_tf.core.preprocess import Preprocessing

STRICT_HINT = "without --strict it is counted and skipped"


class UnreadableImage(AmcError):
    """An image of the dataset could not be decoded (only raised with --strict)."""


def describe(exc: BaseException) -> str:
    """A short reason for a decoder failure (first line of the message, with its type)."""
    from amc_tf.core.data import describe_failure

    return describe_failure(exc)


def pil_batches(files: list[str], labels: np.ndarray, prep: Preprocessing, *, raw: bool, batch_size: int,
                limit: int | None = None, strict: bool = False,
                on_skip: Callable[[str, str], None] | None = None,
                workers: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Batches of (dataset indices, uint8 NHWC pixels, labels); `raw` gives whole decoded
    images one at a time (batch size 1), else centre crops of `prep.size`."""
    from amc_tf.core.preprocess import pil_load_crop, pil_open

    def load(path: str) -> np.ndarray:
        return np.asarray(pil_open(path, prep), np.uint8) if raw else pil_load_crop(path, prep)

    n = len(files) if limit is None else min(limit, len(files))
    size = 1 if raw else batch_size
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    depth = max(2 * size, 4 * workers)  # decoded images held ahead of the model, bounded
    batch: list[tuple[int, np.ndarray]] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="amc-tf-pil") as pool:
        window: deque = deque()
        nxt = 0
        while nxt < n or window:
            while nxt < n and len(window) < depth:
                window.append((nxt, pool.submit(load, files[nxt])))
                nxt += 1
            i, fut = window.popleft()
            try:
                image = fut.result()
            except Exception as exc:  # noqa: BLE001 - any decoder error: the image is unreadable
                reason = describe(exc)
                if strict:
                    for _, other in window:
                        other.cancel()
                    raise UnreadableImage(f"unreadable image {files[i]}: {reason} ({STRICT_HINT})") from None
                if on_skip is not None:
                    on_skip(files[i], reason)
                continue
            batch.append((i, image))
            if len(batch) == size:
                yield _stack(batch, labels)
                batch = []
    if batch:
        yield _stack(batch, labels)


def _stack(batch, labels):
    index = np.asarray([i for i, _ in batch], np.int64)
    return index, np.stack([img for _, img in batch]), np.asarray(labels)[index]

"""Evaluate a model file on a dataset: one tf.data iterator of preprocessed images feeds
any backend (PyTorch checkpoint, SavedModel, TFLite); top-1 / top-5 and the logits.

Backends take files and know nothing of conversion. Each says what it wants fed:
`float` (normalised NHWC float32), `uint8` (the cropped pixels; the model normalises
inside) or `raw` (whole decoded images of any size, one at a time; the model resizes,
crops and normalises inside).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from amc_tf.core.data import Dataset
from amc_tf.core.errors import AmcError
from amc_tf.core.outdir import is_outdir, read_outdir
from amc_tf.core.preprocess import Preprocessing

BACKENDS = ("auto", "torch", "tf", "tflite")


class ModelError(AmcError):
    """The model file cannot be evaluated with the requested backend."""


# --- backends --------------------------------------------------------------------------

@dataclass
class Backend:
    name: str  # torch | tf | tflite
    path: str
    num_classes: int
    input_size: int | None  # None: any size (`raw`)
    feed: str  # float | uint8 | raw
    predict: Callable[[np.ndarray], np.ndarray]
    close: Callable[[], None] = lambda: None  # ends what runs the model (LiteRT's child process)


DEFAULT_INPUT_SIZE = 224  # a PyTorch checkpoint's input size when --input-size is not given

def model_kind(path: str, backend: str = "auto") -> str:
    """torch | tf | tflite: what open_model would run for this path and --backend."""
    path = os.fspath(path)
    if is_outdir(path):  # an OUTDIR means its model.tflite, unless --backend says otherwise
        return "tflite" if backend == "auto" else backend
    if os.path.isdir(path):
        return "tf"
    return "tflite" if path.endswith(".tflite") else "torch"


def needs_tensorflow(path: str, backend: str, mode: str, dataset: Dataset) -> bool:
    """Whether evaluating needs TensorFlow at all (a .tflite on image files with `pil` does not)."""
    return mode == "tf" or bool(dataset.records) or model_kind(path, backend) == "tf"


def outdir_model(path: str, backend: str = "auto") -> tuple[str, str]:
    """(the file an OUTDIR means for --backend, the backend): its model.tflite (quantized when the
    conversion was: the model bench and compare time) unless --backend says otherwise: tf its
    SavedModel (fp32), torch the checkpoint it was converted from, while that is unchanged."""
    out = read_outdir(path)
    if backend == "torch":
        checkpoint, why = out.pytorch_checkpoint()
        if checkpoint is None:
            raise ModelError(f"--backend torch: {path} cannot be evaluated in PyTorch: {why}; "
                             "give the PyTorch checkpoint itself")
        return checkpoint, "torch"
    if backend == "tf":
        return os.fspath(out.saved_model), "tf"
    return os.fspath(out.tflite), "tflite"


def open_model(path: str, backend: str = "auto", *, threads: int = 1, input_size: int | None = None) -> Backend:
    """Open MODEL (a PyTorch checkpoint, a SavedModel, a conversion OUTDIR or a .tflite)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelError(f"{path}: no such file or directory")
    if is_outdir(path):
        path, backend = outdir_model(path, backend)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise ModelError(f"{path}: a directory, but neither a SavedModel nor a conversion output")
        kind = "tf"
    elif path.endswith(".tflite"):
        kind = "tflite"
    else:
        kind = "torch"
    if backend not in ("auto", kind):
        raise ModelError(f"{path} is a {kind} model; --backend {backend} cannot run it"
                         + (" (convert it first: amc-tf convert)" if kind == "torch" else ""))
    opener = {"torch": _open_torch, "tf": _open_saved_model, "tflite": _open_tflite}[kind]
    return opener(path, threads=threads, input_size=input_size)


def _open_torch(path: str, *, threads: int, input_size: int | None) -> Backend:
    from amc_tf.core import torch_reference
    from amc_tf.converters.frontends import load

    if not torch_reference.torch_available():
        raise ModelError(f"{path} is a PyTorch checkpoint: evaluating it needs torch (pip install torch)")
    import torch

    torch.set_num_threads(threads)
    network, state_dict = load(path, input_size=input_size or DEFAULT_INPUT_SIZE)
    spec, keys = network.spec, network.source["layer_keys"]
    return Backend("torch", path, spec.num_classes, spec.input_size, "float",
                   lambda x: torch_reference.forward(spec, state_dict, keys, x))


def _open_saved_model(path: str, *, threads: int, input_size: int | None) -> Backend:
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(path)
        fn = loaded.signatures["serving_default"]
    except (OSError, KeyError, ValueError) as exc:
        raise ModelError(f"{path}: cannot load a serving_default signature ({exc})") from None
    (name, spec), = fn.structured_input_signature[1].items()
    out_key, out_spec = next(iter(fn.structured_outputs.items()))
    size = spec.shape[1]
    if spec.dtype == tf.uint8:
        feed = "raw" if size is None else "uint8"
    else:
        feed = "float"

    def predict(x):
        return fn(**{name: tf.constant(x)})[out_key].numpy()

    predict.keep_alive = loaded  # the concrete function needs its SavedModel object alive
    return Backend("tf", path, int(out_spec.shape[-1]), size, feed, predict)


def _open_tflite(path: str, *, threads: int, input_size: int | None) -> Backend:
    """LiteRT in a child process (a crafted model may crash it); the whole batch is one request."""
    from amc_tf.core.tflite_io import TFLiteModel, quantized_io

    model = TFLiteModel(path, threads=threads)  # refuses what is not an image classifier
    inp = model.input
    feed = "uint8" if inp["dtype"] == np.uint8 and not quantized_io(inp) else "float"
    return Backend("tflite", path, model.num_classes, model.input_size, feed, model.predict, model.close)


def preprocessing_for(model: Backend, input_size: int | None = None) -> Preprocessing:
    size = input_size or model.input_size or DEFAULT_INPUT_SIZE
    if model.input_size is not None and input_size is not None and input_size != model.input_size:
        raise ModelError(f"{model.path} takes {model.input_size}x{model.input_size} inputs, not --input-size {input_size}")
    try:
        return Preprocessing.for_input_size(size)
    except AmcError as exc:  # InputSizeError: name the model
        raise ModelError(f"{model.path}: {exc}") from None


# --- the image pipeline ----------------------------------------------------------------

def image_pipeline(dataset: Dataset, labels: np.ndarray | None, offset: int, mode: str, prep: Preprocessing,
                   feed: str, batch_size: int, limit: int | None = None, strict: bool = False):
    """tf.data of (index, uint8 pixels, model label) in dataset order, decoded in parallel.
    Unreadable images are dropped (their index is missing) unless `strict`."""
    import tensorflow as tf

    from amc_tf.core.preprocess import check_image, pil_load_crop, pil_open, tf_crop, tf_decode

    raw = feed == "raw"
    if dataset.records:
        ds = tf.data.TFRecordDataset(dataset.records)
        features = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
                    "image/class/label": tf.io.FixedLenFeature([], tf.int64)}
        ds = ds.map(lambda r: tf.io.parse_single_example(r, features))
        ds = ds.enumerate().map(lambda i, f: (i, f["image/encoded"], f["image/class/label"] - offset))
        from_bytes = True
    else:
        paths = np.asarray(dataset.files)
        ds = tf.data.Dataset.from_tensor_slices((np.arange(len(paths), dtype=np.int64), paths, labels))
        from_bytes = False
    if limit is not None:
        ds = ds.take(limit)

    if mode == "tf":
        def checked(src):  # the pil path's checks, from the header, before tf allocates the image
            if not from_bytes:  # read once, as a regular file of bounded size (never a FIFO or device)
                from amc_tf.core.fileutil import read_regular
                from amc_tf.core.preprocess import MAX_IMAGE_FILE_BYTES

                src = read_regular(src.decode(), MAX_IMAGE_FILE_BYTES)
            check_image(src, prep)
            return np.asarray(src, dtype=object)  # an object scalar: numpy's bytes dtype would drop trailing NULs

        def decode(i, src, y):
            src = tf.numpy_function(checked, [src], tf.string, stateful=False)
            src.set_shape([])
            image = tf_decode(src)
            return i, (image if raw else tf_crop(image, prep)), y
    else:
        def load(src):
            src = src if from_bytes else src.decode()
            try:
                return np.asarray(pil_open(src, prep), np.uint8) if raw else pil_load_crop(src, prep)
            except Exception as exc:  # any decoder error: the image is unreadable
                raise ValueError(f"unreadable image: {exc}") from None

        def decode(i, src, y):
            image = tf.numpy_function(load, [src], tf.uint8, stateful=False)
            image.set_shape([None, None, 3] if raw else [prep.size, prep.size, 3])
            return i, image, y

    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if not strict:
        ds = ds.ignore_errors()
    return ds.batch(1 if raw else batch_size).prefetch(2)


# --- the evaluation loop ---------------------------------------------------------------

@dataclass
class Progress:
    done: int
    total: int | None
    top1: float
    top5: float
    images_per_s: float


def top_k_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return (top == labels[:, None]).any(axis=1)


def evaluate(model: Backend, dataset: Dataset, *, mode: str = "pil", batch_size: int = 50, limit: int | None = None,
             labels_offset: int | None = None, strict: bool = False, input_size: int | None = None,
             progress: Callable[[Progress], None] | None = None) -> tuple[dict, np.ndarray]:
    """(result dict, logits in dataset order with NaN rows for skipped images).

    `pil` preprocessing of image files runs without TensorFlow (amc_tf.services.pilfeed); `tf`
    preprocessing and TFRecords use a tf.data pipeline. Every skipped image is named in
    the result's `skipped_files` ({"file", "error"}); with `strict` the first one stops the run."""
    from amc_tf.core.preprocess import batch_limit, normalize

    labels, offset = dataset.model_labels(model.num_classes, labels_offset)
    prep = preprocessing_for(model, input_size)
    batch_size = batch_limit(batch_size, prep.size)  # a batch's pixels bounded (large inputs: smaller batches)
    total = len(dataset.files) if dataset.files else None
    if total is not None and limit is not None:
        total = min(total, limit)
    skipped: list[dict] = list(dataset.skipped)  # entries the listing could not follow (symlink loops, ...)
    batches = _batches(dataset, labels, offset, mode, prep, model.feed, batch_size, limit, strict, skipped)
    indices, rows, hit1, hit5 = [], [], 0, 0
    t0 = time.perf_counter()
    for index, pixels, y in batches:
        x = normalize(pixels, prep) if model.feed == "float" else pixels
        logits = np.asarray(model.predict(x), np.float32)
        if np.any(y < 0) or np.any(y >= model.num_classes):
            raise AmcError(f"labels offset {offset} maps a label outside the model's 0..{model.num_classes - 1}")
        hit1 += int(top_k_correct(logits, y, 1).sum())
        hit5 += int(top_k_correct(logits, y, 5).sum())
        indices.append(index)
        rows.append(logits)
        if progress is not None:
            n = sum(len(i) for i in indices)
            progress(Progress(n, total, hit1 / n, hit5 / n, n / (time.perf_counter() - t0)))
    seconds = time.perf_counter() - t0
    index = np.concatenate(indices) if indices else np.zeros(0, np.int64)
    count = total if total is not None else _count_records(dataset.records, limit)
    all_logits = np.full((count, model.num_classes), np.nan, np.float32)
    if len(index):
        all_logits[index] = np.concatenate(rows)
    if count == 0:
        raise AmcError(f"{dataset.root}: the TFRecords hold no images")
    evaluated = len(index)
    if evaluated == 0:
        raise AmcError(f"{dataset.root}: none of the {count} images could be read")
    result = {
        "model": model.path,
        "backend": model.name,
        "model_input": model.feed,
        "preprocess": mode,
        "preprocessing": prep.to_dict(),
        "data": {"root": dataset.root, "layout": dataset.layout, "classes": len(dataset.classes) or None},
        "num_classes": model.num_classes,
        "labels_offset": offset,
        "images": count,
        "evaluated": evaluated,
        "skipped": count - evaluated,
        "skipped_files": skipped,
        "correct_top1": hit1,
        "correct_top5": hit5,
        "top1": hit1 / evaluated,
        "top5": hit5 / evaluated,
        "seconds": round(seconds, 3),
        "images_per_s": round(evaluated / seconds, 1) if seconds > 0 else None,
    }
    return result, all_logits


def _item_name(dataset: Dataset, i: int) -> str:
    return dataset.files[i] if dataset.files else f"record {i} of {dataset.root}"


def _batches(dataset: Dataset, labels, offset: int, mode: str, prep: Preprocessing, feed: str, batch_size: int,
             limit: int | None, strict: bool, skipped: list[dict]):
    """numpy batches (indices, pixels, labels) in dataset order; skipped images go to `skipped`."""
    if mode == "pil" and dataset.files:
        from amc_tf.services.pilfeed import pil_batches

        yield from pil_batches(dataset.files, labels, prep, raw=feed == "raw", batch_size=batch_size, limit=limit,
                               strict=strict, on_skip=lambda f, why: skipped.append({"file": f, "error": why}))
        return
    from amc_tf.services.pilfeed import STRICT_HINT, UnreadableImage

    # tf.data drops undecodable items (ignore_errors); a gap in the indices names them
    pipeline = image_pipeline(dataset, labels, offset, mode, prep, feed, batch_size, limit, strict=False)
    expected = 0

    def gap(upto: int) -> None:
        for i in range(expected, upto):
            name = _item_name(dataset, i)
            if strict:
                raise UnreadableImage(f"unreadable image {name}: {_skip_reason(dataset, i, prep)} ({STRICT_HINT})")
            skipped.append({"file": name, "error": _skip_reason(dataset, i, prep)})

    for index, pixels, y in pipeline:
        index = index.numpy()
        for i in index:
            gap(int(i))
            expected = int(i) + 1
        yield index, pixels.numpy(), y.numpy()
    count = len(dataset.files) if dataset.files else _count_records(dataset.records, limit)
    gap(count if limit is None else min(count, limit))


def _skip_reason(dataset: Dataset, i: int, prep: Preprocessing) -> str:
    """Why tf.data dropped item i: over the pixel or resize bounds (named as the pil path names
    it), or undecodable."""
    if dataset.files:
        from amc_tf.services.pilfeed import describe
        from amc_tf.core.preprocess import check_image

        try:
            check_image(dataset.files[i], prep)
        except Exception as exc:  # noqa: BLE001 - DecompressionBombError
            return describe(exc)
    return "could not be decoded"


def _count_records(records: list[str], limit: int | None) -> int:
    """How many examples the TFRecord shards hold (a fast pass over the raw records)."""
    import tensorflow as tf

    ds = tf.data.TFRecordDataset(records)
    if limit is not None:
        ds = ds.take(limit)
    return int(ds.reduce(np.int64(0), lambda n, _: n + 1).numpy())


def save_logits(path: str, logits: np.ndarray, overwrite: bool = True) -> None:
    """Write the logits (.npy) via a temp file, so a failed run leaves nothing half-written;
    without `overwrite` a file that appeared at `path` meanwhile is kept (FileExistsError)."""
    import io

    from amc_tf.core.fileutil import write_file

    buf = io.BytesIO()
    np.save(buf, logits)
    write_file(path, buf.getvalue(), overwrite=overwrite)


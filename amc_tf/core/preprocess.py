"""Image preprocessing: PyTorch's ImageNet eval transform, exactly (`pil`), and a fast
tf.image version (`tf`).

Both split the transform in two steps, so a model that normalises inside (exported with
`--with-preprocessing`) can be fed the same pixels:

* `crop`: decode -> RGB -> resize the shorter side to `resize_size` -> centre crop
  `size` -> uint8 [size, size, 3];
* `normalize`: uint8 -> float32 in [0,1] -> (x - mean) / std, in float32 as torchvision's
  ToTensor + Normalize compute it.

The `pil` crop reproduces torchvision's `Resize(256)` + `CenterCrop(224)` on a PIL image
without torchvision: the shorter side becomes `resize_size` and the longer
`int(resize_size * long / short)`; PIL's bilinear filter (which antialiases when shrinking);
the crop offset is `int(round((side - size) / 2))` with Python's round (half to even).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from amc_tf.core.errors import AmcError
from amc_tf.core.netspec import IMAGENET_MEAN, IMAGENET_STD

CROP_FRACTION = 0.875  # 224 / 256
MODES = ("pil", "tf")

# Bounds on what preprocessing builds (docs/security.md), checked from the header before decoding
# or resizing: an image's resize amplification, a model's input size, a batch's pixels.
MAX_DECODED_PIXELS = 1 << 25  # pixels of an image to decode (33.5M: 6,700 x 5,000; PIL's own limit is 179M)
MAX_ASPECT_RATIO = 100  # long side / short side of an image (panoramas reach about 10:1)
MAX_RESIZED_PIXELS = 1 << 24  # pixels after resizing the shorter side (a 256 x 65,536 strip; 48 MiB of RGB)
MAX_INPUT_SIZE = 1024  # a model's input side (the toolkit converts 32..1024)
MAX_BATCH_PIXELS = 1 << 24  # pixels of one evaluation batch (50 x 224 x 224 is 2.5M)


class ImageTooLarge(ValueError):
    """An image whose resize would pass the bounds: skipped and named as an unreadable one is."""


class InputSizeError(AmcError):
    """A model's declared input size is beyond what preprocessing will build (exit 2)."""


def check_input_size(size: int, what: str = "the model's input") -> int:
    """`size`, or InputSizeError when it is not 1..MAX_INPUT_SIZE (every image would be resized
    to int(size / 0.875) on its shorter side)."""
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_INPUT_SIZE:
        resize = f" (every image resized to {int(size / CROP_FRACTION)} on its shorter side)" \
            if isinstance(size, int) and size > MAX_INPUT_SIZE else ""
        raise InputSizeError(f"{what} is {size}x{size}{resize}, beyond the limit of {MAX_INPUT_SIZE}x{MAX_INPUT_SIZE}; "
                             "refused before preprocessing any image")
    return size


def check_resize(width: int, height: int, prep: "Preprocessing") -> tuple[int, int]:
    """(height, width) after resizing the shorter side to `prep.resize_size`, or ImageTooLarge when
    the image's decoded pixels, its aspect ratio or the resized pixel count pass the bounds. The
    one check of decoding and resize amplification, made from the header before decoding
    (`check_image`, `pil_open`) and before every resize (`pil_crop`)."""
    if width < 1 or height < 1:
        raise ImageTooLarge(f"{width}x{height} image: no pixels")
    if width * height > MAX_DECODED_PIXELS:
        raise ImageTooLarge(f"{width}x{height} image: {width * height:,} pixels to decode, over the limit of "
                            f"{MAX_DECODED_PIXELS:,}")
    ratio = max(width, height) / min(width, height)
    new_h, new_w = resized_shape(height, width, prep.resize_size)
    if ratio > MAX_ASPECT_RATIO:
        raise ImageTooLarge(f"{width}x{height} image: aspect ratio {ratio:.0f}:1, over the limit of {MAX_ASPECT_RATIO}:1 "
                            f"(resizing its shorter side to {prep.resize_size} would give {new_w}x{new_h})")
    if new_h * new_w > MAX_RESIZED_PIXELS:
        raise ImageTooLarge(f"{width}x{height} image: resizing its shorter side to {prep.resize_size} gives {new_w}x{new_h} "
                            f"({new_w * new_h:,} pixels), over the limit of {MAX_RESIZED_PIXELS:,}")
    return new_h, new_w


def batch_limit(batch_size: int, size: int) -> int:
    """`batch_size`, lowered so one batch of size x size images stays within MAX_BATCH_PIXELS."""
    return max(1, min(batch_size, MAX_BATCH_PIXELS // max(1, size * size)))


@dataclass(frozen=True)
class Preprocessing:
    size: int = 224
    resize_size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @classmethod
    def for_input_size(cls, size: int, **kwargs) -> "Preprocessing":
        """The eval transform of a model with this input size: resize to int(size / 0.875).
        A size beyond MAX_INPUT_SIZE is refused (InputSizeError)."""
        size = check_input_size(int(size) if not isinstance(size, bool) else size)
        return cls(size=size, resize_size=int(size / CROP_FRACTION), **kwargs)

    def to_dict(self) -> dict:
        return {"size": self.size, "resize_size": self.resize_size, "mean": list(self.mean), "std": list(self.std)}


def resized_shape(height: int, width: int, short: int) -> tuple[int, int]:
    """(height, width) after resizing the shorter side to `short`, as torchvision computes it."""
    if width <= height:
        return int(short * height / width), short
    return short, int(short * width / height)


def crop_offsets(height: int, width: int, size: int) -> tuple[int, int]:
    """(top, left) of torchvision's centre crop."""
    if height < size or width < size:
        raise ValueError(f"image {height}x{width} is smaller than the {size}x{size} crop")
    return int(round((height - size) / 2.0)), int(round((width - size) / 2.0))


# --- pil -------------------------------------------------------------------------------

def pil_open(source, prep: "Preprocessing | None" = None):
    """A PIL image in RGB from a path or encoded bytes (grayscale, CMYK, palette and alpha
    images are converted as torchvision's default loader does: `Image.convert("RGB")`). With
    `prep`, an image whose resize would pass the bounds is refused (ImageTooLarge) from its
    header, before it is decoded."""
    from PIL import Image

    if isinstance(source, (bytes, bytearray, memoryview)):
        with Image.open(io.BytesIO(bytes(source))) as img:
            if prep is not None:
                check_resize(*img.size, prep)
            return img.convert("RGB")
    with _open_image_file(source) as fh, Image.open(fh) as img:
        if prep is not None:
            check_resize(*img.size, prep)
        return img.convert("RGB")


MAX_IMAGE_FILE_BYTES = 256 << 20  # an image file over 256 MiB is not a photo to classify


def _open_image_file(path):
    """The image file opened through amc_tf.core.fileutil.open_regular: a FIFO or a device named
    like an image is refused before a byte is read (ValueError, as an undecodable image)."""
    from amc_tf.core.fileutil import NotRegularFileError, open_regular

    try:
        return open_regular(path, MAX_IMAGE_FILE_BYTES)
    except NotRegularFileError:
        raise ValueError("not a regular file (a device, FIFO or socket)") from None


def check_image(source, prep: "Preprocessing | None" = None):
    """`source` (a path or encoded bytes) unchanged, after reading only its header: PIL's
    DecompressionBombError over PIL's pixel limit, and with `prep` ImageTooLarge when resizing it
    would pass the bounds (`check_resize`). A file PIL cannot identify passes (the tf decoder
    judges it). The `tf` path calls this before decoding, so both paths skip the same images."""
    from PIL import Image

    if isinstance(source, (bytes, bytearray, memoryview)):
        stream = io.BytesIO(bytes(source))
    else:
        stream = _open_image_file(source)
    try:
        with stream, Image.open(stream) as img:
            size = img.size
    except Image.DecompressionBombError:
        raise
    except Exception:  # noqa: BLE001 - not PIL's to judge here
        return source
    if prep is not None:
        check_resize(*size, prep)
    return source


def check_pixels(source):
    """`check_image` without a preprocessing: PIL's pixel limit only (DecompressionBombError)."""
    return check_image(source, None)


def pil_crop(image, prep: Preprocessing) -> np.ndarray:
    """uint8 [size, size, 3]: the PIL image resized (shorter side) and centre-cropped."""
    from PIL import Image

    width, height = image.size
    new_h, new_w = check_resize(width, height, prep)
    if (new_h, new_w) != (height, width):
        image = image.resize((new_w, new_h), Image.BILINEAR)
    top, left = crop_offsets(new_h, new_w, prep.size)
    image = image.crop((left, top, left + prep.size, top + prep.size))
    return np.asarray(image, dtype=np.uint8)


def pil_load_crop(source, prep: Preprocessing) -> np.ndarray:
    return pil_crop(pil_open(source, prep), prep)


def normalize(pixels: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """uint8 [..., 3] -> float32 (x / 255 - mean) / std, each step in float32 as in torchvision."""
    x = pixels.astype(np.float32) / np.float32(255.0)
    return (x - np.asarray(prep.mean, np.float32)) / np.asarray(prep.std, np.float32)


# --- tf --------------------------------------------------------------------------------

def tf_decode(encoded):
    """uint8 [H, W, 3] from JPEG/PNG/GIF/BMP bytes (grayscale replicated to RGB)."""
    import tensorflow as tf

    image = tf.io.decode_image(encoded, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    return image


def tf_crop(image, prep: Preprocessing):
    """uint8 [..., size, size, 3] from uint8 [..., H, W, 3] (one image or a batch of one size):
    shorter side resized with tf.image bilinear (antialiased, like PIL when shrinking), centre
    crop with torchvision's offsets, rounded back to uint8."""
    import tensorflow as tf

    shape = tf.shape(image)
    h, w = shape[-3], shape[-2]
    short = tf.cast(prep.resize_size, tf.float64)
    hf, wf = tf.cast(h, tf.float64), tf.cast(w, tf.float64)
    new_h = tf.where(w <= h, tf.cast(tf.math.floor(short * hf / wf), tf.int32), prep.resize_size)
    new_w = tf.where(w <= h, prep.resize_size, tf.cast(tf.math.floor(short * wf / hf), tf.int32))
    same = tf.logical_and(tf.equal(new_h, h), tf.equal(new_w, w))
    resized = tf.cond(
        same,
        lambda: tf.cast(image, tf.float32),
        lambda: tf.image.resize(image, tf.stack([new_h, new_w]), method="bilinear", antialias=True),
    )
    # Python's round() is half-to-even; so is tf.math.round.
    top = tf.cast(tf.math.round(tf.cast(new_h - prep.size, tf.float64) / 2.0), tf.int32)
    left = tf.cast(tf.math.round(tf.cast(new_w - prep.size, tf.float64) / 2.0), tf.int32)
    cropped = resized[..., top:top + prep.size, left:left + prep.size, :]
    cropped = tf.cast(tf.clip_by_value(tf.math.round(cropped), 0.0, 255.0), tf.uint8)
    return tf.ensure_shape(cropped, [None] * (image.shape.rank - 3) + [prep.size, prep.size, 3])


def tf_normalize(pixels, prep: Preprocessing):
    """The same arithmetic as `normalize`, as TF ops (uint8 or float input in 0..255)."""
    import tensorflow as tf

    x = tf.cast(pixels, tf.float32) / 255.0
    return (x - tf.constant(prep.mean, tf.float32)) / tf.constant(prep.std, tf.float32)

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

from amc_tf.core.netspec import IMAGENET_MEAN, IMAGENET_STD

CROP_FRACTION = 0.875  # 224 / 256
MODES = ("pil", "tf")


@dataclass(frozen=True)
class Preprocessing:
    size: int = 224
    resize_size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @classmethod
    def for_input_size(cls, size: int, **kwargs) -> "Preprocessing":
        """The eval transform of a model with this input size: resize to int(size / 0.875)."""
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

def pil_open(source):
    """A PIL image in RGB from a path or encoded bytes (grayscale, CMYK, palette and alpha
    images are converted as torchvision's default loader does: `Image.convert("RGB")`)."""
    from PIL import Image

    if isinstance(source, (bytes, bytearray, memoryview)):
        with Image.open(io.BytesIO(bytes(source))) as img:
            return img.convert("RGB")
    with _open_image_file(source) as fh, Image.open(fh) as img:
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


def check_regular_file(path) -> None:
    """OSError for a path that cannot be resolved (a symlink loop, ...), ValueError for one that
    is not a regular file (a device such as /dev/zero, a FIFO): never read such a file as an image."""
    import os
    import stat

    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ValueError("not a regular file (a device, FIFO or socket)")


def check_pixels(source):
    """`source` (a path or encoded bytes) unchanged, or PIL's DecompressionBombError when its
    header gives more pixels than PIL decodes (2 x Image.MAX_IMAGE_PIXELS, the limit `pil_open`
    applies). Only the header is read (PIL.Image.open is lazy); a file PIL cannot identify passes
    (the tf decoder judges it). The `tf` path checks this before decoding, so both paths skip
    the same images. A path must name a regular file (`check_regular_file`)."""
    from PIL import Image

    if isinstance(source, (bytes, bytearray, memoryview)):
        stream = io.BytesIO(bytes(source))
    else:
        stream = _open_image_file(source)
    try:
        with stream, Image.open(stream):
            pass
    except Image.DecompressionBombError:
        raise
    except Exception:  # noqa: BLE001 - not PIL's to judge here
        pass
    return source


def pil_crop(image, prep: Preprocessing) -> np.ndarray:
    """uint8 [size, size, 3]: the PIL image resized (shorter side) and centre-cropped."""
    from PIL import Image

    width, height = image.size
    new_h, new_w = resized_shape(height, width, prep.resize_size)
    if (new_h, new_w) != (height, width):
        image = image.resize((new_w, new_h), Image.BILINEAR)
    top, left = crop_offsets(new_h, new_w, prep.size)
    image = image.crop((left, top, left + prep.size, top + prep.size))
    return np.asarray(image, dtype=np.uint8)


def pil_load_crop(source, prep: Preprocessing) -> np.ndarray:
    return pil_crop(pil_open(source), prep)


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

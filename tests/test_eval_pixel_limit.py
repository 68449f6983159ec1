"""`eval --preprocess tf` applies the pil path's pixel limit (PIL's
decompression-bomb rule, from the header, before decoding): both paths skip and name the same file."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

AMC_TF = [sys.executable, "-m", "amc_tf"]
DIGITS = Path(__file__).parent / "data" / "digits" / "mobilenet_v1_digits.pth.tar"


def png_bomb(path: Path, side: int) -> None:
    """A grayscale PNG of side x side zero pixels, written row by row (small file, no big buffer)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    row = bytes(1 + side)
    idat = b"".join([comp.compress(row) for _ in range(side)] + [comp.flush()])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def bomb_data(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("bomb") / "data"
    for c in range(10):
        (root / str(c)).mkdir(parents=True)
        Image.fromarray(np.full((80, 80, 3), c * 20, np.uint8)).save(root / str(c) / "a.png")
    side = 14000  # 196 M pixels > 2 x PIL.Image.MAX_IMAGE_PIXELS: PIL refuses it
    assert side * side > 2 * Image.MAX_IMAGE_PIXELS
    png_bomb(root / "0" / "bomb.png", side)
    return root


@pytest.mark.parametrize("mode", ["pil", "tf"])
def test_both_paths_skip_and_name_the_bomb(bomb_data, mode):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([*AMC_TF, "eval", str(DIGITS), "--input-size", "64", "--data", str(bomb_data),
                           "--preprocess", mode, "--json", "-q"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["images"], result["evaluated"], result["skipped"]) == (11, 10, 1)
    (item,) = result["skipped_files"]
    assert item["file"] == str(bomb_data / "0" / "bomb.png")
    assert item["error"].startswith("DecompressionBombError: Image size (196000000 pixels) exceeds limit")
    assert f"skipped (unreadable): {bomb_data / '0' / 'bomb.png'}: DecompressionBombError" in proc.stderr


def test_check_pixels_reads_only_the_header(bomb_data):
    from PIL import Image

    from amc_tf.core.preprocess import check_pixels

    data = (bomb_data / "0" / "bomb.png").read_bytes()
    with pytest.raises(Image.DecompressionBombError):
        check_pixels(data)
    with pytest.raises(Image.DecompressionBombError):
        check_pixels(str(bomb_data / "0" / "bomb.png"))
    ok = (bomb_data / "1" / "a.png").read_bytes()
    assert check_pixels(ok) is ok
    assert check_pixels(b"not an image") == b"not an image"  # not PIL's to judge: tf decides

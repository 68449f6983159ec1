"""Hostile and broken checkpoints given to the real CLI in a subprocess (a segfault, a memory
bomb or a traceback is only visible from outside): each must end in exactly one `error:` line
naming the file, exit 2, nothing in the output path, under 2.5 GB peak RSS and 90 s."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from hostile import (Build, Call, Global, Raw, Storages, Tensor, deflated_zeros, emit, legacy_checkpoint,
                     raw_zip, reemit, run_measured, cli_command, state_dict_node, zip_checkpoint)

MAX_RSS_MB = 2500
MAX_WALL_S = 90
FIGURES: dict[str, tuple[float, float]] = {}


def _small(tmp, records_fn, fmt="zip", floats=64):
    st = Storages()
    arr = np.arange(floats, dtype=np.float32)
    st.data["0"] = arr.tobytes()
    obj = state_dict_node(records_fn(floats))
    write = zip_checkpoint if fmt == "zip" else legacy_checkpoint
    return write(tmp / f"x.{fmt}.pth", obj, st.data)


def _t(**kw):
    return lambda n: {"conv.weight": Tensor("0", numel=n, **kw)}


def _real(tmp, real_sd, tamper, fmt="zip"):
    """A real torch-saved MobileNet re-emitted record by record, `tamper(records)` applied."""
    st = Storages()
    records = reemit(real_sd, st)
    tamper(records)
    if fmt == "zip":
        return zip_checkpoint(tmp / "real.zip.pth", state_dict_node(records), st.data)
    return legacy_checkpoint(tmp / "real.legacy.pth", state_dict_node(records), st.data, itemsizes=st.itemsizes)


def _beta(records):
    """The first BatchNorm's beta (bias beside a running_mean)."""
    return next(k for k in records if k.endswith(".bias") and k[:-4] + "running_mean" in records)


def _neg_beta(records):
    key = _beta(records)
    records[key].stride = (-1,)


def _bomb_4gib(tmp):
    data, crc, size = deflated_zeros(63)
    pkl = emit(state_dict_node({"w": Tensor("0", 0, (size // 4,), (1,), numel=size // 4)}))
    return raw_zip(tmp / "bomb.pth", [("archive/data.pkl", pkl, 0, zlib.crc32(pkl), len(pkl)),
                                      ("archive/data/0", data, 8, crc, size)])


def _ratio_bomb(tmp):
    data, crc, size = deflated_zeros(4, 16 << 20)  # 64 MiB of zeros in ~64 KB: a ratio of ~1000
    pkl = emit(state_dict_node({"w": Tensor("0", 0, (16,), (1,), numel=16)}))
    return raw_zip(tmp / "ratio.pth", [("archive/data.pkl", pkl, 0, zlib.crc32(pkl), len(pkl)),
                                       ("archive/data/0", data, 8, crc, size)])


def _many_views(tmp):
    """2000 tensors viewing one 64 MiB storage: read once, not 2000 times."""
    st = {"0": bytes(64 << 20)}
    records = {f"t{i}": Tensor("0", i * 16, (16,), (1,), numel=16 << 20) for i in range(2000)}
    return zip_checkpoint(tmp / "views.pth", state_dict_node(records), st)


def _bad_central_directory(tmp):
    path = _small(tmp, _t(size=(4,), stride=(1,)))
    raw = bytearray(path.read_bytes())
    cd = raw.rindex(b"PK\x01\x02")  # the last central entry: set its utf-8 flag, break its name
    raw[cd + 8:cd + 10] = struct.pack("<H", 0x800)
    name_len = struct.unpack("<H", raw[cd + 28:cd + 30])[0]
    raw[cd + 46:cd + 46 + name_len] = b"\xff\xfe" * (name_len // 2) + b"\xff" * (name_len % 2)
    path.write_bytes(bytes(raw))
    return path


def _nested(tmp, depth=100_000):
    deep = Raw(b"]" * depth + b"a" * (depth - 1))  # a list in a list in a list...
    return legacy_checkpoint(tmp / "deep.pth", {"state_dict": deep}, {})


def _self_containing(tmp):
    loop = Raw(b"}q\x00X\x0a\x00\x00\x00state_dicth\x00s")
    return legacy_checkpoint(tmp / "loop.pth", loop, {})


CASES = {
    # found by the audit
    "neg-stride-50M": (lambda tmp, sd: _small(tmp, _t(size=(50_000_000,), stride=(-1,))), r"stride .* is negative"),
    "neg-stride-64": (lambda tmp, sd: _small(tmp, _t(offset=63, size=(64,), stride=(-1,))), r"negative"),
    "real-bn-beta-neg-stride": (lambda tmp, sd: _real(tmp, sd, _neg_beta), r"negative"),
    "real-bn-beta-neg-stride-legacy": (lambda tmp, sd: _real(tmp, sd, _neg_beta, "legacy"), r"negative"),
    "zero-stride-40000x40000": (lambda tmp, sd: _small(tmp, _t(size=(40000, 40000), stride=(0, 0))),
                                r"size \(40000, 40000\) has more than 67108864 elements"),
    "zero-stride-1e6x1e6": (lambda tmp, sd: _small(tmp, _t(size=(10**6, 10**6), stride=(0, 0)), "legacy"),
                            r"more than 67108864 elements"),
    "deflate-bomb-4GiB": (lambda tmp, sd: _bomb_4gib(tmp), r"archive/data/0 is 4227858432 bytes, over the limit"),
    "size-None": (lambda tmp, sd: _small(tmp, _t(size=None, stride=(1,))), r"size is None"),
    "bad-central-directory": (lambda tmp, sd: _bad_central_directory(tmp), r"corrupt or truncated checkpoint"),
    # more of the same kind
    "deflate-ratio-bomb": (lambda tmp, sd: _ratio_bomb(tmp), r"expands from \d+ to 67108864 bytes .* compression bomb"),
    "stride-past-end": (lambda tmp, sd: _small(tmp, _t(size=(10,), stride=(8,))), r"reaches element 72 of storage 0, which has 64"),
    "offset-past-end": (lambda tmp, sd: _small(tmp, _t(offset=64, size=(1,), stride=(1,))), r"reaches element 64"),
    "negative-offset": (lambda tmp, sd: _small(tmp, _t(offset=-1, size=(1,), stride=(1,))), r"offset is -1"),
    "float-size": (lambda tmp, sd: _small(tmp, _t(size=(2.5,), stride=(1,))), r"non-integer"),
    "rank-mismatch": (lambda tmp, sd: _small(tmp, _t(size=(4, 4), stride=(1,))), r"different ranks"),
    "real-offset-past-end": (lambda tmp, sd: _real(tmp, sd, lambda r: setattr(r[_beta(r)], "offset", 10**6)),
                             r"reaches element"),
    "build-on-storage-type": (lambda tmp, sd: zip_checkpoint(tmp / "b.pth", Build(Global("torch", "FloatStorage"),
                              {"name": "ByteStorage"}), {}), r"sets the state of a StorageType"),
    "build-on-function": (lambda tmp, sd: zip_checkpoint(tmp / "f.pth", Build(Global("torch._utils", "_rebuild_tensor_v2"),
                          {"x": 1}), {}), r"sets the state of a function"),
    "os-system": (lambda tmp, sd: zip_checkpoint(tmp / "o.pth", Call(Global("os", "system"), ("true",)), {}),
                  r"asks for os.system"),
    "bytearray8-2TiB": (lambda tmp, sd: zip_checkpoint(tmp / "ba.pth", Raw(b"\x96" + struct.pack("<Q", 2**41)), {}),
                        r"bytearray"),
    "legacy-negative-count": (lambda tmp, sd: legacy_checkpoint(tmp / "n.pth", state_dict_node(_t(size=(4,), stride=(1,))(4)),
                              {"0": bytes(16)}, counts={"0": -5}), r"claims -5 elements"),
    "legacy-huge-count": (lambda tmp, sd: legacy_checkpoint(tmp / "h.pth", state_dict_node(_t(size=(4,), stride=(1,))(4)),
                          {"0": bytes(16)}, counts={"0": 2**40}), r"claims 1099511627776 elements"),
    "storage-read-once": (lambda tmp, sd: _many_views(tmp), r"unexpected parameters t0 .* not a MobileNetV1/V2"),
    "deeply-nested": (lambda tmp, sd: _nested(tmp, 1000), r"nested more than 100 levels"),
    "contains-itself": (lambda tmp, sd: _self_containing(tmp), r"contains itself"),
    "dev-zero": (lambda tmp, sd: Path("/dev/zero"), r"not a regular file"),
    "fifo": (lambda tmp, sd: (os.mkfifo(tmp / "f.pth"), tmp / "f.pth")[1], r"not a regular file"),
    "pickle-garbage": (lambda tmp, sd: (tmp / "g.pth").write_bytes(b"\x80\x02" + bytes(range(256)) * 40) and tmp / "g.pth",
                       r"corrupt or truncated|not a PyTorch checkpoint"),
}


@pytest.fixture(scope="module")
def real_sd(make_checkpoint):
    import torch

    path, _, _ = make_checkpoint("odd-v2", "amc", "zip")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.numpy() for k, v in obj.get("state_dict", obj).items()}


def test_reemitted_real_checkpoint_is_read_exactly(tmp_path, real_sd):
    """The crafting is faithful: the untampered re-emit reads back as the torch-saved original."""
    from amc_tf.core.checkpoint import load_state_dict

    for fmt in ("zip", "legacy"):
        got = load_state_dict(_real(tmp_path, real_sd, lambda r: None, fmt))
        assert list(got) == list(real_sd)
        for k, v in real_sd.items():
            np.testing.assert_array_equal(got[k], v)


def assert_one_error_line(run, *, code=2, file=None, pattern=None, progress=False):
    """Exit `code`, no traceback, and stderr exactly one `error:` line (with `progress`: the
    command has no --quiet, so progress lines may come before it; the error line is the last)."""
    assert run.returncode == code, (run.returncode, run.stderr[-2000:])
    assert "Traceback" not in run.stderr
    errors = [line for line in run.lines if line.startswith("error:")]
    assert len(errors) == 1 and run.lines[-1] == errors[0], run.stderr[-2000:]
    assert progress or len(run.lines) == 1, run.stderr[-2000:]
    if file is not None:
        assert errors[0].startswith(f"error: {file}: "), errors[0]
    if pattern is not None:
        import re

        assert re.search(pattern, errors[0]), errors[0]
    print(f"[figure] exit {run.returncode}, peak RSS {run.max_rss_mb:.0f} MB, {run.wall_s:.1f} s: {errors[0][:150]}")
    assert run.max_rss_mb < MAX_RSS_MB and run.wall_s < MAX_WALL_S, (run.max_rss_mb, run.wall_s)


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_checkpoint_is_one_error_line(case, tmp_path, real_sd):
    make, pattern = CASES[case]
    ckpt = make(tmp_path, real_sd)
    out = tmp_path / "outputs" / "model"
    run = run_measured(cli_command("convert", ckpt, "-o", out, "-q"))
    print(f"\n[case] {case}")
    assert_one_error_line(run, file=None if case == "storage-read-once" else ckpt, pattern=pattern)
    assert not out.exists()
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").iterdir())


def test_build_cannot_change_the_allow_list_for_later_files(tmp_path, real_sd):
    """The audit's attack: BUILD on a shared storage type made later good files load as uint8."""
    from amc_tf.core.checkpoint import load_state_dict
    from amc_tf.core.errors import UnsafePickleError

    for target in (Global("torch", "FloatStorage"), Global("collections", "OrderedDict"),
                   Global("argparse", "Namespace"), Global("numpy", "dtype")):
        bad = zip_checkpoint(tmp_path / "bad.pth", Build(target, {"name": "ByteStorage", "dtype": "u1"}), {})
        with pytest.raises(UnsafePickleError, match="sets the state of"):
            load_state_dict(bad)
    good = load_state_dict(_real(tmp_path, real_sd, lambda r: None))
    for k, v in real_sd.items():
        assert got_dtype_ok(good[k], v)


def got_dtype_ok(got, want) -> bool:
    return got.dtype == want.dtype and np.array_equal(got, want)

"""The torch-free checkpoint reader against checkpoints written by real torch.save."""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from amc_tf.core.checkpoint import checkpoint_metadata, load_state_dict
from amc_tf.core.errors import CheckpointError, UnsafePickleError


def _tensors():
    g = torch.Generator().manual_seed(3)
    base = torch.randn(6, 5, generator=g)
    return collections.OrderedDict(
        conv=torch.randn(4, 3, 3, 3, generator=g),
        strided=base[::2, 1:4],  # a view with offset and strides
        transposed=base.t(),
        half=torch.randn(7, generator=g).half(),
        double=torch.randn(2, 2, generator=g).double(),
        bfloat=torch.randn(5, generator=g).bfloat16(),
        count=torch.tensor(17),  # BN's num_batches_tracked: a 0-d int64
        empty=torch.zeros(0, 3),
    )


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("wrap", ["bare", "state_dict", "dataparallel"])
def test_reads_what_torch_wrote(tmp_path, fmt, wrap):
    sd = _tensors()
    stored = collections.OrderedDict((f"module.{k}" if wrap == "dataparallel" else k, v) for k, v in sd.items())
    obj = stored if wrap == "bare" else {"state_dict": stored, "epoch": 150, "best_prec1": torch.tensor(70.494)}
    path = tmp_path / "ckpt.pth.tar"
    torch.save(obj, path, _use_new_zipfile_serialization=(fmt == "zip"))
    got = load_state_dict(path)
    assert list(got) == list(sd)
    for key, ref in sd.items():
        want = ref.float().numpy() if ref.dtype == torch.bfloat16 else ref.numpy()
        assert got[key].dtype == want.dtype, key
        assert got[key].shape == want.shape, key
        np.testing.assert_array_equal(got[key], want, err_msg=key)
    if wrap != "bare":
        meta = checkpoint_metadata(path)
        assert meta["epoch"] == 150
        assert meta["best_prec1"] == pytest.approx(70.494, abs=1e-4)


def test_shared_storage_between_tensors(tmp_path):
    base = torch.arange(12, dtype=torch.float32)
    sd = {"a": base[:6].view(2, 3), "b": base[6:].view(3, 2)}
    for fmt in (True, False):
        torch.save(sd, tmp_path / "s.pt", _use_new_zipfile_serialization=fmt)
        got = load_state_dict(tmp_path / "s.pt")
        np.testing.assert_array_equal(got["a"], np.arange(6).reshape(2, 3))
        np.testing.assert_array_equal(got["b"], np.arange(6, 12).reshape(3, 2))


class _Boom:
    """Unpickling this would run os.system: the reader must refuse it without running it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("fmt", ["zip", "legacy", "plain-pickle"])
def test_hostile_pickle_is_refused_and_not_executed(tmp_path, fmt):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    if fmt == "plain-pickle":
        path.write_bytes(pickle.dumps({"epoch": 1, "x": _Boom(marker)}, protocol=2))
    else:
        torch.save({"state_dict": {"w": torch.ones(2)}, "x": _Boom(marker)}, path,
                   _use_new_zipfile_serialization=(fmt == "zip"))
    # the payload is live: plain pickle would run it
    live = tmp_path / "live"
    pickle.loads(pickle.dumps(_Boom(live)))
    assert live.exists()
    with pytest.raises(UnsafePickleError, match="posix.system|os.system|nt.system"):
        load_state_dict(path)
    assert not marker.exists()


def test_pickled_module_is_refused_with_advice(tmp_path):
    path = tmp_path / "whole.pth"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(UnsafePickleError, match="state_dict"):
        load_state_dict(path)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("keep", [0.3, 0.9, 0.999])
def test_truncated_files_raise_checkpoint_error(tmp_path, fmt, keep):
    path = tmp_path / "t.pth"
    torch.save({"w": torch.randn(64, 64), "b": torch.randn(64)}, path, _use_new_zipfile_serialization=(fmt == "zip"))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError):
        load_state_dict(path)


@pytest.mark.parametrize("content", [b"", b"hello, this is text\n", b"\x89PNG\r\n\x1a\n" + bytes(100)])
def test_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_state_dict(path)


def test_zip_without_data_pkl(tmp_path):
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(CheckpointError, match="data.pkl"):
        load_state_dict(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_state_dict(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="directory"):
        load_state_dict(tmp_path)


def test_file_without_tensors(tmp_path):
    path = tmp_path / "x.pth"
    torch.save({"epoch": 3, "note": "no weights"}, path)
    with pytest.raises(CheckpointError, match="no state dict"):
        load_state_dict(path)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_reads_numpy_scalars_and_namespaces_torch_wrote(tmp_path, fmt):
    """Training scripts store best_prec1 as a numpy scalar (pickled through numpy.dtype + BUILD
    and _codecs.encode) and `args` as an argparse Namespace (NEWOBJ + BUILD): all are read."""
    import argparse

    path = tmp_path / "m.pth"
    torch.save({"state_dict": _tensors(), "best_prec1": np.float64(70.494), "epoch": np.int64(150),
                "args": argparse.Namespace(lr=0.1, arch="mobilenet")}, path,
               _use_new_zipfile_serialization=fmt == "zip")
    assert checkpoint_metadata(path) == {"best_prec1": 70.494, "epoch": 150}
    assert list(load_state_dict(path)) == list(_tensors())

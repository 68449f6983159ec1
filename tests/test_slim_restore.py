"""The slim checkpoint restored into a network built with tf_slim's own layers.

A TF-slim user builds MobileNet under slim's `mobilenet_v1_arg_scope` (BatchNorm epsilon
1e-3, center and scale) with `use_explicit_padding=True` (slim's `_fixed_padding`: every
3x3 conv padded by 1 on each side, then VALID, which is PyTorch's padding), restores
slim/model.ckpt with a `tf.compat.v1.train.Saver` and runs it. PyTorch's own module on the
same checkpoint is the reference. `convert --slim-bn-eps 1e-3` must make slim's defaults
give PyTorch's logits (rel. error < 1e-5); the plain checkpoint does only under epsilon 1e-5.
The checkpoints hold some BatchNorm variances below 1e-3, so both ways of folding the
epsilon (into moving_variance, and into gamma) are used.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_run import run

torch = pytest.importorskip("torch", reason="the reference is PyTorch (the test extra installs it)")
slim = pytest.importorskip("tf_slim", reason="tf-slim is in the test extra (setup.cfg)")

DIGITS = Path(__file__).resolve().parent / "data" / "digits" / "mobilenet_v1_digits.pth.tar"
SMALL = (5e-4, 2e-4)  # variances below 1e-3 - 1e-5: the fold must go through gamma there


def slim_logits(spec, prefix: str, x: np.ndarray, eps: float) -> np.ndarray:
    """Build spec's network from tf_slim layers under slim's MobileNet defaults (BatchNorm
    epsilon `eps`), restore `prefix` by name and return the logits of the NHWC batch x."""
    import tensorflow as tf
    from tensorflow.python.framework import ops

    if not hasattr(ops, "Tensor"):  # tf_slim 1.1.0 (2020, its last release) still spells tf.Tensor so
        ops.Tensor = tf.Tensor      # in its batch norm; TF 2.21 keeps the class only as tf.Tensor
    tf1 = tf.compat.v1
    acts = {"relu": tf.nn.relu, "relu6": tf.nn.relu6, None: None}
    graph = tf.Graph()
    with graph.as_default():
        inp = tf1.placeholder(tf.float32, [None, *x.shape[1:]])
        # mobilenet_v1_arg_scope's batch_norm_params, for inference. updates_collections=None picks
        # tf_slim's own fused batch norm (its default, UPDATE_OPS, hands the layer to Keras's legacy
        # layer, which needs the separate tf_keras package); in inference both compute the same.
        bn = {"center": True, "scale": True, "decay": 0.9997, "epsilon": eps, "is_training": False,
              "updates_collections": None}
        with slim.arg_scope([slim.conv2d, slim.separable_conv2d], normalizer_fn=slim.batch_norm, padding="VALID"), \
                slim.arg_scope([slim.batch_norm], **bn):
            net, block, block_in = inp, None, None
            for layer in spec.layers():
                if layer.block != block:
                    block, block_in = layer.block, net
                if layer.role == "logits":
                    net = tf.reduce_mean(net, [1, 2], keepdims=True)
                    net = slim.conv2d(net, layer.cout, [1, 1], activation_fn=None, normalizer_fn=None,
                                      scope=layer.scope)
                    net = tf.squeeze(net, [1, 2])
                    break
                if layer.kernel > 1:  # slim's _fixed_padding
                    pad = (layer.kernel - 1) // 2
                    net = tf.pad(net, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
                k = [layer.kernel, layer.kernel]
                if layer.depthwise:
                    net = slim.separable_conv2d(net, None, k, depth_multiplier=1, stride=layer.stride,
                                                activation_fn=acts[layer.act], scope=layer.scope)
                else:
                    net = slim.conv2d(net, layer.cout, k, stride=layer.stride, activation_fn=acts[layer.act],
                                      scope=layer.scope)
                if layer.role == "project" and spec.blocks[layer.block].residual:
                    net = net + block_in
        names = sorted(v.op.name for v in tf1.global_variables())
        saver = tf1.train.Saver()
        with tf1.Session(graph=graph) as sess:
            saver.restore(sess, prefix)  # by name: fails on any missing or misshapen variable
            out = sess.run(net, {inp: x})
    assert names == sorted(spec.var_shapes())  # slim made exactly the checkpoint's variables
    return out


def rel(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - ref)) / np.max(np.abs(ref)))


def _with_small_variances(model):
    """Channel i of every other BatchNorm gets variance SMALL[i], and a gamma scaled so that the
    channel computes what it did (as in trained networks, where a tiny variance comes with a
    small gamma): the network stays as well conditioned as before."""
    n = 0
    with torch.no_grad():
        bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for bn in bns[::2]:
            small = torch.tensor(SMALL, dtype=bn.running_var.dtype)
            k = len(SMALL)
            bn.weight[:k] *= torch.sqrt((small + bn.eps) / (bn.running_var[:k] + bn.eps))
            bn.running_var[:k] = small
            n += k
    return n


@pytest.fixture(scope="module")
def v1_digits(tmp_path_factory):
    return _convert("v1-digits", tmp_path_factory.mktemp("slim"))


@pytest.fixture(scope="module")
def v2_odd(tmp_path_factory):
    return _convert("v2-odd", tmp_path_factory.mktemp("slim"))


@pytest.fixture(params=["v1_digits", "v2_odd"])
def case(request):
    return request.getfixturevalue(request.param)


def _convert(which: str, tmp: Path) -> dict:
    from amc_tf.converters.frontends import load
    from amc_tf.core import torch_models

    from conftest import spec_for

    if which == "v1-digits":  # the trained digits model
        spec = load(str(DIGITS), input_size=64)[0].spec
        model = torch_models.build(spec, "amc")
        model.load_state_dict(torch.load(DIGITS, weights_only=True)["state_dict"])
    else:  # a V2 with residuals and channel counts that are not multiples of 8
        spec = spec_for("odd-v2").with_changes(input_size=64)
        model = torch_models.randomize(torch_models.build(spec, "amc"), seed=3)
    model.eval()
    small = _with_small_variances(model)
    ckpt = tmp / "model.pth.tar"
    torch_models.save(model, ckpt)
    x = np.random.default_rng(0).normal(0, 1, (3, 64, 64, 3)).astype(np.float32)
    out, stdout = tmp / "out", None
    if which == "v1-digits":  # the command as a user types it
        proc = run("convert", ckpt, "-o", out, "--input-size", 64, "--slim-bn-eps", "1e-3", "--no-verify")
        assert proc.returncode == 0, proc.stderr
        stdout = proc.stdout
    else:  # the same pipeline in-process (saves a TensorFlow start-up)
        from amc_tf.converters.convert import ConvertOptions, convert

        convert(ckpt, out, ConvertOptions(input_size=64, slim_bn_eps=1e-3, verify=False))
    return {"spec": spec, "ref": torch_models.logits(model, x).astype(np.float64), "x": x, "out": out,
            "stdout": stdout, "small": small, "model": model, "ckpt": ckpt}


def test_slim_defaults_restore_the_folded_checkpoint_within_1e_5_of_pytorch(case):
    got = slim_logits(case["spec"], str(case["out"] / "slim" / "model.ckpt"), case["x"], eps=1e-3)
    assert rel(got, case["ref"]) < 1e-5
    assert (got.argmax(1) == case["ref"].argmax(1)).all()


def test_the_fold_is_reported_and_goes_through_gamma_only_where_the_variance_is_too_small(case):
    report = json.loads((case["out"] / "report.json").read_text())
    art = report["artifacts"]["slim_checkpoint"]
    n_bn = sum(1 for layer in case["spec"].layers() if layer.has_bn)
    channels = sum(layer.cout for layer in case["spec"].layers() if layer.has_bn)
    assert art["bn_eps"] == 1e-3
    assert art["bn_eps_folded"] == {"from": 1e-5, "to": 1e-3, "layers": n_bn, "gamma_channels": case["small"],
                                    "variance_channels": channels - case["small"]}
    if case["stdout"] is not None:
        assert (f"slim/model.ckpt: BatchNorm statistics for epsilon 0.001 (source 1e-05; {channels - case['small']} "
                f"channels via moving_variance, {case['small']} via gamma)") in case["stdout"]
    # the stored values, against the PyTorch module's own statistics
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(case["out"] / "slim" / "model.ckpt"))
    bns = [m for m in case["model"].modules() if isinstance(m, torch.nn.BatchNorm2d)]
    layers = [layer for layer in case["spec"].layers() if layer.has_bn]
    for bn, layer in zip(bns, layers):
        var, gamma = bn.running_var.double().numpy(), bn.weight.detach().double().numpy()
        small = var < 1e-3 - 1e-5
        stored_var = reader.get_tensor(layer.bn_var("moving_variance")).astype(np.float64)
        stored_gamma = reader.get_tensor(layer.bn_var("gamma")).astype(np.float64)
        np.testing.assert_allclose(stored_var[~small], var[~small] + 1e-5 - 1e-3, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(stored_var[small], var[small], rtol=1e-6)  # kept, never negative
        np.testing.assert_allclose(stored_gamma[~small], gamma[~small], rtol=1e-7)
        np.testing.assert_allclose(stored_gamma[small], gamma[small] * np.sqrt((var[small] + 1e-3) / (var[small] + 1e-5)),
                                   rtol=1e-6)
        assert (stored_var >= 0).all()


def test_the_plain_checkpoint_needs_slims_epsilon_set_to_pytorchs(v1_digits):
    """Without --slim-bn-eps the checkpoint holds PyTorch's statistics: exact under epsilon
    1e-5, and off under slim's default 1e-3 (the trap the option removes)."""
    case = v1_digits
    from amc_tf.converters.exporters import write_slim_checkpoint
    from amc_tf.converters.frontends import load
    from amc_tf.converters.tf_builder import build

    plain = case["out"].parent / "plain"
    plain.mkdir(exist_ok=True)
    names, folded = write_slim_checkpoint(build(load(str(case["ckpt"]), input_size=64)[0]), plain / "model.ckpt")
    assert folded is None and len(names) == len(case["spec"].var_shapes())
    assert rel(slim_logits(case["spec"], str(plain / "model.ckpt"), case["x"], eps=1e-5), case["ref"]) < 1e-5
    assert rel(slim_logits(case["spec"], str(plain / "model.ckpt"), case["x"], eps=1e-3), case["ref"]) > 1e-4


def test_slim_bn_eps_is_checked_before_any_work(tmp_path):
    for bad in ("0", "nan", "x"):
        proc = run("convert", DIGITS, "-o", tmp_path / "o", "--slim-bn-eps", bad)
        assert proc.returncode == 2 and "--slim-bn-eps" in proc.stderr, proc.stderr
        assert not (tmp_path / "o").exists()

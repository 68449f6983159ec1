"""NetSpec + weights -> a `tf.Module` whose variables carry TF-slim names.

One builder feeds every export (SavedModel, slim checkpoint, TFLite), so they cannot
disagree. The numerics follow PyTorch (DESIGN.md §4):

* every stride-2 3x3 conv gets an explicit symmetric (1,1) pad and 'VALID' padding
  (TF's 'SAME' would pad (0,1) at even sizes); stride-1 3x3 convs use 'SAME' = (1,1);
* BatchNorm uses the checkpoint's epsilon (1e-5 for PyTorch) and is folded into the conv
  weights and a bias inside the graph, which the TFLite converter constant-folds;
* the activation is the one the NetSpec records (ReLU for AMC's V1, ReLU6 for V2);
* the graph is NHWC from the input on: no transposes anywhere.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from amc_tf.core.netspec import Layer, Network, NetSpec

_ACTIVATIONS = {"relu": tf.nn.relu, "relu6": tf.nn.relu6, None: None}


class SlimMobileNet(tf.Module):
    """A MobileNetV1/V2 with TF-slim variable names (`MobilenetV1/Conv2d_0/weights`, ...)."""

    def __init__(self, network: Network, *, padding_mode: str = "explicit", bn_eps: float | None = None):
        """`padding_mode`='same' and `bn_eps` exist to build deliberately wrong graphs for tests
        and the layer-diff tool; conversions always use the defaults."""
        super().__init__(name=network.spec.scope)
        self.spec: NetSpec = network.spec
        self._padding_mode = padding_mode
        self._bn_eps = self.spec.bn_eps if bn_eps is None else bn_eps
        self._layers: tuple[Layer, ...] = self.spec.layers()
        # A list keeps creation order (slim's), and each variable's name is its slim name.
        self.slim_variables = [
            tf.Variable(np.asarray(network.weights[name], np.float32), name=name, trainable=not name.endswith(("moving_mean", "moving_variance")))
            for name in self.spec.var_shapes()
        ]
        self._by_name = {v.name.split(":")[0]: v for v in self.slim_variables}
        self._weights = network.weights  # numpy copies of the variables' initial values

    def variable(self, name: str) -> tf.Variable:
        return self._by_name[name]

    def _folded_params(self, layer: Layer):
        """(kernel, bias) with BatchNorm folded in, computed in the graph from the slim variables."""
        kernel = self.variable(layer.kernel_var)
        if not layer.has_bn:
            return kernel, self.variable(f"{layer.scope}/biases")
        gamma = self.variable(layer.bn_var("gamma"))
        beta = self.variable(layer.bn_var("beta"))
        mean = self.variable(layer.bn_var("moving_mean"))
        var = self.variable(layer.bn_var("moving_variance"))
        scale = gamma * tf.math.rsqrt(var + self._bn_eps)
        return kernel * (scale[:, None] if layer.depthwise else scale), beta - mean * scale

    def folded_arrays(self, layer: Layer) -> tuple[np.ndarray, np.ndarray]:
        """The same fold done once in numpy (float32): (kernel in TF layout, bias). Frozen graphs
        and the ONNX exporter take their weights from here."""
        read = lambda name: np.asarray(self._weights[name], np.float32)  # noqa: E731
        kernel = read(layer.kernel_var)
        if not layer.has_bn:
            return kernel, read(f"{layer.scope}/biases")
        scale = read(layer.bn_var("gamma")) / np.sqrt(read(layer.bn_var("moving_variance")) + np.float32(self._bn_eps))
        bias = read(layer.bn_var("beta")) - read(layer.bn_var("moving_mean")) * scale
        kernel = kernel * (scale[:, None] if layer.depthwise else scale)
        return kernel.astype(np.float32), bias.astype(np.float32)

    def _folded_constants(self, layer: Layer):
        kernel, bias = self.folded_arrays(layer)
        return tf.constant(kernel), tf.constant(bias)

    def _conv(self, x, layer: Layer, frozen: bool = False):
        kernel, bias = self._folded_constants(layer) if frozen else self._folded_params(layer)
        padding = "SAME"
        if layer.kernel > 1 and layer.stride > 1 and self._padding_mode == "explicit":
            p = (layer.kernel - 1) // 2
            x = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], name="Pad")
            padding = "VALID"
        if layer.depthwise:
            x = tf.nn.depthwise_conv2d(x, kernel, [1, layer.stride, layer.stride, 1], padding, name="depthwise")
        else:
            x = tf.nn.conv2d(x, kernel, layer.stride, padding, name="Conv2D")
        x = self._preactivation_hook(layer.scope, tf.nn.bias_add(x, bias, name="BiasAdd"))
        act = _ACTIVATIONS[layer.act]
        if act is not None:
            x = act(x, name=layer.act.capitalize())
        return self._activation_hook(layer.scope, x)

    def _preactivation_hook(self, scope: str, x):
        """Each conv's output before its activation (a subclass may record it)."""
        return x

    def _activation_hook(self, name: str, x):
        """Every activation tensor the graph computes (the input, each conv's output, each
        residual sum) passes through here by name; a subclass may wrap it (e.g. fake-quant)."""
        return x

    def forward(self, x, taps: dict | None = None, frozen: bool = False):
        """Logits for an NHWC float batch; with `taps`, each layer's output by slim scope.
        `frozen` takes the folded weights as constants instead of reading the variables."""
        spec = self.spec
        x = self._activation_hook("input", x)
        block_input, current_block = None, None
        for layer in self._layers:
            if layer.role == "logits":
                with tf.name_scope(f"{spec.scope}/Logits"):
                    h, w = x.shape[1], x.shape[2]
                    x = tf.nn.avg_pool2d(x, [h, w], 1, "VALID", name="AvgPool_1a" if spec.family == "mobilenet_v1" else "AvgPool")
                if taps is not None:
                    taps[f"{spec.scope}/Logits/AvgPool"] = x
                with tf.name_scope(layer.scope):
                    x = self._conv(x, layer, frozen)
                with tf.name_scope(f"{spec.scope}/Logits"):
                    x = tf.squeeze(x, [1, 2], name="SpatialSqueeze")
                if taps is not None:
                    taps[layer.scope] = x
                return x
            if layer.block != current_block:
                current_block, block_input = layer.block, x
            with tf.name_scope(layer.scope):
                x = self._conv(x, layer, frozen)
            if layer.role == "project" and spec.blocks[layer.block].residual:
                with tf.name_scope(layer.scope.rsplit("/", 1)[0]):
                    x = self._activation_hook(f"{layer.scope}/add", tf.add(x, block_input, name="add"))
            if taps is not None:
                taps[layer.scope] = x
        raise AssertionError("network without logits layer")

    def input_spec(self, batch: int | None = None) -> tf.TensorSpec:
        s = self.spec.input_size
        return tf.TensorSpec([batch, s, s, self.spec.in_ch], tf.float32, name="input")

    def serving_function(self, batch: int | None = None, frozen: bool = False):
        """A tf.function {"input": NHWC float} -> {"logits": [N, classes]}.

        With `frozen`, the folded weights are traced in as constants (for TFLite: this skips the
        converter's variable-freezing pass); otherwise they are read from the slim variables.
        """

        @tf.function(input_signature=[self.input_spec(batch)], autograph=False)
        def serve(input):  # noqa: A002 - the signature's input is called "input", as in slim
            return {"logits": self.forward(input, frozen=frozen)}

        return serve

    def __call__(self, x):
        return self.forward(tf.convert_to_tensor(x, tf.float32))


def build(network: Network, **kwargs) -> SlimMobileNet:
    return SlimMobileNet(network, **kwargs)

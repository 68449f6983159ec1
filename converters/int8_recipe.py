"""The accurate full-integer recipe behind `--quantize int8` (the default `--int8-recipe
accurate`): the graph handed to the TFLite converter carries `fake_quant` ops that fix every
quantization choice, made here from calibration activations instead of by the converter:

1. activation ranges: per tensor, the 0.01th..99.99th percentile of its values (the
   default), or by least squared quantization error (`mse`), or the plain min/max;
2. weights: symmetric int8 per output channel (scale max|w|/127, as TFLite), rounded to
   nearest (the default), or each weight down or up as minimises the layer's output error
   on the calibration inputs (`rounding`: exhaustive per depthwise channel, greedy
   descent for the other convs);
3. bias correction: each conv's bias absorbs the mean shift of its pre-activation that
   quantization leaves, measured per layer on the fp32 model's input to it (fake-quantized
   for the int8 side), per output channel, over the calibration images (or, with
   `bias_correction="quantized"`, measured in the fake-quant network itself, layer after
   layer: measured worse on real ImageNet images, docs/int8.md).

The converter then writes an int8 model whose ranges and weights are exactly these.
docs/int8.md has the measurements behind the defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import tensorflow as tf

from amc_tf.converters import int8_numerics as qn
from amc_tf.converters.tf_builder import SlimMobileNet

SAMPLES_PER_IMAGE = 4096  # activation values kept per tensor per image for range selection
BATCH = 10
POSITIONS_PER_IMAGE = 1024  # output positions per image sampled for the rounding's input covariance


@dataclass(frozen=True)
class RecipeOptions:
    ranges: str = "percentile"  # minmax | mse | percentile
    percentile: float = 99.99
    # nearest (TFLite's, the default) | depthwise (by output error, exhaustive, depthwise convs only)
    # | all (depthwise as that, the others by greedy descent): see docs/int8.md, no measurable gain
    rounding: str = "nearest"
    # True (the default): each layer's shift measured on the fp32 model's input to it ("teacher
    # forced"); "quantized": measured in the fake-quant network itself, layer after layer, each
    # on the already corrected int8 layers' outputs (all calibration images in one batch)
    bias_correction: bool | str = True
    samples_per_image: int = SAMPLES_PER_IMAGE  # activation values kept per tensor and image
    # range method of the model's output (the logits) if not `ranges`, e.g. "minmax": a
    # percentile clips exactly the largest logits, the ones top-1 is decided by
    output_range: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Calibrated:
    """Everything the fake-quant graph needs: activation ranges by hook name, quantized
    (float, on the int8 grid) kernels and corrected biases by layer scope."""

    ranges: dict[str, tuple[float, float]]
    kernels: dict[str, np.ndarray]
    biases: dict[str, np.ndarray]
    weight_ranges: dict[str, np.ndarray]  # max|w| per output channel
    report: dict = field(default_factory=dict)


class _Recorder(SlimMobileNet):
    """fp32 graph that records activations and pre-activations (eager)."""

    def __init__(self, network):
        super().__init__(network)
        self.acts, self.pre = {}, {}

    def _activation_hook(self, name, x):
        self.acts[name] = x
        return x

    def _preactivation_hook(self, scope, x):
        self.pre[scope] = x
        return x


class FakeQuantMobileNet(SlimMobileNet):
    """The graph with every activation and weight passing through TF fake-quant ops."""

    def __init__(self, network, calibrated: Calibrated, record: bool = False):
        super().__init__(network)
        self.cal = calibrated
        self.record = record
        self.pre = {}

    def _activation_hook(self, name, x):
        lo, hi = self.cal.ranges[name]
        return tf.quantization.fake_quant_with_min_max_vars(x, lo, hi, num_bits=8)

    def _preactivation_hook(self, scope, x):
        if self.record:
            self.pre[scope] = x
        return x

    def _folded_constants(self, layer):
        kernel, m = self.cal.kernels[layer.scope], self.cal.weight_ranges[layer.scope]
        bias = tf.constant(self.cal.biases[layer.scope])
        if layer.depthwise:  # per-channel fake quant works on the last axis: channels to the end
            k = tf.constant(np.transpose(kernel, (0, 1, 3, 2)))
            k = tf.quantization.fake_quant_with_min_max_vars_per_channel(k, -m, m, num_bits=8, narrow_range=True)
            return tf.transpose(k, (0, 1, 3, 2)), bias
        k = tf.quantization.fake_quant_with_min_max_vars_per_channel(tf.constant(kernel), -m, m, num_bits=8,
                                                                     narrow_range=True)
        return k, bias


def _batches(images: np.ndarray):
    for i in range(0, len(images), BATCH):
        yield tf.constant(images[i:i + BATCH])


def _patch_cov_update(acc: dict, x: np.ndarray, layer, rng: np.random.Generator) -> None:
    """Accumulate sums and outer products of the layer's input patches, padded as the layer
    pads, at up to POSITIONS_PER_IMAGE random output positions per image: per channel
    [c, k*k, k*k] for a depthwise conv, [k*k*cin, k*k*cin] otherwise (rows in the kernel's
    (kh, kw, cin) order); the logits conv sees the average pool."""
    if layer.role == "logits":
        x = x.mean(axis=(1, 2), keepdims=True)
    n, c = x.shape[0], x.shape[3]
    k, s = layer.kernel, layer.stride
    p = (k - 1) // 2
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x
    h = (x.shape[1] + 2 * p - k) // s + 1
    w = (x.shape[2] + 2 * p - k) // s + 1
    pick = rng.choice(h * w, POSITIONS_PER_IMAGE, replace=False) if h * w > POSITIONS_PER_IMAGE else slice(None)
    views = [xp[:, i:i + s * h:s, j:j + s * w:s, :].reshape(n, h * w, c)[:, pick] for i in range(k) for j in range(k)]
    if layer.depthwise:
        patches = np.stack(views, axis=-1).reshape(-1, c, k * k).astype(np.float64)  # [M, c, k*k]
        t = patches.transpose(1, 0, 2)  # [c, M, k*k]
        outer = np.matmul(t.transpose(0, 2, 1), t)
    else:
        patches = np.stack(views, axis=-2).reshape(-1, k * k * c).astype(np.float64)  # [M, k*k*cin]
        outer = patches.T @ patches
    acc["n"] = acc.get("n", 0) + patches.shape[0]
    acc["sum"] = acc.get("sum", 0) + patches.sum(0)
    acc["outer"] = acc.get("outer", 0) + outer


def _covariance(acc: dict, depthwise: bool) -> np.ndarray:
    mean = acc["sum"] / acc["n"]
    if depthwise:
        return acc["outer"] / acc["n"] - np.einsum("ci,cj->cij", mean, mean)
    return acc["outer"] / acc["n"] - np.outer(mean, mean)


def calibrate(model: SlimMobileNet, images: np.ndarray, options: RecipeOptions = RecipeOptions(),
              progress=lambda msg: None) -> Calibrated:
    """Ranges, weights and biases of the recipe from calibration images (float32 NHWC,
    preprocessed as the model is fed)."""
    network = _network_of(model)
    layers = {layer.scope: layer for layer in model.spec.layers()}
    recorder = _Recorder(network)
    rng = np.random.default_rng(0)
    samples: dict[str, list[np.ndarray]] = {}
    covs: dict[str, dict] = {}
    inputs_of = _inputs_of(model)
    progress(f"calibration pass over {len(images)} images (activation statistics)")
    for xb in _batches(images):
        recorder.forward(xb, frozen=True)
        for name, t in recorder.acts.items():
            v = t.numpy().reshape(len(xb), -1)
            take = min(options.samples_per_image, v.shape[1])
            idx = rng.integers(0, v.shape[1], (len(xb), take))
            picked = np.take_along_axis(v, idx, 1).ravel()
            samples.setdefault(name, []).append(np.concatenate([picked, [v.min(), v.max()]]))
        for scope, layer in layers.items():
            if options.rounding == "all" or (options.rounding == "depthwise" and layer.depthwise):
                _patch_cov_update(covs.setdefault(scope, {}), recorder.acts[inputs_of[scope]].numpy(), layer, rng)
    ranges = {name: qn.choose_range(np.concatenate(v), options.ranges, options.percentile)
              for name, v in samples.items()}
    if options.output_range:
        out = next(layer.scope for layer in layers.values() if layer.role == "logits")
        ranges[out] = qn.choose_range(np.concatenate(samples[out]), options.output_range, options.percentile)
    kernels, biases, wranges, rounding = {}, {}, {}, {}
    if covs:
        progress(f"choosing the rounding of {len(covs)} layers' weights")
    for scope, layer in layers.items():
        kernel, bias = model.folded_arrays(layer)
        if scope in covs:
            cov = _covariance(covs[scope], layer.depthwise)
            codes = qn.depthwise_rounding(kernel, cov) if layer.depthwise else qn.greedy_rounding(kernel, cov)
            nearest = qn.quantize_nearest(kernel, layer.depthwise)
            before = qn.output_error(kernel, nearest, cov, layer.depthwise).sum()
            after = qn.output_error(kernel, codes, cov, layer.depthwise).sum()
            rounding[scope] = round(float(after / before), 4) if before > 0 else 1.0
        else:
            codes = qn.quantize_nearest(kernel, layer.depthwise)
        kernels[scope] = qn.dequantize(codes, kernel, layer.depthwise)
        wranges[scope] = (qn.weight_scales(kernel, layer.depthwise) * 127.0).astype(np.float32)
        biases[scope] = bias.astype(np.float32)
    cal = Calibrated(ranges, kernels, biases, wranges)
    cal.report = {"options": options.to_dict()}
    if rounding:
        cal.report["rounding_error_ratio"] = {  # output error variance, chosen rounding / nearest
            "layers": len(rounding), "median": float(np.median(list(rounding.values()))),
            "worst": max(rounding.values())}
    if options.bias_correction:
        progress("bias correction pass")
        if options.bias_correction == "quantized":
            shifts = _correct_biases_quantized(network, recorder, cal, images)
        else:
            shifts = _correct_biases(network, recorder, cal, images)
        worst = max(shifts, key=shifts.get)
        cal.report["bias_correction"] = {"layers": len(shifts), "largest_relative_shift": shifts[worst],
                                         "largest_in": worst}
    return cal


class _TeacherForced(FakeQuantMobileNet):
    """The fake-quant graph, but each activation is the fp32 model's one (then fake-quantized):
    every conv sees the input it would see in int8 if nothing upstream had erred."""

    def __init__(self, network, calibrated: Calibrated, feed: dict):
        super().__init__(network, calibrated, record=True)
        self.feed = feed

    def _activation_hook(self, name, x):
        return super()._activation_hook(name, self.feed[name])


def _correct_biases(network, recorder: _Recorder, cal: Calibrated, images: np.ndarray) -> dict:
    """Each conv's bias -= the mean (per output channel) over the calibration images of its
    int8 pre-activation minus its fp32 one, both on the fp32 model's input to the layer
    (fake-quantized for the int8 side): the shift this layer's own quantization adds.
    Returns the largest |shift| relative to the channel's rms output, by layer."""
    sums: dict[str, np.ndarray] = {}
    sq: dict[str, np.ndarray] = {}
    rows = 0
    for xb in _batches(images):
        recorder.forward(xb, frozen=True)
        forced = _TeacherForced(network, cal, recorder.acts)
        forced.forward(xb, frozen=True)
        for scope, ref in recorder.pre.items():
            r = ref.numpy().reshape(-1, ref.shape[-1]).astype(np.float64)
            d = forced.pre[scope].numpy().reshape(-1, ref.shape[-1]) - r
            sums[scope] = sums.get(scope, 0) + d.sum(0)
            sq[scope] = sq.get(scope, 0) + (r ** 2).sum(0)
        rows += len(xb)
    relative = {}
    for scope, total in sums.items():
        count = rows * int(np.prod(recorder.pre[scope].shape[1:-1]))
        shift = total / count
        relative[scope] = round(float(np.max(np.abs(shift) / (np.sqrt(sq[scope] / count) + 1e-12))), 6)
        cal.biases[scope] = (cal.biases[scope] - shift).astype(np.float32)
    return relative


class _SequentialCorrector(FakeQuantMobileNet):
    """The fake-quant graph on the whole calibration batch, correcting each conv's bias as the
    forward pass reaches it: the shift is the mean (per output channel) of this network's
    pre-activation minus the fp32 model's, so upstream layers are already corrected."""

    def __init__(self, network, calibrated: Calibrated, fp32_mean: dict, fp32_rms: dict):
        super().__init__(network, calibrated)
        self.fp32_mean, self.fp32_rms, self.relative = fp32_mean, fp32_rms, {}

    def _preactivation_hook(self, scope, x):
        axes = tuple(range(len(x.shape) - 1))
        shift = tf.reduce_mean(tf.cast(x, tf.float64), axis=axes).numpy() - self.fp32_mean[scope]
        self.relative[scope] = round(float(np.max(np.abs(shift) / (self.fp32_rms[scope] + 1e-12))), 6)
        self.cal.biases[scope] = (self.cal.biases[scope] - shift).astype(np.float32)
        return x - tf.constant(shift.astype(np.float32))


def _correct_biases_quantized(network, recorder: _Recorder, cal: Calibrated, images: np.ndarray) -> dict:
    """Bias correction measured on quantized inputs (see `_SequentialCorrector`): fp32
    per-channel means of every pre-activation first (in batches), then one fake-quant pass
    over all calibration images at once. Returns the largest |shift| relative to the
    channel's rms output, by layer."""
    sums: dict[str, np.ndarray] = {}
    sq: dict[str, np.ndarray] = {}
    count: dict[str, int] = {}
    for xb in _batches(images):
        recorder.forward(xb, frozen=True)
        for scope, ref in recorder.pre.items():
            r = ref.numpy().reshape(-1, ref.shape[-1]).astype(np.float64)
            sums[scope] = sums.get(scope, 0) + r.sum(0)
            sq[scope] = sq.get(scope, 0) + (r ** 2).sum(0)
            count[scope] = count.get(scope, 0) + r.shape[0]
    mean = {s: sums[s] / count[s] for s in sums}
    rms = {s: np.sqrt(sq[s] / count[s]) for s in sums}
    corrector = _SequentialCorrector(network, cal, mean, rms)
    corrector.forward(tf.constant(images), frozen=True)
    return corrector.relative


def _inputs_of(model: SlimMobileNet) -> dict[str, str]:
    """Layer scope -> name of the activation hook feeding it (in graph order)."""
    out, last = {}, "input"
    spec = model.spec
    for layer in spec.layers():
        out[layer.scope] = last
        last = layer.scope
        if layer.role == "project" and spec.blocks[layer.block].residual:
            last = f"{layer.scope}/add"
    return out


def _network_of(model: SlimMobileNet):
    from amc_tf.core.netspec import Network

    return Network(model.spec, model._weights)  # noqa: SLF001 - the builder's own weights


def fake_quant_tflite(model: SlimMobileNet, cal: Calibrated, io: str = "float32") -> bytes:
    """The TFLite conversion of the fake-quant graph: int8 with exactly `cal`'s ranges and weights."""
    import warnings

    from amc_tf.converters.exporters import tflite_from_concrete

    fq = FakeQuantMobileNet(_network_of(model), cal)

    def configure(converter):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        dtype = {"float32": tf.float32, "uint8": tf.uint8, "int8": tf.int8}[io]
        converter.inference_input_type = dtype
        converter.inference_output_type = dtype

    with warnings.catch_warnings():
        # "Statistics for quantized inputs were expected": the input's fake-quant carries them
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return tflite_from_concrete(fq.serving_function(batch=1, frozen=True).get_concrete_function(), configure)


def accurate_int8(model: SlimMobileNet, images: np.ndarray, io: str = "float32",
                  options: RecipeOptions = RecipeOptions(), progress=lambda msg: None) -> tuple[bytes, dict]:
    """(int8 flatbuffer, report of what the recipe did) from calibration images."""
    cal = calibrate(model, images, options, progress)
    progress("converting the fake-quant graph to an int8 .tflite")
    data = fake_quant_tflite(model, cal, io)
    _check_integer(data)
    return data, {"recipe": "accurate", "calibration_images": int(len(images)), **cal.report}


def _check_integer(data: bytes) -> None:
    """The converter was not told TFLITE_BUILTINS_INT8 (it refuses that without its own
    calibration): check instead that every conv runs in an int8 kernel on int8 input and
    that float appears only at the model's float input/output."""
    from amc_tf.core.tflite_io import load_interpreter
    from amc_tf.converters.tflite_inspect import int8_mac_share

    interp = load_interpreter(data, delegates=False)
    share = int8_mac_share(interp)
    io = {d["index"] for d in interp.get_input_details() + interp.get_output_details()}
    floats = [t["name"] for t in interp.get_tensor_details()
              if np.dtype(t["dtype"]) == np.float32 and t["index"] not in io]
    if share["not_int8"] or floats:
        raise RuntimeError(f"the accurate int8 recipe left float computation: {share['not_int8'][:3]} {floats[:3]}")

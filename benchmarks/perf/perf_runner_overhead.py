"""How much does the in-process runner add to what it measures?

Builds a small MobileNet-like .tflite (224x224 input, depthwise-separable blocks), then,
in this one process and alternating the order trial by trial, compares
  * the runner: `run_inprocess` (fresh interpreter, warm-up, per-invocation timing,
    log text), its reported `Inference (avg)` read back through the log parser, with
  * a bare loop: a fresh interpreter, the same warm-up, then `invoke()` N times between
    two clock reads, average = elapsed / N.
Each trial runs the two back to back; the headline overhead is the median over trials
of runner/bare - 1 (pairing cancels slow drifts of a shared machine), shown beside the
ratio of the medians and of the minima. The target is |overhead| <= 2 %.

    .venv/bin/python benchmarks/perf/perf_runner_overhead.py [--trials 21] [--runs 200] [--warmup 20]

Prints the figures; exits 1 when the overhead is beyond the target.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from amc_tf.benchmarks.local import _fill_inputs, make_interpreter, run_inprocess  # noqa: E402
from amc_tf.benchmarks.logparse import parse_text  # noqa: E402
from amc_tf.benchmarks.protocol import Protocol  # noqa: E402


def build_model(path: Path) -> Path:
    import tensorflow as tf

    class Net(tf.Module):
        def __init__(self):
            rnd = lambda shape, s: tf.Variable(tf.random.stateless_normal(shape, seed=[s, 1]) * 0.1)  # noqa: E731
            self.stem = rnd([3, 3, 3, 16], 1)
            self.blocks = []
            cin = 16
            for i, (cout, stride) in enumerate([(32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2)]):
                self.blocks.append((rnd([3, 3, cin, 1], 10 + i), rnd([1, 1, cin, cout], 20 + i), stride))
                cin = cout
            self.head = rnd([cin, 1000], 99)

        @tf.function(input_signature=[tf.TensorSpec([1, 224, 224, 3], tf.float32)])
        def __call__(self, x):
            y = tf.nn.relu(tf.nn.conv2d(x, self.stem, 2, "SAME"))
            for dw, pw, stride in self.blocks:
                y = tf.nn.relu(tf.nn.depthwise_conv2d(y, dw, [1, stride, stride, 1], "SAME"))
                y = tf.nn.relu(tf.nn.conv2d(y, pw, 1, "SAME"))
            return tf.matmul(tf.reduce_mean(y, axis=[1, 2]), self.head)

    net = Net()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([net.__call__.get_concrete_function()], net)
    path.write_bytes(conv.convert())
    return path


def bare_loop(model: Path, protocol: Protocol) -> float:
    interp = make_interpreter(str(model), protocol.threads, protocol.delegate)
    interp.allocate_tensors()
    _fill_inputs(interp, seed=1)
    for _ in range(protocol.warmup):
        interp.invoke()
    t0 = time.perf_counter_ns()
    for _ in range(protocol.runs):
        interp.invoke()
    return (time.perf_counter_ns() - t0) / protocol.runs / 1000.0


def runner(model: Path, protocol: Protocol) -> float:
    return parse_text(run_inprocess(model, protocol)).inference_avg_us


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=21)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", type=Path, default=None, help="use this .tflite instead of the built one")
    args = ap.parse_args(argv)

    protocol = Protocol(warmup=args.warmup, runs=args.runs, repeats=1, threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or build_model(Path(tmp) / "mobilenet_like.tflite")
        bare_us, run_us = [], []
        for t in range(args.trials):
            order = (bare_loop, runner) if t % 2 == 0 else (runner, bare_loop)
            for fn in order:
                (bare_us if fn is bare_loop else run_us).append(fn(model, protocol))
    b, r = statistics.median(bare_us), statistics.median(run_us)
    overhead = statistics.median(ri / bi - 1 for ri, bi in zip(run_us, bare_us))
    print(f"model: {'given ' + str(args.model) if args.model else 'MobileNet-like 224x224, 6 separable blocks'}; "
          f"{args.threads} thread(s), {args.warmup} warm-up + {args.runs} timed invocations, {args.trials} trials")
    print("trial  bare loop (us)  runner avg (us)  runner/bare-1")
    for i, (bi, ri) in enumerate(zip(bare_us, run_us), 1):
        print(f"{i:>5}  {bi:>14.1f}  {ri:>15.1f}  {100 * (ri / bi - 1):>+12.2f} %")
    print(f"median bare loop: {b:.1f} us; median runner: {r:.1f} us ({100 * (r / b - 1):+.2f} %); "
          f"minima {min(bare_us):.1f} / {min(run_us):.1f} us ({100 * (min(run_us) / min(bare_us) - 1):+.2f} %)")
    print(f"runner overhead (median of paired trials): {100 * overhead:+.2f} %; target |x| <= 2 %")
    ok = abs(overhead) <= 0.02
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

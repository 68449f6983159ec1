"""Every default a command's --help names is the default the code uses.

Click renders `[default: X]` itself for options with `show_default`, from the value the code
receives. Any other default a help text names ("(default: ...)", "'accurate' (default)") is a
claim about code that runs later: each one has a check here that runs that code. A help text
that names a default without a check fails the test, so a new claim must come with one."""

from __future__ import annotations

import os
import re
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from cli_run import DIGITS
from cli_walk import commands, shown_options

DEFAULT_WORD = re.compile(r"\bdefaults?\b", re.IGNORECASE)


def _convert_options(*args):
    """The ConvertOptions `amc-tf convert` hands the pipeline for these arguments."""
    import amc_tf.converters.convert as pipeline
    from amc_tf.cli.app import main

    seen = {}

    def capture(checkpoint, outdir, options, progress=None, **_):
        seen["options"] = options
        raise SystemExit(0)

    original, pipeline.convert = pipeline.convert, capture
    try:
        CliRunner().invoke(main, ["convert", str(DIGITS), "-o", "unused", *args], standalone_mode=False)
    finally:
        pipeline.convert = original
    return seen["options"]


def _int8_recipe():
    from amc_tf.converters.int8_recipe import RecipeOptions
    from amc_tf.converters.quantized_export import check_options

    options = _convert_options("--quantize", "int8", "--images", "synthetic")
    assert options.int8_recipe is None and check_options(options).recipe == "accurate"
    recipe = RecipeOptions()
    assert (recipe.ranges, recipe.percentile, recipe.rounding, recipe.bias_correction) == \
        ("percentile", 99.99, "nearest", True)


def _convert_input_size():
    from amc_tf.converters.frontends import load

    assert _convert_options().input_size is None
    assert load(str(DIGITS))[0].spec.input_size == 224


def _onnx_layout():
    assert _convert_options("--export", "onnx").onnx_layout == "nchw"


def _activation():
    from amc_tf.converters.pytorch_frontend import infer_network
    from amc_tf.core.checkpoint import load_state_dict

    assert _convert_options().activation is None
    assert infer_network(load_state_dict(str(DIGITS)), activation=None).spec.activation == "relu"  # a V1


def _bench_run_timeout():
    from amc_tf.benchmarks.protocol import Protocol

    for warmup, runs in ((100, 200), (10, 30), (0, 1)):
        assert Protocol(warmup=warmup, runs=runs).timeout_s() == 120 + 2 * (warmup + runs)


def _latency_run_timeout():
    from amc_tf.benchmarks.latency_timers import make_timer

    timer = make_timer("local", 1, binary="/bin/true")
    assert timer.protocol.timeout_s() == 200 and timer.protocol.warmup + timer.protocol.runs == 40


def _bench_name():
    from amc_tf.cli.bench_cmd import default_name

    assert default_name("out/a/model.tflite") == "a" and default_name("x/mobilenet.tflite") == "mobilenet"


def _diff_defaults():
    from amc_tf.cli.diff_cmd import CHECKPOINT_DEFAULTS, RANDOM_INPUTS

    assert CHECKPOINT_DEFAULTS == {"input_size": 224, "bn_eps": 1e-5, "activation": None} and RANDOM_INPUTS == 2


def _eval_input_size():
    from amc_tf.services.evaluate import DEFAULT_INPUT_SIZE

    assert DEFAULT_INPUT_SIZE == 224


def _labels_offset():
    """From the class count: slim TFRecords (1..1000) into a 1000-class model shift by 1, a folder by 0."""
    from amc_tf.core.data import Dataset

    assert Dataset("tfrecord", "x", ()).default_labels_offset(1000) == 1
    assert Dataset("tfrecord", "x", ()).default_labels_offset(1001) == 0
    assert Dataset("imagefolder", "x", ("a", "b")).default_labels_offset(2) == 0


def _nothing_to_run():
    """The claim is about where files go or what is compared, checked by the command's own tests."""


# (command, option) -> (the phrase its help holds, the check that the code does so)

def _latency_quantize():
    """`latency build` without --quantize builds an fp32 table."""
    import amc_tf.benchmarks.latency_build as lb
    from amc_tf.cli.app import main

    seen = {}

    def capture(*args, **kwargs):
        seen["precision"] = kwargs.get("precision")
        raise SystemExit(0)

    original, lb.build_lut = lb.build_lut, capture
    try:
        with CliRunner().isolated_filesystem():
            CliRunner().invoke(main, ["latency", "build", "-o", "lut.json", "--grid", "tiny", "--no-probe"],
                               standalone_mode=False)
    finally:
        lb.build_lut = original
    assert seen["precision"] == "fp32"


def _study_calibration(tmp_path_factory=None):
    """A study's int8 calibration images default to --images (and are then left out of it)."""
    import tempfile
    from pathlib import Path

    from amc_tf.services.study.plan import StudyOptions, _calibration
    from eval_helpers import jpeg_bytes

    with tempfile.TemporaryDirectory() as tmp:
        for i in range(3):
            (Path(tmp) / f"n0144{i}764_{i}.JPEG").write_bytes(jpeg_bytes(i))
        options = StudyOptions(images=tmp, calibration_size=2)
        assert options.calibration is None
        assert _calibration(options)["dir"] == os.path.abspath(tmp)


def _study_input_size():
    from amc_tf.services.study.plan import StudyOptions, convert_options

    assert StudyOptions().input_size is None
    assert convert_options(StudyOptions(), "fp32", None, None)["input_size"] is None  # convert's own default
    _convert_input_size()


CLAIMS = {
    ("convert", "--int8-recipe"): ("'accurate' (default): activation ranges from the 0.01th..99.99th percentiles", _int8_recipe),
    ("convert", "--input-size"): ("[default: 224, or an ONNX model's fixed input size]", _convert_input_size),
    ("profile", "--input-size"): ("[default: 224, or an ONNX model's fixed input size]", _convert_input_size),
    ("convert", "--onnx-layout"): ("[default: nchw", _onnx_layout),
    ("convert", "--activation"): ("(default: ReLU for V1", _activation),
    ("bench", "--run-timeout"): ("[default: 120 s + 2 s per warm-up or timed invocation]", _bench_run_timeout),
    ("latency build", "--run-timeout"): ("120 s + 2 s per invocation, 200 s]", _latency_run_timeout),
    ("bench", "--name"): ("an OUTDIR's folder name, a .tflite's file stem", _bench_name),
    ("diff", "--input-size"): ("[default: 224]", _diff_defaults),
    ("diff", "--bn-eps"): ("[default: 1e-5]", _diff_defaults),
    ("diff", "--random"): ("[default: 2, when --images is not given]", _diff_defaults),
    ("eval", "--input-size"): ("(default 224)", _eval_input_size),
    ("parity", "--input-size"): ("(default 224)", _eval_input_size),
    ("eval", "--labels-offset"): ("(default: from the class count)", _labels_offset),
    ("bench", "--adb"): ("(default: $ADB, then adb on PATH)", _nothing_to_run),
    ("bench", "--logdir"): ("[default: a new folder logs/<date>-<time> for each call]", _nothing_to_run),
    ("compare", "--logdir"): ("(default: a temporary directory, removed)", _nothing_to_run),
    ("diff", "--against"): ("(default: torch when available, else tf", _nothing_to_run),
    ("eval", "--ground-truth"): ("(default: found in/above the --images folder)", _nothing_to_run),
    ("parity", "--images"): ("default: seeded synthetic images", _nothing_to_run),
    ("latency predict", "--input-size"): ("[default: the LUT's]", _nothing_to_run),
    ("latency build", "--quantize"): ("[default: fp32]", _latency_quantize),
    ("study", "--calibration-images"): ("[default: --images;", _study_calibration),
    ("study", "--input-size"): ("(default 224)", _study_input_size),
    ("study", "--workers"): ("[default: the CPU count]", _nothing_to_run),
}


def _claims_in_help():
    found = {}
    for path, cmd in commands():
        for names, _, opt in shown_options(cmd):
            if DEFAULT_WORD.search(opt.help or ""):
                found[(path, names[-1])] = opt.help
    return found


def test_every_default_named_in_help_has_a_check():
    found = _claims_in_help()
    assert sorted(set(found) - set(CLAIMS)) == [], "a help text names a default: add its check to CLAIMS"
    assert sorted(set(CLAIMS) - set(found)) == [], "CLAIMS names a help text that no longer claims a default"
    for key, (phrase, _) in CLAIMS.items():
        assert phrase in " ".join(found[key].split()), (key, found[key])


@pytest.mark.parametrize("key", sorted({(k, v[1].__name__) for k, v in CLAIMS.items() if v[1] is not _nothing_to_run}))
def test_the_named_default_is_the_one_the_code_uses(key):
    CLAIMS[key[0]][1]()


def test_command_docstrings_name_the_option_defaults():
    from amc_tf.benchmarks.protocol import Protocol

    bench = dict(commands())["bench"]
    defaults = {p.name: p.default for p in bench.params}
    assert "(defaults: 1 thread, 100 warm-up + 200 timed invocations, 3 runs)" in " ".join(bench.help.split())
    assert (defaults["threads"], defaults["warmup"], defaults["runs"], defaults["repeats"]) == (1, 100, 200, 3)
    p = Protocol()
    assert (p.threads, p.warmup, p.runs, p.repeats) == (1, 100, 200, 3)


def test_shown_defaults_are_the_values_the_commands_receive():
    """show_default options: click prints the value it passes; check none is a placeholder."""
    for path, cmd in commands():
        for names, _, opt in shown_options(cmd):
            if opt.show_default and not opt.is_flag:
                assert opt.default is not None, (path, names)
